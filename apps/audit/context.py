"""Who is acting and from where, for the audit trail. Set per request by AuditContextMiddleware.

The request is kept (not the user) because an API token is only known once DRF has authenticated the request, which
happens inside the view; record() asks the request at the moment it writes. Outside a request (Celery tasks,
management commands, the shell) the actor is `system`.
"""

import contextlib
import ipaddress
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings

_current_request: ContextVar = ContextVar("audit_request", default=None)


@dataclass(frozen=True)
class Actor:
    type: str  # "user" | "token" | "system"
    label: str
    user_id: int | None = None
    token_id: int | None = None
    token_prefix: str = ""
    ip_address: str | None = None
    user_agent: str = ""


SYSTEM = Actor(type="system", label="system")


def _valid_ip(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request) -> str | None:
    """REMOTE_ADDR; with TRUSTED_PROXY_COUNT = n > 0, the address the outermost trusted proxy saw (the n-th entry
    of X-Forwarded-For from the right), since anything further left was written by the client itself."""
    remote = _valid_ip(request.META.get("REMOTE_ADDR"))
    hops = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    if hops > 0:
        forwarded = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
        if len(forwarded) >= hops:
            return _valid_ip(forwarded[-hops]) or remote
    return remote


def actor_from_request(request) -> Actor:
    ip = client_ip(request)
    agent = request.META.get("HTTP_USER_AGENT", "")[:300]
    token = getattr(request, "api_token", None)
    if token is not None:
        creator = getattr(token, "created_by", None)
        by = f" by {creator.email}" if creator is not None else ""
        return Actor(
            type="token",
            label=f"token {token.prefix}… “{token.name}”{by}"[:200],
            user_id=token.created_by_id,
            token_id=token.pk,
            token_prefix=token.prefix,
            ip_address=ip,
            user_agent=agent,
        )
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return Actor(
            type="user",
            label=user.email or user.get_username(),
            user_id=user.pk,
            ip_address=ip,
            user_agent=agent,
        )
    return Actor(type="system", label="anonymous", ip_address=ip, user_agent=agent)


def current_actor() -> Actor:
    request = _current_request.get()
    return actor_from_request(request) if request is not None else SYSTEM


@contextlib.contextmanager
def request_context(request):
    reset = _current_request.set(request)
    try:
        yield
    finally:
        _current_request.reset(reset)


class AuditContextMiddleware:
    """Makes the current request (and so its user or API token and address) known to audit.services.record()."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with request_context(request):
            return self.get_response(request)
