"""API conventions shared by every app: the one error shape, pagination, strict input."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from spendctl.common.exceptions import ApplicationError

logger = logging.getLogger(__name__)
# Seconds a client should wait before retrying when the database is unreachable (a dropped connection, a restart,
# a fail-over): long enough not to hammer it, short enough that a retried ingest batch is not held up for long.
DATABASE_RETRY_AFTER = 5
# Connection-level database errors: Django's, and psycopg's own for code that uses a raw psycopg cursor (COPY).
_DATABASE_GONE: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
try:
    import psycopg

    _DATABASE_GONE += (psycopg.OperationalError, psycopg.InterfaceError)
except ImportError:  # pragma: no cover - psycopg is a dependency; SQLite-only installs still have it
    pass

_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    503: "unavailable",
}


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def _flatten(detail) -> dict:
    """DRF's nested ErrorDetail structures -> {"field": ["message", …]} (nested fields keep their nesting)."""
    if isinstance(detail, dict):
        return {str(k): _flatten_value(v) for k, v in detail.items()}
    return {"non_field_errors": _flatten_value(detail)}


def _flatten_value(value):
    if isinstance(value, dict):
        return {str(k): _flatten_value(v) for k, v in value.items()}
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            return [str(v) for v in value]
        return [_flatten_value(v) for v in value]
    return [str(value)]


def _database_unavailable(exc, context) -> Response:
    """The database went away (connection dropped, refused, server restarting). Nothing was half-written: every
    write is one transaction, rolled back by the server when its connection dies. The client may retry."""
    request = context.get("request")
    logger.error(
        "database unavailable during %s %s (%s)",
        getattr(request, "method", "?"),
        getattr(request, "path", "?"),
        type(exc).__name__,
    )
    response = Response(
        error_body("unavailable", "The service is briefly unavailable; retry the request shortly."),
        status=status.HTTP_503_SERVICE_UNAVAILABLE,
    )
    response["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response


def exception_handler(exc, context):
    if isinstance(exc, _DATABASE_GONE):
        return _database_unavailable(exc, context)
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status)
    if isinstance(exc, DjangoValidationError):
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return Response(error_body("invalid", "The request is not valid.", fields), status=400)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = _CODES.get(response.status_code, "error")
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        message = "The request is not valid."
        if set(fields) == {"non_field_errors"} and len(fields["non_field_errors"]) == 1:
            message = fields["non_field_errors"][0]
        response.data = error_body("invalid", message, fields)
    else:
        detail = getattr(exc, "detail", "")
        if isinstance(exc, exceptions.APIException) and hasattr(detail, "code") and detail.code:
            code = {
                "not_authenticated": "not_authenticated",
                "authentication_failed": "not_authenticated",
            }.get(detail.code, detail.code)
        message = str(detail) if not isinstance(detail, dict | list) else "Request failed."
        if isinstance(exc, exceptions.ParseError):
            code, message = "parse_error", "The request body is not valid JSON."
        if isinstance(exc, exceptions.Throttled):
            code = "throttled"
        response.data = error_body(code, message)
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def json_error(request, status_code: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status_code)


@csrf_exempt  # token-authenticated JSON API: an unknown path is a 404 for every method, never a CSRF page
def api_not_found(request, *args, **kwargs):
    return json_error(request, 404, "not_found", "Not found.")


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["count", "results"],
            "properties": {
                "count": {"type": "integer"},
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }


class StrictSerializer(serializers.Serializer):
    """Rejects keys it does not know, so a typo in a write is a 400 instead of being silently ignored."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            known = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - known)
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)


class StrictModelSerializer(StrictSerializer, serializers.ModelSerializer):
    pass
