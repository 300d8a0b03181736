"""The published OpenAPI schema documents the one error shape on every operation, for every 4xx it can answer.

Schemathesis (`.ci/fuzz`) holds every response to the schema, so an answer the schema does not list is a failure:
the error responses are added here, in one place, instead of on each view.
"""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

ERROR_DESCRIPTIONS = {
    "400": "Invalid input: `code` is `invalid` or `parse_error`; `fields` names each bad field.",
    "401": "Missing, unknown, revoked or expired token (`not_authenticated`).",
    "403": "The token lacks the scope (`permission_denied`).",
    "404": "No such object in the token's organisation, or no such page (`not_found`).",
    "409": "The object is not in a state that allows this (`conflict` or a more specific code).",
    "413": "The request body is larger than this endpoint accepts (`payload_too_large`).",
    "415": "The body is not JSON (`unsupported_media_type`).",
    "429": "Too many requests for this token (`throttled`); `Retry-After` says how many seconds to wait.",
}


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable code, e.g. `invalid`, `not_found`.")
    message = serializers.CharField(help_text="A sentence for people.")
    fields = serializers.DictField(
        child=serializers.JSONField(),
        help_text='Per-field messages, e.g. {"name": ["This field is required."]}.',
    )


class ErrorSerializer(serializers.Serializer):
    """The one error shape of every 4xx."""

    error = ErrorDetailSerializer()


class SpendctlAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the error responses each operation can give."""

    # Operations whose service can answer 409 (a state conflict).
    conflict_operations = frozenset({"reprice_apply_create", "reprice_undo_create", "connectors_sync_create"})

    def error_codes(self, operation: dict) -> list[str]:
        codes = ["401", "403", "429"]
        has_body = "requestBody" in operation
        if has_body or operation.get("parameters") or self.method in ("POST", "PUT", "PATCH"):
            codes.append("400")
        if "{" in self.path or self._is_list_view():
            codes.append("404")  # a missing object, or a page past the end
        if self.method in ("POST", "PUT", "PATCH"):
            codes.append("413")
        if has_body:
            codes.append("415")
        if operation.get("operationId") in self.conflict_operations:
            codes.append("409")
        return sorted(codes)

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation.setdefault("responses", {})
        for code in self.error_codes(operation):
            if code in responses:
                continue
            response = self._get_response_for_code(
                OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code]), code
            )
            if code == "429":
                response["headers"] = {
                    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}
                }
            responses[code] = response
        if any(p.get("in") == "query" for p in operation.get("parameters", [])) and "414" not in responses:
            # gunicorn (--limit-request-line 8190) answers an over-long URL itself, as a small HTML page.
            responses["414"] = {
                "description": "The URL is longer than the server reads (8,190 bytes); answered by the web server.",
                "content": {"text/html": {"schema": {"type": "string"}}},
            }
        return operation
