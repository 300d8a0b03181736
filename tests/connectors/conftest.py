"""Replay helpers: serve the recorded provider samples over loopback with pytest-httpserver.

Files are served byte for byte (never re-serialised), so number text such as 0.024295125 reaches the client exactly
as recorded. Query strings are matched exactly as multisets, with `group_by[]` and `group_by` treated as the same key
(OpenAI accepts both spellings; Anthropic documents the bracket form).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from pytest_httpserver import HTTPServer
from pytest_httpserver.httpserver import QueryMatcher
from werkzeug import Response

from apps.connectors.providers import HttpSettings, Window

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "provider_samples"
WINDOW = Window.for_days(date(2026, 11, 16), date(2026, 11, 19))  # 1794787200 → 1795132800
START, END = "1794787200", "1795132800"


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def sample_json(name: str):
    """Parsed exactly: every non-integer number as Decimal."""
    return json.loads(sample_bytes(name), parse_float=Decimal)


def _normalise(pairs):
    return sorted((k[:-2] if k.endswith("[]") else k, v) for k, v in pairs)


class Query(QueryMatcher):
    """Exact query match as a multiset of (key, value); `name[]` and `name` are the same key."""

    def __init__(self, pairs) -> None:
        self.expected = _normalise(pairs)

    def get_comparing_values(self, request_query_string: bytes):
        got = parse_qsl(request_query_string.decode(), keep_blank_values=True)
        return _normalise(got), self.expected

    def __repr__(self) -> str:
        return f"Query({self.expected!r})"


def query_of(recorded: str) -> tuple[str, list[tuple[str, str]]]:
    """("GET /v1/x?a=1&b=2") → ("/v1/x", [("a", "1"), ("b", "2")])."""
    url = recorded.split(" ", 1)[1].split(" (", 1)[0]
    parts = urlsplit(url)
    return parts.path, parse_qsl(parts.query, keep_blank_values=True)


def serve_envelope(server: HTTPServer, name: str, uri: str, **kwargs):
    """Serve an error envelope file ({status, headers, body}) once."""
    env = json.loads(sample_bytes(name))
    server.expect_oneshot_request(uri, **kwargs).respond_with_response(
        Response(json.dumps(env["body"]), status=env["status"], headers=env["headers"])
    )
    return env


@pytest.fixture
def server(httpserver: HTTPServer):
    # An unmatched request gets 404 (not retried by the client) instead of 500 (retried), so a wrong query fails
    # fast; check_assertions then names the request that matched nothing.
    httpserver.no_handler_status_code = 404
    yield httpserver
    httpserver.check_assertions()


@pytest.fixture
def threaded_server():
    """A separate server that handles requests in threads, for handlers that sleep past the client's timeout: a
    timed-out request neither blocks the retry behind it nor leaks into the shared server of the next test."""
    srv = HTTPServer(threaded=True)
    srv.no_handler_status_code = 404
    srv.start()
    yield srv
    srv.clear()
    srv.stop()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def http_settings(sleeps) -> HttpSettings:
    """Short timeouts, no real sleeping (waits are recorded), jitter fixed at half."""
    return HttpSettings(
        connect_timeout=2.0,
        read_timeout=2.0,
        max_attempts=3,
        backoff_base=1.0,
        backoff_max=8.0,
        jitter=0.5,
        sleep=sleeps.append,
        rng=lambda: 0.5,
    )


def by_day(rows, key, value):
    """{day_iso: {key(row): sum(value(row))}}"""
    out: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        out[row.bucket_start.date().isoformat()][key(row)] += value(row)
    return {day: dict(v) for day, v in out.items()}


def requests_to(server: HTTPServer, path: str) -> list[list[tuple[str, str]]]:
    return [
        parse_qsl(req.query_string.decode(), keep_blank_values=True)
        for req, _ in server.log
        if req.path == path
    ]
