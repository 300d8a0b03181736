"""A fake OpenAI Administration API (completions usage + costs) on loopback, run in a thread of the test process.

Daily buckets; data are a pure function of (UTC day, project, model), so a re-read gives the same rows and the test
knows the exact totals of every day (`expected_by_day`). Pages carry `limit` buckets and an opaque `page` token.
The test can slow every page down (`delay`, so a worker can be killed in the middle of a run) and queue faults for
a given page: a truncated body, an HTML page with 200, or a proxy's HTML 502. Every request is logged.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

API_KEY = "sk-admin-faults-0123456789abcdef"
PROJECTS = ("proj_alpha", "proj_beta")
MODELS = (
    ("gpt-4o-mini-2024-07-18", Decimal("0.15"), Decimal("0.6")),
    ("gpt-4.1-2025-04-14", Decimal("2"), Decimal("8")),
)
# A marker inside every faulty body: it must never show up in a run's error or the connection's last error.
BODY_MARKER = "FAULTY-BODY-7f3a"
USAGE_PATH = "/v1/organization/usage/completions"
COSTS_PATH = "/v1/organization/costs"


def counts(day: int, p: int, m: int) -> tuple[int, int, int, int]:
    """(requests, input incl. cached, cached, output) of a project x model on a UTC day (unix day number)."""
    x = (day * 7919 + p * 104729 + m * 1299709) % 1000003
    requests = 10 + x % 90
    input_tokens = requests * (300 + x % 1700)
    cached = input_tokens * (x % 40) // 100
    output = requests * (20 + x % 400)
    return requests, input_tokens, cached, output


def usage_results(day: int) -> list[dict]:
    out = []
    for p, project in enumerate(PROJECTS):
        for m, (model, _, _) in enumerate(MODELS):
            r, i, c, o = counts(day, p, m)
            out.append(
                {
                    "object": "organization.usage.completions.result",
                    "input_tokens": i,
                    "input_cached_tokens": c,
                    "output_tokens": o,
                    "num_model_requests": r,
                    "project_id": project,
                    "user_id": None,
                    "api_key_id": f"key_{project}",
                    "model": model,
                    "batch": False,
                    "service_tier": "default",
                }
            )
    return out


def cost_results(day: int) -> list[dict]:
    out = []
    for p, project in enumerate(PROJECTS):
        for m, (model, rate_in, rate_out) in enumerate(MODELS):
            _, i, _, o = counts(day, p, m)
            for label, qty, rate in (("input", i, rate_in), ("output", o, rate_out)):
                amount = (Decimal(qty) * rate / Decimal(1_000_000)).quantize(Decimal("0.000001"))
                out.append(
                    {
                        "object": "organization.costs.result",
                        "amount": {"value": str(amount), "currency": "usd"},
                        "line_item": f"{model}, {label}",
                        "project_id": project,
                        "quantity": float(qty),
                    }
                )
    return out


def expected_by_day(first: date, stop: date) -> dict[date, dict]:
    """What the provider reports per UTC day in [first, stop): usage sums and the cost report's total."""
    out = {}
    for ordinal in range(first.toordinal(), stop.toordinal()):
        d = date.fromordinal(ordinal)
        day = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) // 86400
        sums = defaultdict(int)
        for p in range(len(PROJECTS)):
            for m in range(len(MODELS)):
                r, i, c, o = counts(day, p, m)
                sums["requests"] += r
                sums["input_tokens"] += i
                sums["cache_read_tokens"] += c
                sums["output_tokens"] += o
                sums["rows"] += 1
        cost = sum((Decimal(x["amount"]["value"]) for x in cost_results(day)), Decimal(0))
        out[d] = {**sums, "cost": cost}
    return out


class FakeOpenAI:
    def __init__(self, *, delay: float = 0.0):
        self.delay = delay
        self.lock = threading.Lock()
        self.log: list[tuple[str, int, int, str | None]] = []  # (path, start_time, bucket offset, fault)
        self.faults: dict[tuple[str, int], list[str]] = defaultdict(list)
        # Closed after the last queued fault of a page is served when `hold_after_fault` is set: the next request waits until the test has
        # looked at the run and calls release(); so a short retry countdown cannot hide the "retrying" state.
        self.hold_after_fault = False
        self.gate = threading.Event()
        self.gate.set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                fake._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self.thread.start()

    def add_fault(self, path: str, offset: int, *kinds: str) -> None:
        """The next requests of the page starting at bucket `offset` get these faults, one each, in order."""
        with self.lock:
            self.faults[(path, offset)].extend(kinds)

    def requests(self, path: str | None = None) -> list[tuple[str, int, int, str | None]]:
        with self.lock:
            return [r for r in self.log if path is None or r[0] == path]

    def faults_served(self) -> int:
        return sum(1 for r in self.requests() if r[3])

    def release(self) -> None:
        self.gate.set()

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _send(h, status: int, body: bytes, content_type: str = "application/json") -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h) -> None:
        url = urlsplit(h.path)
        if h.headers.get("Authorization") != f"Bearer {API_KEY}":
            return self._send(h, 401, b'{"error": {"type": "invalid_request_error", "message": "bad key"}}')
        if url.path not in (USAGE_PATH, COSTS_PATH):
            return self._send(h, 404, b'{"error": {"message": "not found"}}')
        q = dict(parse_qsl(url.query))
        start, end, limit = int(q["start_time"]), int(q["end_time"]), int(q.get("limit", 7))
        offset = int(q["page"][5:]) if q.get("page") else 0
        self.gate.wait(timeout=60)
        with self.lock:
            pending = self.faults.get((url.path, offset))
            fault = pending.pop(0) if pending else None
            self.log.append((url.path, start, offset, fault))
            if fault and self.hold_after_fault and not pending:  # the last queued fault of this page
                self.gate.clear()
        if self.delay:
            time.sleep(self.delay)
        days = range(start // 86400, -(-end // 86400))
        if fault == "html502":
            body = f"<html><body><h1>502 Bad Gateway</h1>{BODY_MARKER}</body></html>".encode()
            self._send(h, 502, body, "text/html")
        else:
            stop = min(len(days), offset + limit)
            buckets = [
                {
                    "object": "bucket",
                    "start_time": day * 86400,
                    "end_time": (day + 1) * 86400,
                    "results": usage_results(day) if url.path == USAGE_PATH else cost_results(day),
                }
                for day in days[offset:stop]
            ]
            more = stop < len(days)
            body = json.dumps(
                {
                    "object": "page",
                    "data": buckets,
                    "has_more": more,
                    "next_page": f"page_{stop}" if more else None,
                    "note": BODY_MARKER,
                }
            ).encode()
            if fault == "truncate":
                body = body[: len(body) // 2]
            elif fault == "html200":
                body = f"<html><body>Service temporarily unavailable {BODY_MARKER}</body></html>".encode()
            self._send(h, 200, body, "text/html" if fault == "html200" else "application/json")
