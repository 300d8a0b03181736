"""`Authorization: Bearer spc_…` for the REST API. The token fixes the org: request.org and request.api_token."""

import time
from datetime import timedelta

from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from apps.orgs import versions
from apps.orgs.permissions import SCOPE_CHECK, token_has_scope
from spendctl.common import redis_client
from spendctl.common.crypto import hash_token

LAST_USED_RESOLUTION = timedelta(minutes=1)
UNUSABLE = "The token is unknown, revoked or expired."


def usable_token(token_hash: str):
    from apps.orgs.selectors import api_token_usable  # late: DRF imports this module while the models load

    return api_token_usable(token_hash=token_hash)


def _header_token(request) -> str | None:
    header = authentication.get_authorization_header(request).decode("latin-1")
    if not header:
        return None
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise exceptions.AuthenticationFailed("Send the token as 'Authorization: Bearer <token>'.")
    return parts[1]


def _bind(request, token) -> tuple:
    request._request.org = token.org
    request._request.api_token = token
    return token.created_by, token


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """One indexed SELECT per request (token ⋈ org ⋈ team ⋈ user, usable() checks membership), and last_used_at
    written at most once a minute per token."""

    keyword = "Bearer"

    @method_decorator(sensitive_variables())
    def authenticate(self, request):
        raw = _header_token(request)
        if raw is None:
            return None
        token = usable_token(hash_token(raw))
        if token is None:
            # Unknown, revoked and expired tokens look the same from outside.
            raise exceptions.AuthenticationFailed(UNUSABLE)
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            from apps.orgs.services import api_token_mark_used

            api_token_mark_used(token=token, at=now)
        return _bind(request, token)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


# --- the pre-flight check's cached tokens ---------------------------------------------------------------------------

# token hash -> (token row with org/team/user, org version it was read at, monotonic time read)
_TOKENS: dict[str, tuple] = {}
_MAX_TOKENS = 10_000


def cached_token(token_hash: str):
    """(token, version) from this process's cache, or read now: None if no usable token has that hash.

    The entry is only as good as its version: the caller confirms it against the org version in its own Redis round
    trip and calls forget_token() + cached_token() again when it moved. Read at most CACHE_SECONDS ago; an expiry
    passing is seen at once. Raises if Redis is unreachable (the caller authenticates from the database)."""
    hit = _TOKENS.get(token_hash)
    now = time.monotonic()
    if hit is not None and now - hit[2] < versions.CACHE_SECONDS and hit[3] == redis_client.failures():
        token = hit[0]
        if token.expires_at is None or token.expires_at > timezone.now():
            return token, hit[1]
    _TOKENS.pop(token_hash, None)
    failures_at_read = redis_client.failures()
    token = usable_token(token_hash)
    if token is None:
        return None
    # The version first, then the row again: a change committed before this version is read is in the row.
    version = versions.current(token.org_id)
    token = usable_token(token_hash)
    if token is None:
        return None
    if len(_TOKENS) >= _MAX_TOKENS:
        _TOKENS.clear()
    _TOKENS[token_hash] = (token, version, now, failures_at_read)
    return token, version


def forget_token(token_hash: str) -> None:
    _TOKENS.pop(token_hash, None)


def forget_tokens() -> None:
    _TOKENS.clear()


class CheckTokenAuthentication(ApiTokenAuthentication):
    """For POST /api/v1/check: the token from the process cache (no SQL), confirmed by the check's own round trip.

    Sets request.token_hash and request.token_version (the org version the cached row was read at); the view hands
    them to the check, which compares them with the org version it reads. last_used_at is written by the view when
    the round trip says a minute has passed (a Redis marker per token). With Redis unavailable: the plain database
    lookup of ApiTokenAuthentication."""

    def authenticate(self, request):
        if not redis_client.available():
            return super().authenticate(request)
        raw = _header_token(request)
        if raw is None:
            return None
        token_hash = hash_token(raw)
        try:
            found = cached_token(token_hash)
        except Exception:  # noqa: BLE001 - Redis failed just now: the database decides
            redis_client.mark_down()
            return super().authenticate(request)
        if found is None:
            raise exceptions.AuthenticationFailed(UNUSABLE)
        token, version = found
        if not token_has_scope(token.scopes, SCOPE_CHECK):
            forget_token(token_hash)  # answer 403 only from a fresh row
            return super().authenticate(request)
        request._request.token_hash = token_hash
        request._request.token_version = version
        return _bind(request, token)


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Documents the token scheme in the OpenAPI schema."""

    target_class = "apps.orgs.authentication.ApiTokenAuthentication"
    name = "BearerToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An org API token: `Bearer spc_…`."}


class CheckTokenScheme(OpenApiAuthenticationExtension):
    """The check's authentication: the same tokens (drf-spectacular names a scheme per authentication class)."""

    target_class = "apps.orgs.authentication.CheckTokenAuthentication"
    name = "CheckBearerToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An org API token with the `check` scope."}
