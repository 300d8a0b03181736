"""Outbound HTTP to addresses users typed in (connector base URLs, webhooks): the one guarded client.

- Only http/https; only https in production (DEBUG off) unless ALLOW_PRIVATE_URLS is set.
- The host is resolved and every address is checked: loopback, private, link-local (incl. cloud metadata
  169.254.169.254), carrier-grade NAT, multicast, unspecified, reserved and other non-global ranges are refused, for
  IPv4 and IPv6, including IPv4-mapped, 6to4 and Teredo forms.
- The connection is made to the address that was checked (a custom httpcore network backend): no second lookup that
  a rebinding DNS server could answer differently. Redirects are never followed.
- ALLOW_PRIVATE_URLS=1 turns the range check off (tests, the demo, on-premises installs).
- OUTBOUND_LOOPBACK_ONLY=1 (the API fuzzing run in CI) allows loopback addresses and nothing else, whatever the
  other settings say, and looks no name up but `localhost`: fuzzed URLs can never send a packet off the machine.
"""

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import httpcore
import httpx
from django.conf import settings

CGNAT = ipaddress.ip_network("100.64.0.0/10")
Resolver = Callable[[str, int], list[str]]


class RefusedURL(ValueError):
    """The URL may not be fetched: wrong scheme, or its host resolves to a refused address."""


class RefusedAddress(httpcore.ConnectError):
    """Raised at connect time; httpx wraps it in httpx.ConnectError (its __cause__)."""


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is the IPv4 address a.b.c.d
            return address_allowed(str(ip.ipv4_mapped))
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not address_allowed(str(embedded)):
            return False
    if ip.version == 4 and ip in CGNAT:
        return False
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or not ip.is_global
    )


def private_allowed() -> bool:
    return bool(getattr(settings, "ALLOW_PRIVATE_URLS", False))


def check_scheme(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise RefusedURL("Use an http or https URL.")
    if scheme == "http" and not settings.DEBUG and not private_allowed():
        raise RefusedURL("Use an https URL.")
    if not parts.hostname:
        raise RefusedURL("The URL has no host.")
    return scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80)


def loopback_only() -> bool:
    return bool(getattr(settings, "OUTBOUND_LOOPBACK_ONLY", False))


def loopback_addresses(host: str) -> list[str]:
    """OUTBOUND_LOOPBACK_ONLY: a loopback literal or `localhost`, without any lookup; anything else is refused."""
    if host.lower() == "localhost":
        return ["127.0.0.1"]
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if ip is None or not ip.is_loopback:
        raise RefusedURL(f"The host {host!r} is not a loopback address; this install only reaches loopback.")
    return [str(ip)]


def allowed_addresses(host: str, port: int, *, resolver: Resolver | None = None) -> list[str]:
    """The host's addresses that may be contacted; raises RefusedURL if none (or it does not resolve)."""
    if loopback_only():
        return loopback_addresses(host)
    try:
        addresses = (resolver or system_resolver)(host, port)
    except (OSError, UnicodeError) as exc:
        raise RefusedURL(f"The host {host!r} does not resolve.") from exc
    if private_allowed():
        return addresses
    allowed = [a for a in addresses if address_allowed(a)]
    if not allowed:
        raise RefusedURL(f"The host {host!r} resolves to a private or reserved address; it cannot be used.")
    return allowed


def check_url(url: str, *, resolver: Resolver | None = None) -> None:
    """Validation on save: raises RefusedURL with a readable reason. With ALLOW_PRIVATE_URLS only the scheme."""
    _scheme, host, port = check_scheme(url)
    if not private_allowed() or loopback_only():
        allowed_addresses(host, port, resolver=resolver)


class GuardedBackend(httpcore.SyncBackend):
    def __init__(self, resolver: Resolver | None = None):
        self.resolver = resolver

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = allowed_addresses(host, port, resolver=self.resolver)
        except RefusedURL as exc:
            raise RefusedAddress(str(exc)) from None
        last = None
        for address in addresses:  # connect to the checked address itself; TLS still verifies the host name
            try:
                return super().connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:
                last = exc
        raise last or RefusedAddress("no address to connect to")


def client(*, timeout, headers: dict | None = None, resolver: Resolver | None = None) -> httpx.Client:
    transport = httpx.HTTPTransport()
    transport._pool = httpcore.ConnectionPool(  # same pool httpx builds, with the guarded network backend
        ssl_context=httpx.create_ssl_context(), network_backend=GuardedBackend(resolver)
    )
    return httpx.Client(transport=transport, timeout=timeout, headers=headers or {}, follow_redirects=False)


def refused_reason(exc: BaseException) -> str | None:
    """The refusal message if an httpx error came from the guard."""
    cause = exc
    while cause is not None:
        if isinstance(cause, RefusedAddress):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    return None


def post(url: str, *, content: bytes, headers: dict, timeout) -> httpx.Response:
    check_scheme(url)
    with client(timeout=timeout) as c:
        return c.post(url, content=content, headers=headers)
