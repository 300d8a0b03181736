"""The shared HTTP helper: timeouts, retries with backoff, Retry-After, typed errors, no credential in messages."""

import json
import socket
import time
from dataclasses import replace
from decimal import Decimal
from email.utils import formatdate

import pytest
from werkzeug import Response

from apps.connectors.providers import (
    MalformedPage,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
)
from apps.connectors.providers.http import HttpClient, HttpSettings, parse_json_page, parse_retry_after, scrub
from tests.connectors.conftest import sample_bytes, serve_envelope

API_KEY = "sk-admin-test-SECRET0123456789abcdefwxyz"
OK = b'{"ok": true, "value": 0.1}'


def make_client(server, settings, **kwargs) -> HttpClient:
    return HttpClient(
        base_url=server.url_for(""),
        headers={"Authorization": f"Bearer {API_KEY}"},
        settings=settings,
        secrets=(API_KEY,),
        label="Test",
        **kwargs,
    )


def statuses(client):
    return [(a.status, a.waited) for a in client.attempts]


def test_success_parses_numbers_as_decimal(server, http_settings):
    server.expect_request("/x", headers={"Authorization": f"Bearer {API_KEY}"}).respond_with_data(OK)
    body = make_client(server, http_settings).get_json("/x")
    assert body == {"ok": True, "value": Decimal("0.1")}
    assert isinstance(body["value"], Decimal)


def test_429_with_retry_after_seconds_is_honoured_then_succeeds(server, http_settings, sleeps):
    serve_envelope(server, "openai-error-429.http.json", "/x")  # retry-after: 20
    server.expect_oneshot_request("/x").respond_with_data(OK)
    client = make_client(server, http_settings)
    assert client.get_json("/x")["ok"] is True
    assert sleeps == [20.0]
    assert statuses(client) == [(429, 20.0), (200, 0.0)]
    assert client.attempts[0].retry_after == 20.0


def test_429_with_http_date_retry_after(server, sleeps):
    now = 1_800_000_000.0
    settings = HttpSettings(sleep=sleeps.append, now=lambda: now, max_attempts=2)
    server.expect_oneshot_request("/x").respond_with_data(
        "{}", status=429, headers={"Retry-After": formatdate(now + 42, usegmt=True)}
    )
    server.expect_oneshot_request("/x").respond_with_data(OK)
    assert make_client(server, settings).get_json("/x")["ok"] is True
    assert sleeps == [42.0]


def test_429_without_retry_after_uses_exponential_backoff_with_jitter(server, http_settings, sleeps):
    for _ in range(2):
        server.expect_oneshot_request("/x").respond_with_data("{}", status=429)
    server.expect_oneshot_request("/x").respond_with_data(OK)
    make_client(server, http_settings).get_json("/x")
    # base 1s doubling, minus jitter 0.5 × random 0.5 = 25 %
    assert sleeps == [0.75, 1.5]


def test_retry_after_longer_than_cap_raises_at_once(server, sleeps):
    settings = HttpSettings(sleep=sleeps.append, retry_after_cap=60)
    server.expect_oneshot_request("/x").respond_with_data("{}", status=429, headers={"Retry-After": "3600"})
    with pytest.raises(ProviderRateLimited) as exc:
        make_client(server, settings).get_json("/x")
    assert exc.value.retry_after == 3600.0
    assert sleeps == []


def test_429_every_time_raises_rate_limited_after_max_attempts(server, http_settings, sleeps):
    server.expect_request("/x").respond_with_data("{}", status=429, headers={"Retry-After": "2"})
    client = make_client(server, http_settings)
    with pytest.raises(ProviderRateLimited) as exc:
        client.get_json("/x")
    assert exc.value.retry_after == 2.0
    assert sleeps == [2.0, 2.0]  # 3 attempts, 2 waits
    assert [a.status for a in client.attempts] == [429, 429, 429]


def test_500_then_success_is_retried(server, http_settings, sleeps):
    server.expect_oneshot_request("/x").respond_with_data("oops", status=500)
    server.expect_oneshot_request("/x").respond_with_data(OK)
    client = make_client(server, http_settings)
    assert client.get_json("/x")["ok"] is True
    assert statuses(client) == [(500, 0.75), (200, 0.0)]


def test_recorded_529_overloaded_is_retried(server, http_settings, sleeps):
    serve_envelope(server, "anthropic-error-529.http.json", "/x")
    server.expect_oneshot_request("/x").respond_with_data(OK)
    client = make_client(server, http_settings)
    assert client.get_json("/x")["ok"] is True
    assert [a.status for a in client.attempts] == [529, 200]


def test_5xx_every_time_raises_unavailable(server, http_settings, sleeps):
    server.expect_request("/x").respond_with_data("bad gateway", status=502)
    with pytest.raises(ProviderUnavailable) as exc:
        make_client(server, http_settings).get_json("/x")
    assert exc.value.status == 502
    assert "3 attempts" in str(exc.value)
    assert sleeps == [0.75, 1.5]


def _slow(seconds: float):
    def handler(request):
        time.sleep(seconds)
        return Response(OK, content_type="application/json")

    return handler


def test_read_timeout_is_retried_then_unavailable(threaded_server, http_settings, sleeps):
    server = threaded_server
    settings = replace(http_settings, read_timeout=0.1)
    server.expect_request("/slow").respond_with_handler(_slow(0.3))
    client = make_client(server, settings)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable) as exc:
        client.get_json("/slow")
    assert "timeout" in str(exc.value)
    assert [a.error for a in client.attempts] == ["timeout (ReadTimeout)"] * 3
    assert [a.status for a in client.attempts] == [None, None, None]
    assert sleeps == [0.75, 1.5]  # backoff was requested, not really slept
    assert time.monotonic() - started < 2.5


def test_read_timeout_then_success(threaded_server, http_settings, sleeps):
    server = threaded_server
    settings = replace(http_settings, read_timeout=0.1)
    server.expect_oneshot_request("/slow").respond_with_handler(_slow(0.3))
    server.expect_oneshot_request("/slow").respond_with_data(OK)
    client = make_client(server, settings)
    assert client.get_json("/slow")["ok"] is True
    assert [a.error for a in client.attempts] == ["timeout (ReadTimeout)", None]


def test_connection_refused_is_retried_then_unavailable(http_settings, sleeps):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = HttpClient(base_url=f"http://127.0.0.1:{port}", headers={}, settings=http_settings)
    with pytest.raises(ProviderUnavailable):
        client.get_json("/x")
    assert len(client.attempts) == 3
    assert all(a.error and a.error.startswith("connection error") for a in client.attempts)


def test_401_is_auth_error_not_retried_and_never_contains_the_key(server, http_settings, sleeps):
    # The recorded body echoes a masked key; this one echoes the real key too: neither may reach the message.
    env = json.loads(sample_bytes("openai-error-401.http.json"))
    env["body"]["error"]["message"] += f" (you sent {API_KEY})"
    server.expect_oneshot_request("/x").respond_with_json(env["body"], status=401)
    client = make_client(server, http_settings)
    with pytest.raises(ProviderAuthError) as exc:
        client.get_json("/x")
    text = str(exc.value)
    assert exc.value.status == 401
    assert API_KEY not in text
    assert "sk-admin" not in text
    assert "invalid_request_error" in text
    assert len(text) < 250
    assert sleeps == []
    assert len(client.attempts) == 1


def test_other_4xx_is_not_retried(server, http_settings, sleeps):
    server.expect_oneshot_request("/x").respond_with_json(
        {"error": {"type": "invalid_request_error", "message": "bad group_by"}}, status=400
    )
    with pytest.raises(ProviderError) as exc:
        make_client(server, http_settings).get_json("/x")
    assert type(exc.value) is ProviderError
    assert exc.value.status == 400
    assert "bad group_by" in str(exc.value)
    assert sleeps == []


def test_on_attempt_callback_sees_every_attempt(server, sleeps):
    seen = []
    settings = HttpSettings(sleep=sleeps.append, rng=lambda: 0.0, on_attempt=seen.append)
    server.expect_oneshot_request("/x").respond_with_data("{}", status=503)
    server.expect_oneshot_request("/x").respond_with_data(OK)
    make_client(server, settings).get_json("/x")
    assert [(a.number, a.status, a.waited) for a in seen] == [(1, 503, 1.0), (2, 200, 0.0)]
    assert all(a.path == "/x" for a in seen)


def test_timeouts_are_explicit_on_the_client(server, http_settings):
    client = make_client(server, http_settings)
    timeout = client._client.timeout
    assert (timeout.connect, timeout.read) == (2.0, 2.0)


def test_non_json_and_truncated_bodies_are_malformed_pages():
    with pytest.raises(MalformedPage) as exc:
        parse_json_page(b"<html>502 Bad Gateway</html>", 3)
    assert exc.value.page_number == 3
    assert "not valid JSON" in str(exc.value)

    page = sample_bytes("openai-usage-completions-page1.json")
    with pytest.raises(MalformedPage) as exc:
        parse_json_page(page[: len(page) // 2], 2)
    assert exc.value.page_number == 2
    assert "truncated" in exc.value.reason
    with pytest.raises(MalformedPage, match="empty"):
        parse_json_page(b"", 1)
    with pytest.raises(MalformedPage):
        parse_json_page(b'{"value": NaN}', 1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("20", 20.0), ("1.5", 1.5), (None, None), ("", None), ("soon", None), ("-5", 0.0)],
)
def test_parse_retry_after_seconds(value, expected):
    assert parse_retry_after(value, now=0.0) == expected


def test_parse_retry_after_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 30) == 30.0


def test_scrub_removes_secrets_and_key_shaped_text():
    assert scrub(f"bad key {API_KEY}", [API_KEY]) == "bad key [redacted]"
    assert "sk-ant" not in scrub("invalid sk-ant-admin01-abcdefgh key", [])
    assert len(scrub("x" * 1000, [])) == 120
