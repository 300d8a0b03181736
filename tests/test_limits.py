"""Abuse limits: per-token rates on ingest and check (429 + Retry-After, the one error shape, windows that reset) and
request bodies over the documented size refused with 413 before they are parsed."""

import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.test import RequestFactory

from apps.orgs.throttling import TokenRateThrottle
from spendctl.common.middleware import BodySizeLimitMiddleware
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 20, 15, 0, 10, tzinfo=UTC)
EVENT = {
    "id": "e-1",
    "timestamp": "2026-11-20T14:03:00Z",
    "provider": "openai",
    "model": "gpt-4o-mini",
    "input_tokens": 1200,
    "output_tokens": 310,
}
CHECK = {"provider": "openai", "model": "gpt-4o-mini", "estimated_input_tokens": 1000}


@pytest.fixture
def rates(monkeypatch):
    def set_rates(**rates):
        monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "1000/min", **rates})

    return set_rates


def _ingest(client, n):
    return client.post("/api/v1/events", {"events": [{**EVENT, "id": f"e-{n}"}]}, format="json")


def _check(client, n):
    return client.post("/api/v1/check", CHECK, format="json")


@pytest.mark.parametrize(("scope", "send"), [("ingest", _ingest), ("check", _check)])
def test_ingest_and_check_have_their_own_rate_and_answer_429_with_retry_after(api, org, rates, scope, send):
    rates(**{scope: "3/min"})
    client = api(org, scopes=["read", "ingest", "check"])
    with time_machine.travel(NOW, tick=False):
        for n in range(3):
            assert send(client, n).status_code == 200
        throttled = send(client, 3)
        error = assert_error(throttled, 429, "throttled")
        assert "throttled" in error["message"].lower() or "request" in error["message"].lower()
        assert throttled["Retry-After"] == "50"  # 10 s into the minute: the window ends in 50 s
        # the token's general budget is untouched, and another token of the same org has its own
        assert client.get("/api/v1/org").status_code == 200
        assert send(api(org, scopes=["ingest", "check"]), 4).status_code == 200
    with time_machine.travel(NOW + timedelta(seconds=50), tick=False):  # the next window
        assert send(client, 5).status_code == 200


def test_the_rates_come_from_the_environment():
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'])"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "spendctl.settings.test",
        "INGEST_RATE_LIMIT": "7/min",
        "CHECK_RATE_LIMIT": "9/second",
        "API_RATE_LIMIT": "11/hour",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "{'token': '11/hour', 'ingest': '7/min', 'check': '9/second'}"


# -- body size ---------------------------------------------------------------------------------------------------


def test_an_oversize_api_body_is_a_413_in_the_error_shape_before_authentication(client, settings):
    settings.MAX_BODY_BYTES = 1000
    body = json.dumps({"name": "x" * 2000})
    response = client.post("/api/v1/teams", body, content_type="application/json")  # no token at all
    error = assert_error(response, 413, "payload_too_large")
    assert "1000 bytes" in error["message"]
    assert response["Connection"] == "close"


def test_an_oversize_web_form_is_a_plain_413_page(client, settings):
    settings.MAX_BODY_BYTES = 1024
    response = client.post("/accounts/login/", {"username": "a", "password": "x" * 5000})
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html")
    assert b"Request too large" in response.content and b"1 KiB" in response.content


def test_ingest_takes_a_realistic_batch_that_other_endpoints_refuse(api, org, settings):
    client = api(org, scopes=["ingest", "admin"])
    events = [
        {**EVENT, "id": f"big-{i}", "tags": {"feature": "f" * 60, "customer": "c" * 60}} for i in range(1500)
    ]
    body = json.dumps({"events": events})
    assert settings.MAX_BODY_BYTES < len(body) < settings.INGEST_MAX_BODY_BYTES
    response = client.post("/api/v1/events", body, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 1500
    assert_error(
        client.post("/api/v1/teams", body, content_type="application/json"), 413, "payload_too_large"
    )


def test_ingest_refuses_more_than_its_limit(api, org, settings):
    settings.INGEST_MAX_BODY_BYTES = 4096
    client = api(org, scopes=["ingest"])
    body = json.dumps({"events": [{**EVENT, "id": f"e-{i}"} for i in range(100)]})
    assert_error(
        client.post("/api/v1/events", body, content_type="application/json"), 413, "payload_too_large"
    )


def test_the_declared_length_alone_is_enough_to_refuse(client, settings):
    """A client that announces a huge body is refused without the body being read (Django's test client lets the
    header lie: the body sent is tiny)."""
    settings.MAX_BODY_BYTES = 1000
    response = client.post("/api/v1/teams", "{}", content_type="application/json", CONTENT_LENGTH="999999999")
    assert_error(response, 413, "payload_too_large")


def _chunked_request(body: bytes, path="/api/v1/events"):
    request = RequestFactory().generic("POST", path, b"", content_type="application/json")
    request.META.pop("CONTENT_LENGTH", None)
    request.META.update(
        {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True}
    )
    return request


def test_a_chunked_body_is_read_up_to_the_limit_and_handed_on(settings):
    settings.INGEST_MAX_BODY_BYTES = 4096
    seen = {}

    def view(request):
        seen["body"] = request.body
        from django.http import HttpResponse

        return HttpResponse("ok")

    small = json.dumps({"events": [EVENT]}).encode()
    assert BodySizeLimitMiddleware(view)(_chunked_request(small)).status_code == 200
    assert seen["body"] == small
    big = _chunked_request(b"x" * 10_000)
    response = BodySizeLimitMiddleware(view)(big)
    assert (
        response.status_code == 413 and json.loads(response.content)["error"]["code"] == "payload_too_large"
    )
    assert big.META["wsgi.input"].tell() == 4097  # read one byte past the limit, not the whole body


# -- against a real gunicorn on loopback: raw sockets, chunked bodies and lying lengths -----------------------------


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory):
    """gunicorn (production settings) on a free loopback port. The 413 answers come before any database access, so
    the server needs no migrated database."""
    data_dir = tmp_path_factory.mktemp("gunicorn-data")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "spendctl.settings.base",
        "DJANGO_READ_DOT_ENV_FILE": "0",
        "DEBUG": "0",
        "SECRET_KEY": "limits-test-secret-key-0123456789-0123456789-0123456789",
        "FIELD_ENCRYPTION_KEY": "Zm9yLXRlc3RzLW9ubHktbm90LWEtcmVhbC1rZXktMDA=",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'unused.sqlite3'}",
        "REDIS_URL": "",
        "MAX_BODY_BYTES": "2048",
        "INGEST_MAX_BODY_BYTES": "65536",
    }
    gunicorn = Path(sys.executable).parent / "gunicorn"
    proc = subprocess.Popen(
        [
            str(gunicorn),
            "spendctl.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--no-control-socket",
            "--graceful-timeout",
            "5",
        ],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("gunicorn did not start")
    # first request loads Django in the worker (slow on a busy machine); later answers are then prompt
    _exchange(
        port, b"GET /api/v1/warm-up HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", timeout=120
    )
    yield port
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _exchange(port, head: bytes, chunks=(), timeout=60.0, sent=None) -> bytes:
    """Sends the head, then each chunk until the server answers, and returns the answer (read as soon as it is there,
    before the server's close can reset the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(head)
        answer = b""
        try:
            for chunk in chunks:
                if select.select([conn], [], [], 0)[0]:
                    break  # the server has answered while we were still sending: stop sending
                conn.sendall(chunk)
                if sent is not None:
                    sent.append(len(chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
        return answer


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _json_body(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def test_gunicorn_an_oversize_chunked_body_is_refused_while_it_streams(gunicorn_server):
    chunk = b"x" * 8192
    chunks = (b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10_000))  # 80 MB, if it were all read
    head = (
        b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    sent = []
    answer = _exchange(gunicorn_server, head, chunks, sent=sent)
    assert _status(answer) == 413, answer[:300]
    assert _json_body(answer)["error"]["code"] == "payload_too_large"
    assert (
        sum(sent) < 10 * 1024 * 1024
    )  # refused long before the 80 MB were sent (socket buffers hold a few MB)


def test_gunicorn_a_small_chunked_body_reaches_the_view(gunicorn_server):
    body = json.dumps({"events": [EVENT]}).encode()
    head = (
        b"POST /api/v1/nothing-here HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    answer = _exchange(gunicorn_server, head, [b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)])
    assert _status(answer) == 404  # under the limit: handed on to the URL resolver, which has no such route
    assert _json_body(answer)["error"]["code"] == "not_found"


def test_gunicorn_a_length_that_claims_too_much_is_refused_without_waiting_for_the_body(gunicorn_server):
    head = (
        b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000000\r\n\r\n{}"
    )
    answer = _exchange(gunicorn_server, head)  # the 50 MB never come: an answer at all means it did not wait
    assert _status(answer) == 413
    assert _json_body(answer)["error"]["code"] == "payload_too_large"


def test_gunicorn_a_length_that_claims_too_little_reads_only_what_it_claims(gunicorn_server):
    """The body is 1 MB but the header says 10 bytes: the app reads 10 bytes (not valid JSON) and the rest is never
    taken as a body; nothing is stored, nothing crashes."""
    head = (
        b"POST /api/v1/teams HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10\r\nConnection: close\r\n\r\n"
    )
    answer = _exchange(gunicorn_server, head, [b'{"name": "' + b"x" * 1_000_000 + b'"}'])
    assert _status(answer) in (400, 401)  # no token: 401 before the body is ever parsed; never 413 or 5xx
    assert _json_body(answer)["error"]["code"] in ("parse_error", "not_authenticated")
