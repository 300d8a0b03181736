"""OUTBOUND_LOOPBACK_ONLY (the API fuzzing run): user-entered URLs reach loopback and nothing else, whatever
ALLOW_PRIVATE_URLS says, and no name but localhost is looked up."""

import pytest

from spendctl.common import outbound


def refusing_resolver(host, port):
    raise AssertionError(f"looked up {host!r}: loopback-only mode must not resolve names")


@pytest.fixture
def loopback_only(settings):
    settings.ALLOW_PRIVATE_URLS = True
    settings.OUTBOUND_LOOPBACK_ONLY = True


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://192.168.1.5/",
        "http://169.254.169.254/latest",
        "https://example.com/x",
        "http://[fe80::1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://0.0.0.0/",
        "http://localhost.example.com/",
    ],
)
def test_anything_but_loopback_is_refused_without_a_lookup(loopback_only, url):
    with pytest.raises(outbound.RefusedURL, match="loopback"):
        outbound.check_url(url, resolver=refusing_resolver)
    _scheme, host, port = outbound.check_scheme(url)
    with pytest.raises(outbound.RefusedURL):
        outbound.allowed_addresses(host, port, resolver=refusing_resolver)


@pytest.mark.parametrize(
    ("url", "addresses"),
    [
        ("http://127.0.0.1:9/x", ["127.0.0.1"]),
        ("http://localhost:8000/", ["127.0.0.1"]),
        ("http://[::1]:80/", ["::1"]),
    ],
)
def test_loopback_is_allowed(loopback_only, url, addresses):
    outbound.check_url(url, resolver=refusing_resolver)
    _scheme, host, port = outbound.check_scheme(url)
    assert outbound.allowed_addresses(host, port, resolver=refusing_resolver) == addresses


def test_a_webhook_to_a_private_address_is_refused_at_connect_time(loopback_only):
    with pytest.raises(Exception) as caught:
        outbound.post("http://10.1.2.3:8080/hook", content=b"{}", headers={}, timeout=1)
    assert "loopback" in (outbound.refused_reason(caught.value) or "")


def test_off_by_default(settings):
    assert settings.OUTBOUND_LOOPBACK_ONLY is False
    settings.ALLOW_PRIVATE_URLS = True
    outbound.check_url("http://10.0.0.1/hook", resolver=refusing_resolver)  # only the scheme is checked then
