#!/usr/bin/env python
"""A fake OpenAI Administration API (Usage + Costs) on loopback, for bench/sync.py. Standard library only.

    python bench/fake_openai.py --projects 200 --models 20 --density 1.0 [--port 0] [--max-seconds 3600] [--strict]

Prints `LISTENING <port>` on stdout once it accepts connections. Exits by itself after --max-seconds or when its
parent process goes away.

What it serves (formats of /work/shared/provider-api-samples and its SPEC.md):

* `GET /v1/organization/usage/completions`: one bucket per `bucket_width` interval of [start_time, end_time), empty
  ones included, at most `limit` buckets per page, `has_more` / `next_page` (an opaque `page_…` token, passed back as
  `page`). One result per project x model in use (grouped by project_id / api_key_id / model / batch / service_tier,
  each set only when grouped by, as the real API does; `group_by` and `group_by[]` are both accepted).
* the other usage endpoints (embeddings, moderations, images, audio_*, vector_stores, code_interpreter_sessions, …):
  the same bucket pages with `results: []`.
* `GET /v1/organization/costs`: daily buckets, grouped by project_id and line_item: per project x model in use that
  day `"<model>, input"`, `"<model>, cached input"`, `"<model>, output"` lines, amounts = that day's hourly usage
  summed x a list price, quantity in tokens.
* `GET /_bench/stats` (counters as JSON) and `POST /_bench/reset`, for the benchmark.

Data are a pure function of (project, model, unix hour): a re-read of any window gives the same rows, and nothing is
prebuilt. A response is generated and sent one bucket at a time (HTTP/1.1 chunked), so memory depends on neither the
window nor the page size.

Which projects a connection sees comes from its key: `Bearer sk-admin-bench-<first>-<stop>` serves projects
[first, stop). Density: each project uses round(density x models) of the models each UTC day (a rotating, consecutive
subset), every hour of that day; density 1.0 = every project x model combination every hour.

Deviations from the real API are counted in the stats (`violations`) rather than refused, unless --strict: `limit`
above the maximum for the bucket width (clamped), and costs asked with a `bucket_width` other than `1d` (served as
1d buckets; the real Costs API only accepts `1d`).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

# (model as the API names it, list price USD per 1M tokens: input, cached input, output). Rough list prices; the
# benchmark does not compare them with the catalog. All 20 names are priced by the catalog (genai-prices).
MODELS = (
    ("gpt-4o-2024-08-06", "2.5", "1.25", "10"),
    ("gpt-4o-mini-2024-07-18", "0.15", "0.075", "0.6"),
    ("gpt-4.1-2025-04-14", "2", "0.5", "8"),
    ("gpt-4.1-mini-2025-04-14", "0.4", "0.1", "1.6"),
    ("gpt-4.1-nano-2025-04-14", "0.1", "0.025", "0.4"),
    ("o3-2025-04-16", "2", "0.5", "8"),
    ("o3-mini-2025-01-31", "1.1", "0.55", "4.4"),
    ("o4-mini-2025-04-16", "1.1", "0.275", "4.4"),
    ("o1-2024-12-17", "15", "7.5", "60"),
    ("o1-mini-2024-09-12", "1.1", "0.55", "4.4"),
    ("gpt-5-2025-08-07", "1.25", "0.125", "10"),
    ("gpt-5-mini-2025-08-07", "0.25", "0.025", "2"),
    ("gpt-5-nano-2025-08-07", "0.05", "0.005", "0.4"),
    ("gpt-4-turbo-2024-04-09", "10", "10", "30"),
    ("gpt-3.5-turbo-0125", "0.5", "0.5", "1.5"),
    ("gpt-4-0613", "30", "30", "60"),
    ("gpt-4o-2024-11-20", "2.5", "1.25", "10"),
    ("chatgpt-4o-latest", "5", "5", "15"),
    ("o3-pro-2025-06-10", "20", "20", "80"),
    ("gpt-5.1-2025-11-13", "1.25", "0.125", "10"),
)
WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}
USAGE_MAX_LIMIT = {"1m": 1440, "1h": 168, "1d": 31}
USAGE_DEFAULT_LIMIT = {"1m": 60, "1h": 24, "1d": 7}
COSTS_MAX_LIMIT, COSTS_DEFAULT_LIMIT = 180, 7
USAGE_ENDPOINTS = {
    "completions": "organization.usage.completions.result",
    "embeddings": "organization.usage.embeddings.result",
    "moderations": "organization.usage.moderations.result",
    "images": "organization.usage.images.result",
    "audio_speeches": "organization.usage.audio_speeches.result",
    "audio_transcriptions": "organization.usage.audio_transcriptions.result",
    "vector_stores": "organization.usage.vector_stores.result",
    "code_interpreter_sessions": "organization.usage.code_interpreter_sessions.result",
    "file_search_calls": "organization.usage.file_searches.result",
    "web_search_calls": "organization.usage.web_searches.result",
}
KEY_PREFIX = "sk-admin-bench-"
MILLION = Decimal(1_000_000)
_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread deterministic hash of an int."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


class Dataset:
    def __init__(self, projects: int, models: int, density: float):
        if not 1 <= models <= len(MODELS):
            raise SystemExit(f"--models must be 1..{len(MODELS)}")
        self.n_projects, self.n_models = projects, models
        self.per_day = max(1, min(models, round(density * models)))
        self.project_ids = [
            "proj_" + hashlib.sha256(f"bench-project-{p}".encode()).hexdigest()[:24] for p in range(projects)
        ]
        self.key_ids = [
            "key_" + hashlib.sha256(f"bench-key-{p}".encode()).hexdigest()[:16] for p in range(projects)
        ]
        self.models = [m[0] for m in MODELS[:models]]
        self.rates = [tuple(Decimal(r) / MILLION for r in m[1:]) for m in MODELS[:models]]

    def models_on(self, project: int, day: int) -> range | list[int]:
        """The models a project uses on a UTC day (day = unix seconds // 86400)."""
        first = (project * 7 + day) % self.n_models
        return [(first + j) % self.n_models for j in range(self.per_day)]

    @staticmethod
    def hour_counts(project: int, model: int, hour: int) -> tuple[int, int, int, int]:
        """(requests, input incl. cached, cached input, output) of one project x model x unix hour."""
        x = _mix((hour << 24) | (project << 8) | model)
        requests = 1 + x % 400
        input_tokens = requests * (200 + (x >> 9) % 3000)
        cached = (input_tokens * ((x >> 21) % 70) // 100) // 128 * 128
        output = requests * (10 + (x >> 28) % 700)
        return requests, input_tokens, cached, output


# --- response bodies ---------------------------------------------------------------------------------------------


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _completion_template(group_by: set[str]) -> str:
    """A %-template of one completions result: project id, key id, model, then the counts."""

    def dim(name: str, fmt: str) -> str:
        return fmt if name in group_by else "null"

    return (
        '{"object":"organization.usage.completions.result","input_tokens":%(i)d,"input_cached_tokens":%(c)d,'
        '"input_cache_write_tokens":0,"input_uncached_tokens":%(u)d,"output_tokens":%(o)d,'
        '"input_text_tokens":%(u)d,"output_text_tokens":%(o)d,"input_cached_text_tokens":%(c)d,'
        '"input_audio_tokens":0,"input_cached_audio_tokens":0,"output_audio_tokens":0,"input_image_tokens":0,'
        '"input_cached_image_tokens":0,"output_image_tokens":0,"num_model_requests":%(r)d,'
        f'"project_id":{dim("project_id", chr(34) + "%(p)s" + chr(34))},"user_id":null,'
        f'"api_key_id":{dim("api_key_id", chr(34) + "%(k)s" + chr(34))},'
        f'"model":{dim("model", chr(34) + "%(m)s" + chr(34))},'
        f'"batch":{dim("batch", "false")},"service_tier":{dim("service_tier", chr(34) + "default" + chr(34))}}}'
    )


def _money(value: Decimal) -> str:
    return format(value.normalize() if value else Decimal(0), "f")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            self.requests: Counter = Counter()
            self.rows: Counter = Counter()
            self.bytes = 0
            self.violations: Counter = Counter()
            self.seconds = 0.0
            self.group_by: Counter = Counter()
            self.query_shapes: Counter = Counter()

    def as_dict(self) -> dict:
        with self.lock:
            return {
                "requests": dict(self.requests),
                "rows": dict(self.rows),
                "bytes": self.bytes,
                "violations": dict(self.violations),
                "seconds_generating_and_sending": round(self.seconds, 3),
                "group_by": dict(self.group_by),
                "query_shapes": dict(self.query_shapes),
            }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai-bench/1.0"
    dataset: Dataset
    stats: Stats
    strict: bool = False

    def log_message(self, format, *args):  # noqa: A002 - silence per-request logging
        pass

    # -- helpers --
    def _send_json(self, status: int, body, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error", code=None, param=None):
        self.stats.violations[f"{status}: {message}"[:160]] += 1
        self._send_json(status, {"error": {"message": message, "type": kind, "param": param, "code": code}})

    def _chunk(self, data: str) -> None:
        raw = data.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
        self._sent += len(raw)

    # -- routing --
    def do_POST(self):  # noqa: N802
        if self.path == "/_bench/reset":
            self.stats.reset()
            return self._send_json(200, {"ok": True})
        return self._error(404, "Not found")

    def do_GET(self):  # noqa: N802
        url = urlsplit(self.path)
        if url.path == "/_bench/stats":
            return self._send_json(200, self.stats.as_dict())
        auth = self.headers.get("Authorization", "")
        shard = self._shard(auth)
        if shard is None:
            return self._error(401, "Incorrect API key provided.", code="invalid_api_key")
        query = parse_qsl(url.query, keep_blank_values=True)
        params: dict[str, str] = {}
        group_by: list[str] = []
        for k, v in query:
            if k in ("group_by", "group_by[]"):
                group_by.append(v)
            else:
                params[k] = v
        prefix = "/v1/organization/"
        if not url.path.startswith(prefix):
            return self._error(404, f"Invalid URL (GET {url.path})")
        name = url.path[len(prefix) :]
        if name == "costs":
            endpoint = "costs"
        elif name.startswith("usage/") and name[6:] in USAGE_ENDPOINTS:
            endpoint = name[6:]
        else:
            return self._error(404, f"Invalid URL (GET {url.path})")
        with self.stats.lock:
            self.stats.requests[endpoint] += 1
            self.stats.group_by[f"{endpoint}: {','.join(group_by)}"] += 1
            self.stats.query_shapes[
                f"{endpoint} bucket_width={params.get('bucket_width', '-')} limit={params.get('limit', '-')}"
            ] += 1
        t0 = time.perf_counter()
        try:
            self._report(endpoint, params, set(group_by), shard)
        finally:
            with self.stats.lock:
                self.stats.seconds += time.perf_counter() - t0

    @staticmethod
    def _shard(auth: str) -> range | None:
        if not auth.startswith("Bearer " + KEY_PREFIX):
            return None
        try:
            first, stop = auth[len("Bearer " + KEY_PREFIX) :].split("-")
            return range(int(first), int(stop))
        except ValueError:
            return None

    def _report(self, endpoint: str, params: dict, group_by: set[str], shard: range) -> None:
        try:
            start = int(params["start_time"])
        except (KeyError, ValueError):
            return self._error(400, "start_time is required and must be an integer", param="start_time")
        try:
            end = int(params["end_time"]) if "end_time" in params else int(time.time())
        except ValueError:
            return self._error(400, "end_time must be an integer", param="end_time")
        width_name = params.get("bucket_width", "1d")
        if width_name not in WIDTHS:
            return self._error(400, f"Invalid bucket_width '{width_name}'", param="bucket_width")
        if endpoint == "costs":
            if width_name != "1d":
                if self.strict:
                    return self._error(400, "costs: bucket_width must be 1d", param="bucket_width")
                self.stats.violations[
                    f"costs asked with bucket_width={width_name} (only 1d exists): served 1d"
                ] += 1
                width_name = "1d"
            max_limit, default_limit = COSTS_MAX_LIMIT, COSTS_DEFAULT_LIMIT
            start = start // 86400 * 86400  # the real Costs API snaps to UTC midnight
        else:
            max_limit, default_limit = USAGE_MAX_LIMIT[width_name], USAGE_DEFAULT_LIMIT[width_name]
        width = WIDTHS[width_name]
        try:
            limit = int(params.get("limit", default_limit))
        except ValueError:
            return self._error(400, "limit must be an integer", param="limit")
        if limit < 1:
            return self._error(400, "limit must be at least 1", param="limit")
        if limit > max_limit:
            if self.strict:
                return self._error(400, f"limit must be at most {max_limit} for {width_name}", param="limit")
            self.stats.violations[
                f"{endpoint}: limit {limit} > max {max_limit} for {width_name}: clamped"
            ] += 1
            limit = max_limit
        if end <= start:
            return self._error(400, "end_time must be after start_time", param="end_time")
        offset = 0
        if params.get("page"):
            try:
                token = params["page"]
                assert token.startswith("page_")
                decoded = base64.urlsafe_b64decode(token[5:].encode()).decode()
                offset, t_start, t_end = (int(x) for x in decoded.split(":"))
                assert (t_start, t_end) == (start, end) and offset > 0
            except (AssertionError, ValueError):
                return self._error(400, "Invalid page cursor", param="page")
        n_buckets = -(-(end - start) // width)
        stop = min(n_buckets, offset + limit)
        has_more = stop < n_buckets
        next_page = (
            json.dumps("page_" + base64.urlsafe_b64encode(f"{stop}:{start}:{end}".encode()).decode())
            if has_more
            else "null"
        )

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._sent = 0
        self._chunk('{"object":"page","data":[')
        rows = 0
        template = _completion_template(group_by) if endpoint == "completions" else ""
        for b in range(offset, stop):
            b_start = start + b * width
            b_end = min(end, b_start + width)
            head = (
                f'{"," if b > offset else ""}{{"object":"bucket","start_time":{b_start},"end_time":{b_end},'
                f'"start_time_iso":"{_iso(b_start)}","end_time_iso":"{_iso(b_end)}","results":['
            )
            if endpoint == "completions":
                body = self._completions_bucket(template, b_start, b_end, shard)
            elif endpoint == "costs":
                body = self._costs_bucket(b_start, b_end, shard)
            else:
                body = []
            rows += len(body)
            self._chunk(head + ",".join(body) + "]}")
        self._chunk(f'],"has_more":{"true" if has_more else "false"},"next_page":{next_page}}}')
        self.wfile.write(b"0\r\n\r\n")
        with self.stats.lock:
            self.stats.rows[endpoint] += rows
            self.stats.bytes += self._sent

    def _completions_bucket(self, template: str, b_start: int, b_end: int, shard: range) -> list[str]:
        ds = self.dataset
        out = []
        hours = range(b_start // 3600, -(-b_end // 3600))  # every hour the bucket touches
        for p in shard:
            pid, kid = ds.project_ids[p], ds.key_ids[p]
            # a 1h (or 1m) bucket lies inside one day; a 1d bucket sums its 24 hours
            per_model: dict[int, list[int]] = {}
            for hour in hours:
                for m in ds.models_on(p, hour // 24):
                    r, i, c, o = ds.hour_counts(p, m, hour)
                    acc = per_model.get(m)
                    if acc is None:
                        per_model[m] = [r, i, c, o]
                    else:
                        acc[0] += r
                        acc[1] += i
                        acc[2] += c
                        acc[3] += o
            for m, (r, i, c, o) in per_model.items():
                out.append(
                    template
                    % {"i": i, "c": c, "u": i - c, "o": o, "r": r, "p": pid, "k": kid, "m": ds.models[m]}
                )
        return out

    def _costs_bucket(self, b_start: int, b_end: int, shard: range) -> list[str]:
        ds = self.dataset
        out = []
        day = b_start // 86400
        for p in shard:
            pid = ds.project_ids[p]
            for m in ds.models_on(p, day):
                uncached = cached = output = 0
                for hour in range(day * 24, day * 24 + 24):
                    _r, i, c, o = ds.hour_counts(p, m, hour)
                    uncached += i - c
                    cached += c
                    output += o
                rate_in, rate_cached, rate_out = ds.rates[m]
                name = ds.models[m]
                for label, qty, rate in (
                    ("input", uncached, rate_in),
                    ("cached input", cached, rate_cached),
                    ("output", output, rate_out),
                ):
                    out.append(
                        '{"object":"organization.costs.result","amount":{"value":%s,"currency":"usd"},'
                        '"line_item":"%s, %s","project_id":"%s","api_key_id":null,"quantity":%d.0,'
                        '"quantity_unit":"tokens"}' % (_money(qty * rate), name, label, pid, qty)
                    )
        return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--projects", type=int, default=200)
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--density", type=float, default=1.0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument(
        "--max-seconds", type=float, default=3600.0, help="exit after this long, whatever happens"
    )
    ap.add_argument("--strict", action="store_true", help="refuse (400) what the real API refuses")
    args = ap.parse_args(argv)

    Handler.dataset = Dataset(args.projects, args.models, args.density)
    Handler.stats = Stats()
    Handler.strict = args.strict
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    parent = os.getppid()

    def watchdog():
        deadline = time.monotonic() + args.max_seconds
        while time.monotonic() < deadline:
            if os.getppid() != parent:  # the benchmark went away
                os._exit(3)
            time.sleep(0.5)
        print("fake_openai: --max-seconds reached, exiting", file=sys.stderr, flush=True)
        os._exit(2)

    threading.Thread(target=watchdog, daemon=True).start()
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
