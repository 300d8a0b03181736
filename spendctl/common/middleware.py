"""Request body size limits, enforced before anything parses the body.

`INGEST_MAX_BODY_BYTES` (default 10 MiB) for `POST /api/v1/events`, which takes up to 5,000 events; `MAX_BODY_BYTES`
(default 256 KiB) for every other path. A declared Content-Length over the limit is refused at once, without reading
the body. A chunked body (no Content-Length; gunicorn de-chunks it and marks the input `wsgi.input_terminated`) is
read here up to the limit and no further, then handed on as if it had been sent with its length. A Content-Length
smaller than the body is harmless: Django reads exactly the declared bytes. Refusals are 413, in the one error shape
under /api/ and as a plain page elsewhere.
"""

import io

from django.conf import settings
from django.http import HttpResponse
from django.template.loader import render_to_string

from spendctl.common.api import json_error

INGEST_PATH = "/api/v1/events"


def body_limit(path: str) -> int:
    if path.rstrip("/") == INGEST_PATH:
        return settings.INGEST_MAX_BODY_BYTES
    return settings.MAX_BODY_BYTES


def _human(size: int) -> str:
    if size >= 1024 * 1024 and size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MiB"
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} bytes"


def too_large(request, limit: int) -> HttpResponse:
    message = f"The request body is larger than this endpoint accepts ({_human(limit)})."
    if request.path_info.startswith("/api/"):
        response = json_error(request, 413, "payload_too_large", message)
    else:
        response = HttpResponse(render_to_string("413.html", {"message": message}, request=None), status=413)
    response["Content-Length"] = str(len(response.content))
    response["Connection"] = "close"  # the unread rest of the body must not be read as the next request
    return response


class BodySizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = body_limit(request.path_info)
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0  # Django reads an unreadable length as 0 as well
        if declared > limit:
            return too_large(request, limit)
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not declared and request.META.get("wsgi.input_terminated"):
            body = request.META["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                return too_large(request, limit)
            request.META["CONTENT_LENGTH"] = str(len(body))
            request._stream = io.BytesIO(body)
        return self.get_response(request)
