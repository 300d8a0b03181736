#!/usr/bin/env python
"""Pre-flight check benchmark: POST /api/v1/check under gunicorn (2 sync workers) on loopback, vs a bare baseline.

    .venv/bin/python bench/check.py [--database-url postgres://…] [--redis-url redis://127.0.0.1:6379/12]
                                    [--events 20000] [--duration 20] [--warmup 3] [--throttle-warmup 62]
                                    [--connections 2,8,32] [--rate 1000] [--quick] [--keep-db]
                                    [--worker-class sync|gthread] [--threads 1]

Target (the issue): at least 1,000 checks per second on this 2-core machine with p99 under 10 ms.

1. Data: a scratch database (created, migrated with call_command("migrate"), dropped at the end), one org
   (Europe/Berlin), 5 teams, an API token with scope `check`, `--events` usage events of the current month pushed
   through apps.usage.services.usage_events_ingest (a quarter of them through the check token, so a token budget
   has spend), and 8 overlapping monthly budgets made with apps.budgets.services.budget_create (org, 2 teams,
   2 providers, a model, tag feature=chat, the token; amounts set from the spend so decisions mix allow/warn/deny).
2. Servers: `gunicorn … -w 2 -k sync` (or `-k gthread --threads N`, for every server of the run) on 127.0.0.1
   (a free port), DEBUG=0 (SECRET_KEY, FIELD_ENCRYPTION_KEY, ALLOWED_HOSTS and SECURE_SSL_REDIRECT=0 from the
   environment), REDIS_URL=--redis-url, CONN_MAX_AGE=600, API_RATE_LIMIT=1000000/min. One DEBUG=1 run for
   comparison. Baselines in the same run: bench/bare_wsgi.py
   (no middleware, no DB: a plain Django view, and a DRF APIView, each doing ONE EVALSHA of the check's own Lua
   script over the same keys and fields). The database fallback: REDIS_URL pointing at a closed port.
3. Load: closed loop with wrk (2 threads, N connections; gunicorn's sync workers close every connection, so wrk
   reconnects per request) and an open loop at a fixed rate (--rate, default 1,000/s) from a Python generator
   (2 processes × 8 threads, raw HTTP/1.1 over a new socket per request, latency measured from each request's
   *scheduled* send time, so queueing is not hidden). Bodies vary: team (or none), provider, model, estimated
   tokens, feature tag. Warm-up, then a fixed measured window. Everything (load generator, gunicorn, PostgreSQL,
   Redis) shares the 2 cores: CPU seconds of each are read from /proc around the measured window and reported
   with the machine's total busy time; before each run the bench waits (up to --quiet-max-wait s) for the shared
   machine to be nearly idle. If the app's throttle is DRF's history list (one timestamp per request of its
   window), app servers get --throttle-warmup seconds of warm-up so that history reaches its steady size.
4. Correctness: the same two check requests (covering all 8 budgets) answered by the Redis path and by the DB path
   give the same "spent" per budget (API, 4 dp); after 1,000 more events pushed through the counters' increment
   path. Also compared in process at full precision (counters.read vs the database).
5. Profile: one in-process worker (the WSGI app called directly, same env as gunicorn): per-request time, time per
   section (token auth, throttle, body validation, estimate, the Redis round trip or the database sums, the
   answer), SQL and Redis round trips, and cProfile (bench/results/check_profile_<variant>.txt), for the Redis path
   and for the database fallback.

Quiet-machine re-run (about 9 min; --quick about 4 min): `.venv/bin/python bench/check.py` with nothing else
running; the defaults use the scratch database spendctl_bench_check and Redis db 12.

Prints a markdown table and writes it to bench/results/check.md. Every process started here is stopped (try/finally).
"""

import argparse
import http.client
import io
import itertools
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/spendctl_bench_check"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"
ORG_SLUG = "bench-check"
TZ = "Europe/Berlin"
TEAMS = ("search", "support", "growth", "platform", "research")
# (provider, model as sent, weight)
MODELS = (
    ("openai", "gpt-4o-mini", 30),
    ("openai", "gpt-4o", 15),
    ("openai", "gpt-4.1", 10),
    ("anthropic", "claude-sonnet-4-5", 25),
    ("anthropic", "claude-haiku-4-5", 20),
)
FEATURES = ("chat", "search", "summarize", "agent", "extract")
CHECK_PATH = "/api/v1/check"
DISPATCH = "DRF dispatch (the whole view)"
RENDER = "JSON render (after the view)"
RATE_LIMIT = "1000000/min"
BENCH_ENV = {
    "SECRET_KEY": "bench-only-secret-key-0123456789-0123456789-0123456789",
    "FIELD_ENCRYPTION_KEY": "YmVuY2gtb25seS1ub3QtYS1yZWFsLWtleS0wMDAwMDA=",
    "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
    "SECURE_SSL_REDIRECT": "0",
    "DJANGO_READ_DOT_ENV_FILE": "0",
    "LOG_LEVEL": "WARNING",
}
CLK = os.sysconf("SC_CLK_TCK")
# The two verification requests: together they meet all 8 budgets.
VERIFY_BODIES = (
    {
        "provider": "openai",
        "model": "gpt-4o",
        "team": "search",
        "estimated_input_tokens": 1200,
        "estimated_output_tokens": 300,
        "tags": {"feature": "chat"},
    },
    {
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "team": "support",
        "estimated_input_tokens": 5000,
        "estimated_output_tokens": 800,
        "estimated_cache_read_tokens": 2000,
    },
)


# --- data ------------------------------------------------------------------------------------------------------------


def recreate_database(database_url: str) -> None:
    """The bench owns this database: a leftover of an interrupted run is dropped, then it is created empty."""
    drop_database(database_url)
    _common.ensure_database(database_url)


def drop_database(database_url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, parts.fragment))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def event_batches(n: int, *, start: datetime, end: datetime, seed: int, prefix: str, batch_size: int = 2500):
    rng = random.Random(seed)
    pick_model = [m for m in MODELS for _ in range(m[2])]
    span = (end - start).total_seconds()
    batch = []
    for i in range(n):
        provider, model, _w = pick_model[rng.randrange(len(pick_model))]
        ts = start + timedelta(seconds=span * (i + rng.random()) / n)
        event = {
            "id": f"{prefix}{i:08d}",
            "timestamp": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "provider": provider,
            "model": model,
            "input_tokens": 20 + int(rng.expovariate(1 / 1800)),
            "output_tokens": 1 + int(rng.expovariate(1 / 350)),
            "tags": {
                "feature": FEATURES[int(len(FEATURES) * rng.random() ** 1.5)],
                "customer": f"c{rng.randrange(30)}",
            },
        }
        if rng.random() < 0.85:
            event["team"] = TEAMS[int(len(TEAMS) * rng.random() ** 1.3)]
        batch.append(event)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def month_start_utc(org) -> datetime:
    from apps.budgets.selectors import org_today

    today = org_today(org)
    return datetime.combine(today.replace(day=1), datetime.min.time(), org.tz).astimezone(UTC)


def ingest(org, token, n: int, *, seed: int, prefix: str) -> float:
    from apps.usage.services import usage_events_ingest

    start, end = month_start_utc(org), datetime.now(UTC) - timedelta(minutes=1)
    t0 = time.perf_counter()
    for i, batch in enumerate(event_batches(n, start=start, end=end, seed=seed, prefix=prefix)):
        # every 4th batch through the check token: a token budget has something to sum
        result = usage_events_ingest(org=org, events=batch, token=token if i % 4 == 3 else None)
        rejected = getattr(result, "rejected_events", [])
        if rejected:
            raise SystemExit(f"ingest rejected events: {rejected[:3]}")
    return time.perf_counter() - t0


def prepare(args) -> dict:
    from django.db.models import Sum

    from apps.budgets.services import budget_create
    from apps.catalog.selectors import normalise_model
    from apps.orgs.services import api_token_create, org_create, team_create, user_get_or_create
    from apps.usage.models import UsageRecord

    owner = user_get_or_create(email="bench-check@spendctl.invalid").user
    org = org_create(name="Bench check", slug=ORG_SLUG, owner=owner, timezone_name=TZ)
    teams = {name: team_create(org=org, name=name) for name in TEAMS}
    token, plaintext = api_token_create(org=org, name="bench check", scopes=["check"], created_by=owner)
    seconds = ingest(org, token, args.events, seed=7, prefix="ev-")
    print(f"ingested {args.events:,} events in {seconds:.1f} s", flush=True)

    month = UsageRecord.objects.filter(org=org, day__gte=month_start_utc(org).astimezone(org.tz).date())

    def spent(**flt) -> Decimal:
        return month.filter(**flt).aggregate(s=Sum("cost"))["s"] or Decimal(0)

    def amount(x) -> Decimal:
        return max(Decimal("1.00"), Decimal(x).quantize(Decimal("0.01")))

    gpt4o = normalise_model("openai", "gpt-4o")
    specs = [
        ("Org monthly", {"scope": "org"}, spent(), 1.5, None),
        ("Team search", {"scope": "team", "team": teams["search"]}, spent(team=teams["search"]), 0.9, None),
        ("Team support", {"scope": "team", "team": teams["support"]}, spent(team=teams["support"]), 2.0, 3.0),
        ("OpenAI", {"scope": "provider", "provider": "openai"}, spent(provider="openai"), 1.2, None),
        # hard cap just above the spend: large estimates are denied
        (
            "Anthropic",
            {"scope": "provider", "provider": "anthropic"},
            spent(provider="anthropic"),
            0.95,
            "+0.05",
        ),
        ("gpt-4o", {"scope": "model", "model": gpt4o}, spent(model=gpt4o), 1.1, None),
        (
            "Feature chat",
            {"scope": "tag", "tag_key": "feature", "tag_value": "chat"},
            spent(feature="chat"),
            0.98,
            None,
        ),
        ("Bench token", {"scope": "token", "token": token}, spent(token_id=token.pk), 2.0, None),
    ]
    budgets = []
    for name, scope, used, factor, cap in specs:
        hard_cap = None
        if cap == "+0.05":
            hard_cap = (used + Decimal("0.05")).quantize(Decimal("0.01"))
        elif cap is not None:
            hard_cap = amount(used * Decimal(str(cap)))
        budgets.append(
            budget_create(
                org=org, name=name, amount=amount(used * Decimal(str(factor))), hard_cap=hard_cap, **scope
            )
        )
    org.refresh_from_db()
    return {
        "org": org,
        "token": token,
        "plaintext": plaintext,
        "teams": teams,
        "budgets": budgets,
        "owner": owner,
    }


def request_bodies(n: int = 400, seed: int = 11) -> list[bytes]:
    rng = random.Random(seed)
    pick_model = [m for m in MODELS for _ in range(m[2])]
    out = []
    for _ in range(n):
        provider, model, _w = pick_model[rng.randrange(len(pick_model))]
        body = {
            "provider": provider,
            "model": model,
            "estimated_input_tokens": 50 + int(rng.expovariate(1 / 3000)),
            "estimated_output_tokens": 1 + int(rng.expovariate(1 / 600)),
        }
        if rng.random() < 0.7:
            body["team"] = rng.choice(TEAMS)
        if rng.random() < 0.6:
            body["tags"] = {"feature": rng.choice(FEATURES)}
        if rng.random() < 0.2:
            body["estimated_cache_read_tokens"] = body["estimated_input_tokens"] // 2
        out.append(json.dumps(body, separators=(",", ":")).encode())
    return out


# --- processes ---------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn -w 2 -k <WORKER_CLASS> on 127.0.0.1 in its own session; stop() ends exactly that process group."""

    # set from --worker-class / --threads for every server of a run (the app and the baselines alike)
    worker_class, threads = "sync", 1

    def __init__(self, label: str, app: str, env: dict, health: str, workers: int = 2):
        self.label, self.port, self.health = label, free_port(), health
        self.env = {**os.environ, **env}
        self.proc = subprocess.Popen(
            [
                str(_common.ROOT / ".venv" / "bin" / "gunicorn"),
                app,
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--worker-class",
                self.worker_class,
                *(["--threads", str(self.threads)] if self.worker_class == "gthread" else []),
                "--log-level",
                "warning",
                "--timeout",
                "60",
            ],
            cwd=_common.ROOT,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.time() + 40
        while True:
            try:
                status, _ = http_request(self.port, "GET", health)
                if status in (200, 503):
                    break
            except OSError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                self.stop()
                raise SystemExit(f"gunicorn ({label}) did not start")
            time.sleep(0.2)
        time.sleep(0.5)  # both workers up
        self.workers = children(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError):
        return 0.0


def machine_cpu() -> tuple[float, float]:
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK, total / CLK


def redis_server_pids() -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "comm").read_text().strip() == "redis-server":
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def pg_backend_pids(dbname: str) -> list[int]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [dbname]
        )
        return [r[0] for r in cur.fetchall()]


class CpuWindow:
    """CPU seconds of gunicorn's workers, PostgreSQL backends of the bench database, redis-server and the machine."""

    def __init__(self, server: Server, dbname: str):
        self.server, self.dbname = server, dbname

    def _sample(self):
        workers = children(self.server.proc.pid)
        pg = pg_backend_pids(self.dbname)
        return {
            "t": time.monotonic(),
            "workers": {p: proc_cpu(p) for p in workers},
            "pg": {p: proc_cpu(p) for p in pg},
            "redis": {p: proc_cpu(p) for p in redis_server_pids()},
            "machine": machine_cpu(),
        }

    def start(self):
        self.a = self._sample()

    def stop(self) -> dict:
        b = self._sample()
        wall = b["t"] - self.a["t"]

        def delta(kind):
            return sum(v - self.a[kind].get(p, 0.0) for p, v in b[kind].items())

        busy = b["machine"][0] - self.a["machine"][0]
        total = b["machine"][1] - self.a["machine"][1]
        split = sorted((v - self.a["workers"].get(p, 0.0) for p, v in b["workers"].items()), reverse=True)
        return {
            "wall": wall,
            "workers": delta("workers"),
            # the busiest worker's share of the workers' CPU: 0.5 is an even split, 1.0 one worker did everything
            "busiest_share": split[0] / sum(split) if split and sum(split) > 0 else float("nan"),
            "pg": delta("pg"),
            "redis": delta("redis"),
            "machine_busy": busy,
            "machine_cores": total / wall if wall else float("nan"),
        }


def http_request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --- load generators -----------------------------------------------------------------------------------------------

WRK_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
local bodies = { %(bodies)s }
local counter = 0
local thread_no = 0
function setup(thread)
  thread_no = thread_no + 1
  thread:set("offset", thread_no * 97)
end
function init(args)
  counter = offset or 0
end
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, bodies[(counter %% #bodies) + 1])
end
done = function(summary, latency, requests)
  local f = io.open("%(out)s", "w")
  f:write(string.format(
    '{"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, ' ..
    '"timeout": %%d, "p50": %%d, "p95": %%d, "p99": %%d, "p999": %%d, "max": %%d, "mean": %%.1f}',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
  f:close()
end
"""


def run_wrk(
    port: int, path: str, token: str, bodies: list[bytes], connections: int, seconds: float, tmp: Path
):
    out = tmp / f"wrk-{time.monotonic_ns()}.json"
    script = tmp / "check.lua"
    script.write_text(
        WRK_LUA
        % {
            "token": token,
            "bodies": ", ".join("[==[" + b.decode() + "]==]" for b in bodies),
            "out": str(out),
        }
    )
    cmd = [
        "wrk",
        "-t",
        str(min(2, connections)),
        "-c",
        str(connections),
        "-d",
        f"{max(1, int(round(seconds)))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}{path}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _pid, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"wrk failed ({proc.returncode}): {proc.stderr.read().decode()[:500]}")
    r = json.loads(out.read_text())
    out.unlink()
    wall = r["duration_us"] / 1e6
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return {
        "done": r["requests"],
        "wall": wall,
        "rps": r["requests"] / wall,
        "p50": r["p50"] / 1000,
        "p95": r["p95"] / 1000,
        "p99": r["p99"] / 1000,
        "p999": r["p999"] / 1000,
        "max": r["max"] / 1000,
        "errors": errors,
        "error_detail": {k: r[k] for k in ("connect", "read", "write", "status", "timeout") if r[k]},
        "loadgen_cpu": rusage.ru_utime + rusage.ru_stime,
    }


def _loadgen_process(port, path, token, bodies, rate, threads, t0, warmup, seconds, seed, out):
    """One load-generator process: `threads` threads sending raw HTTP/1.1 over a new socket per request
    (gunicorn's sync workers close every connection anyway); rate=None: closed loop.

    Open loop: each thread sends at fixed times (rate/threads per second); a late thread sends at once and its
    latency counts from the scheduled time. Nothing is sent after the window closes (+1 s): what a lagging
    thread still owed is counted as `unsent`. Raw sockets: lighter on the shared cores than http.client.
    """
    import resource
    import threading

    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n"
    ).encode()
    requests = [head + f"Content-Length: {len(b)}\r\n\r\n".encode() + b for b in bodies]
    m0, m1 = t0 + warmup, t0 + warmup + seconds
    lock = threading.Lock()
    agg = {"lat": [], "svc": [], "completed_in_window": 0, "errors": 0, "codes": {}, "unsent": 0}

    def send(req: bytes) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(10)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(req)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:
            return 0
        finally:
            sock.close()
        data = b"".join(chunks)
        return int(data[9:12]) if data[:7] == b"HTTP/1." and len(data) > 12 else 0

    def run(k):
        rng = random.Random(seed * 1000 + k)
        interval = threads / rate if rate else 0.0
        due = t0 + rng.random() * interval
        lat, svc, done, err, codes = [], [], 0, 0, {}
        while True:
            now = time.monotonic()
            if rate:
                if due >= m1:
                    break
                if now > m1 + 1.0:  # lagging past the window: stop, count what was owed
                    unsent = int((m1 - due) / interval) + 1
                    with lock:
                        agg["unsent"] += unsent
                    break
                if due > now:
                    time.sleep(due - now)
                sent_at = time.monotonic()
                scheduled = due
                due += interval
            else:
                if now >= m1:
                    break
                sent_at = scheduled = now
            status = send(requests[rng.randrange(len(requests))])
            end = time.monotonic()
            if m0 <= end <= m1:
                done += 1
            if m0 <= scheduled < m1:
                lat.append((end - scheduled) * 1000)
                svc.append((end - sent_at) * 1000)
                if status != 200:
                    err += 1
                    codes[status] = codes.get(status, 0) + 1
        with lock:
            agg["lat"].extend(lat)
            agg["svc"].extend(svc)
            agg["completed_in_window"] += done
            agg["errors"] += err
            for c, v in codes.items():
                agg["codes"][c] = agg["codes"].get(c, 0) + v

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    agg["cpu"] = ru.ru_utime + ru.ru_stime
    out.put(agg)


def run_python(port, path, token, bodies, *, rate, processes, threads, warmup, seconds, on_measure=None):
    """Open loop at `rate` requests/s over processes × threads, or closed loop when rate is None."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    t0 = time.monotonic() + 2.0
    per_process = rate / processes if rate else None
    procs = [
        ctx.Process(
            target=_loadgen_process,
            args=(port, path, token, bodies, per_process, threads, t0, warmup, seconds, i + 1, out),
        )
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    try:
        if on_measure:
            time.sleep(max(0.0, t0 + warmup - time.monotonic()))
            on_measure("start")
            time.sleep(max(0.0, t0 + warmup + seconds - time.monotonic()))
            on_measure("stop")
        parts = [out.get(timeout=warmup + seconds + 60) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    lat = sorted(x for part in parts for x in part["lat"])
    svc = sorted(x for part in parts for x in part["svc"])
    codes: dict = {}
    for part in parts:
        for k, v in part["codes"].items():
            codes[k] = codes.get(k, 0) + v
    unsent = sum(p["unsent"] for p in parts)
    if unsent:
        codes["unsent (generator fell behind)"] = unsent
    done = sum(p["completed_in_window"] for p in parts)
    return {
        "done": done,
        "wall": seconds,
        "rps": done / seconds,
        "p50": _common.percentile(lat, 50),
        "p95": _common.percentile(lat, 95),
        "p99": _common.percentile(lat, 99),
        "p999": _common.percentile(lat, 99.9),
        "max": lat[-1] if lat else float("nan"),
        "svc_p99": _common.percentile(svc, 99),
        "errors": sum(p["errors"] for p in parts) + unsent,
        "error_detail": codes,
        # includes start-up and warm-up; scaled in measure()
        "loadgen_cpu_total": sum(p["cpu"] for p in parts),
    }


def measure(server: Server, label: str, load: dict, args, ctx: dict) -> dict:
    """Warm-up, then the measured window with CPU accounting. load: {"kind": "wrk", "c": N} or {"kind": "open", …}."""
    token, bodies, path = ctx["plaintext"], ctx["bodies"], load.get("path", CHECK_PATH)
    warmup = load.get("warmup", args.warmup)
    cpu = CpuWindow(server, ctx["dbname"])
    print(
        f"  {label}: {describe(load)}, warm-up {warmup:.0f} s, {args.duration:.0f} s measured …", flush=True
    )
    busy_before = wait_for_quiet(args, label)
    load_before = os.getloadavg()[0]
    if load["kind"] == "wrk":
        if warmup > 0:
            run_wrk(server.port, path, token, bodies, load["c"], warmup, ctx["tmp"])
        cpu.start()
        r = run_wrk(server.port, path, token, bodies, load["c"], args.duration, ctx["tmp"])
        c = cpu.stop()
    else:
        marks = {}

        def on_measure(what):
            if what == "start":
                cpu.start()
            else:
                marks["cpu"] = cpu.stop()

        r = run_python(
            server.port,
            path,
            token,
            bodies,
            rate=load.get("rate"),
            processes=load.get("processes", 2),
            threads=load.get("threads", 8),
            warmup=warmup,
            seconds=args.duration,
            on_measure=on_measure,
        )
        c = marks["cpu"]
        # the generator's CPU over warm-up + window, pro rata to the window
        r["loadgen_cpu"] = r.pop("loadgen_cpu_total") * args.duration / (args.duration + warmup + 2.0)
    r.update(
        {
            "label": label,
            "load": describe(load),
            "workers_cpu": c["workers"],
            "busiest_share": c["busiest_share"],
            "pg_cpu": c["pg"],
            "redis_cpu": c["redis"],
            "machine_busy": c["machine_busy"],
            "cpu_wall": c["wall"],
            "loadavg_before": load_before,
            "busy_before": busy_before,
        }
    )
    r["other_cpu"] = max(0.0, c["machine_busy"] - c["workers"] - c["pg"] - c["redis"] - r["loadgen_cpu"])
    r["worker_ms_per_req"] = c["workers"] / r["done"] * 1000 if r["done"] else float("nan")
    print(
        f"    {r['rps']:,.0f} req/s  p50 {fmt_ms(r['p50'])}  p95 {fmt_ms(r['p95'])}  p99 {fmt_ms(r['p99'])} ms  "
        f"errors {r['errors']}  workers {fmt_cores(r['workers_cpu'], c['wall'])}  "
        f"loadgen {fmt_cores(r['loadgen_cpu'], c['wall'])}  pg {fmt_cores(c['pg'], c['wall'])}  "
        f"redis {fmt_cores(c['redis'], c['wall'])}  other {fmt_cores(r['other_cpu'], c['wall'])}  "
        f"busiest worker {c['busiest_share']:.0%}",
        flush=True,
    )
    return r


def wait_for_quiet(args, what: str) -> float:
    """The machine is shared: wait (up to --quiet-max-wait s) until it is nearly idle before a measurement.

    Returns the busy cores of the last 2-second sample (our own servers are idle at this point)."""
    deadline = time.monotonic() + args.quiet_max_wait
    said = False
    while True:
        a = machine_cpu()
        time.sleep(2.0)
        b = machine_cpu()
        busy = (b[0] - a[0]) / 2.0
        if busy <= args.quiet_threshold or time.monotonic() >= deadline:
            if said or busy > args.quiet_threshold:
                print(f"    ({what}: machine busy {busy:.2f} cores before the run)", flush=True)
            return busy
        if not said:
            print(f"    waiting for the machine to go quiet ({busy:.2f} cores busy) …", flush=True)
            said = True


def describe(load: dict) -> str:
    if load["kind"] == "wrk":
        return f"wrk closed loop, {load['c']} conn"
    if load.get("rate"):
        return f"python open loop {load['rate']:,}/s ({load.get('processes', 2)}×{load.get('threads', 8)} threads)"
    return f"python closed loop ({load.get('processes', 2)}×{load.get('threads', 8)} threads)"


def fmt_ms(x: float) -> str:
    return "overloaded" if x != x else f"{x:.2f}"  # nan: no request of the window was answered


def fmt_cores(seconds: float, wall: float) -> str:
    return f"{seconds / wall:.2f} cores" if wall else "?"


# --- correctness -------------------------------------------------------------------------------------------------------


def post_check(port: int, token: str, body: dict) -> tuple[int, dict]:
    status, data = http_request(
        port,
        "POST",
        CHECK_PATH,
        json.dumps(body).encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        return status, json.loads(data)
    except ValueError:
        return status, {"raw": data[:300].decode(errors="replace")}


def spent_by_budget(answer: dict) -> dict:
    return {b["id"]: b["spent"] for b in answer.get("budgets", [])}


def in_process_compare(org, redis_url: str) -> dict:
    """Full precision: counters.read (Redis hashes, incl. increments) vs scope_daily (the database), per budget."""
    from django.test import override_settings

    from apps.budgets import counters
    from apps.budgets.check import budget_field
    from apps.budgets.models import Budget
    from apps.budgets.selectors import budget_period, org_today, scope_daily

    org.refresh_from_db()
    today = org_today(org)
    out = {}
    with override_settings(REDIS_URL=redis_url):
        counters.reset_client()
        try:
            for b in Budget.objects.for_org(org):
                start, end = budget_period(b, today)
                stop = min(end, today + timedelta(days=1))
                field = budget_field(b)
                fast = counters.read(org, [field], start, stop)[field]
                db = sum(scope_daily(b, start, stop).values(), Decimal(0))
                out[b.name] = (fast, db, abs(fast - db))
        finally:
            counters.reset_client()
    return out


# --- in-process profile (a child process with the gunicorn env) ------------------------------------------------------


def profile_child(args) -> None:
    """One worker in process: the WSGI app called directly, as gunicorn's sync worker calls it (same env).

    Prints a JSON report: wall and CPU (process_time) per request, CPU and wall per section, SQL and Redis round
    trips; writes a cProfile (timer: process CPU time, so waiting on PostgreSQL/Redis or for a core is not in it).
    """
    import cProfile
    import pstats

    sys.path.insert(0, str(_common.ROOT))
    import django

    django.setup()
    import redis
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection

    app = WSGIHandler()
    token = os.environ["BENCH_TOKEN"]
    bodies = [b.encode() for b in json.loads(Path(args.profile_bodies).read_text())]
    rng = random.Random(5)
    path = args.profile_path

    def call(body: bytes):
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": f"Bearer {token}",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.url_scheme": "http",
            "wsgi.version": (1, 0),
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        status = []
        result = app(environ, lambda s, h, exc_info=None: status.append(s))
        data = b"".join(result)
        result.close()
        return status[0], data

    n = args.profile_requests
    for _ in range(300):  # warm-up
        status, data = call(rng.choice(bodies))
        assert status.startswith("200"), (status, data[:300])

    def timed_loop(count):
        ms = []
        c0 = time.process_time()
        for _ in range(count):
            body = rng.choice(bodies)
            t0 = time.perf_counter()
            status, _data = call(body)
            ms.append((time.perf_counter() - t0) * 1000)
            assert status.startswith("200"), status
        return sorted(ms), (time.process_time() - c0) / count * 1000

    plain, cpu_ms = timed_loop(n)
    report = {
        "path": path,
        "plain_ms": {p: _common.percentile(plain, p) for p in (50, 95, 99)},
        "mean_ms": sum(plain) / n,
        "cpu_ms": cpu_ms,
    }

    # sections: wrap functions in this process only (the bench's own instrumentation, not an app change)
    from rest_framework.renderers import JSONRenderer

    from apps.budgets import api, check, counters
    from apps.orgs.authentication import CheckTokenAuthentication
    from apps.orgs.throttling import CheckRateThrottle

    totals: dict[str, list[float]] = {}

    def wrap(owner, attr, name):
        original = getattr(owner, attr)

        def timed(*a, **kw):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return original(*a, **kw)
            finally:
                acc = totals.setdefault(name, [0.0, 0.0])
                acc[0] += time.perf_counter() - t0
                acc[1] += time.process_time() - c0

        setattr(owner, attr, timed)

    sections = [
        (api.CheckView, "dispatch", DISPATCH),
        (CheckTokenAuthentication, "authenticate", "· token auth (worker cache; SQL only on a miss)"),
        (CheckRateThrottle, "allow_request", "· throttle (counted in the check's round trip)"),
        (api, "check_body_fast", "· body validation (check_body_fast)"),
        (api, "preflight_check", "· preflight_check"),
        (check, "estimate", "·· estimate (PriceBook, memoised per worker)"),
        (check, "_spent_redis", "·· _spent_redis (Redis path)"),
        (counters, "check_round_trip", "··· counters.check_round_trip (the one EVALSHA)"),
        (check, "_spent_db", "·· _spent_db (database path)"),
        (api, "result_data", "· answer (result_data)"),
        (JSONRenderer, "render", RENDER),
    ]
    if path == CHECK_PATH:
        for owner, attr, name in sections:
            wrap(owner, attr, name)
    sql = {"n": 0, "t": 0.0, "by": {}}

    def sql_wrapper(execute, q, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(q, params, many, context)
        finally:
            dt = time.perf_counter() - t0
            sql["n"] += 1
            sql["t"] += dt
            words = q.split()
            table = next(
                (w.strip('"') for i, w in enumerate(words) if i and words[i - 1] in ("FROM", "UPDATE")), "?"
            )
            key = f"{words[0]} {table}"
            c, t = sql["by"].get(key, (0, 0.0))
            sql["by"][key] = (c + 1, t + dt)

    rcalls = {"n": 0, "t": 0.0, "by": {}}

    def count_redis(name, dt):
        rcalls["n"] += 1
        rcalls["t"] += dt
        c, t = rcalls["by"].get(name, (0, 0.0))
        rcalls["by"][name] = (c + 1, t + dt)

    original_execute = redis.Redis.execute_command

    def redis_execute(self, *a, **kw):
        t0 = time.perf_counter()
        try:
            return original_execute(self, *a, **kw)
        finally:
            count_redis(str(a[0]) if a else "?", time.perf_counter() - t0)

    redis.Redis.execute_command = redis_execute
    original_pipe = redis.client.Pipeline.execute

    def pipe_execute(self, *a, **kw):
        t0 = time.perf_counter()
        try:
            return original_pipe(self, *a, **kw)
        finally:
            count_redis("pipeline", time.perf_counter() - t0)

    redis.client.Pipeline.execute = pipe_execute
    t_all, c_all = time.perf_counter(), time.process_time()
    with connection.execute_wrapper(sql_wrapper):
        instrumented, _cpu = timed_loop(n)
    t_all, c_all = time.perf_counter() - t_all, time.process_time() - c_all
    report["instrumented_mean_ms"] = t_all / n * 1000
    report["instrumented_cpu_ms"] = c_all / n * 1000
    report["sections"] = {
        name: [totals.get(name, [0.0, 0.0])[0] / n * 1000, totals.get(name, [0.0, 0.0])[1] / n * 1000]
        for _o, _a, name in sections
    }
    report["sql"] = {
        "per_req": sql["n"] / n,
        "ms_per_req": sql["t"] / n * 1000,
        "by": {k: (c / n, t / n * 1000) for k, (c, t) in sorted(sql["by"].items())},
    }
    report["redis"] = {
        "per_req": rcalls["n"] / n,
        "ms_per_req": rcalls["t"] / n * 1000,
        "by": {k: (c / n, t / n * 1000) for k, (c, t) in sorted(rcalls["by"].items())},
    }
    # throttle history size (DRF keeps one timestamp per request of the window)
    try:
        from django.core.cache import cache

        from apps.orgs.models import ApiToken

        tok = ApiToken.objects.filter(prefix=token[:12]).first()
        hist = cache.get(f"throttle_check_t{tok.pk}") if tok else None
        report["throttle_history_len"] = len(hist) if hist else 0
    except Exception as exc:  # noqa: BLE001
        report["throttle_history_len"] = f"? ({type(exc).__name__})"

    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    timed_loop(min(n, 500))
    profiler.disable()
    buf = io.StringIO()
    buf.write(
        f"cProfile of {min(n, 500)} requests to {path}; timer: process CPU time (waits are not in it)\n"
    )
    stats = pstats.Stats(profiler, stream=buf)
    stats.sort_stats("cumulative").print_stats(60)
    stats.sort_stats("tottime").print_stats(40)
    Path(args.profile_out).write_text(buf.getvalue())
    print(json.dumps(report))


def run_profile(ctx: dict, env: dict, label: str, n: int, path: str = CHECK_PATH) -> dict:
    """Runs profile_child in a fresh process with `env` (as a gunicorn worker would have it)."""
    _common.RESULTS.mkdir(parents=True, exist_ok=True)
    out = _common.RESULTS / f"check_profile_{label}.txt"
    bodies_file = ctx["tmp"] / "bodies.json"
    bodies_file.write_text(json.dumps([b.decode() for b in ctx["bodies"]]))
    busy = wait_for_quiet(ctx["args"], f"profile {label}")
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--profile-child",
            "--profile-bodies",
            str(bodies_file),
            "--profile-requests",
            str(n),
            "--profile-out",
            str(out),
            "--profile-path",
            path,
        ],
        env={**os.environ, **env, "BENCH_TOKEN": ctx["plaintext"]},
        cwd=_common.ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise SystemExit(f"profile child failed: {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["busy_before"] = busy
    report["profile_file"] = str(out.relative_to(_common.ROOT))
    return report


def clear_throttle(ctx: dict) -> None:
    import redis

    redis.Redis.from_url(ctx["redis_url"]).delete(f":1:throttle_check_t{ctx['token'].pk}")


CODE_FILES = (
    "apps/budgets/check.py",
    "apps/budgets/counters.py",
    "apps/budgets/api.py",
    "apps/budgets/serializers.py",
    "apps/orgs/authentication.py",
    "apps/orgs/throttling.py",
    "apps/catalog/selectors.py",
    "spendctl/settings/base.py",
)


def code_version() -> str:
    """Other people edit the app while this runs: which versions of the hot path's files were measured."""
    import hashlib

    out = []
    for name in CODE_FILES:
        path = _common.ROOT / name
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
            stamp = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%H:%M:%S")
            out.append(f"{name} {digest} ({stamp})")
        except OSError:
            out.append(f"{name} missing")
    return "; ".join(out)


def cleanup_redis(redis_url: str, org_id: int | None, token_id: int | None) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    patterns = []
    if org_id is not None:  # counters, the org version and its last-used markers, the bare baseline's keys
        patterns += [f"spc:{org_id}:*", f"spc:ver:{org_id}", f"spc:ver:{org_id}:*", "spc:bare:*"]
    if token_id is not None:  # DRF's history, the app's / the prototypes' fixed windows
        patterns += [f":1:throttle:*:t{token_id}:*"]
    n = 0
    for pattern in patterns:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            n += client.delete(*keys)
    return n


# --- main --------------------------------------------------------------------------------------------------------------


def server_env(ctx: dict, **overrides) -> dict:
    env = {
        **BENCH_ENV,
        "DJANGO_SETTINGS_MODULE": "spendctl.settings.base",
        "DEBUG": "0",
        "DATABASE_URL": ctx["database_url"],
        "REDIS_URL": ctx["redis_url"],
        "API_RATE_LIMIT": RATE_LIMIT,
        "CHECK_RATE_LIMIT": RATE_LIMIT,
        "CONN_MAX_AGE": "600",
    }
    env.update(overrides)
    return env


def verify(ctx: dict, redis_server: Server, fallback_port: int | None, dead_port: int | None) -> dict:
    """Same requests, Redis path vs DB path, after an extra ingest through the counters' increment path."""
    from django.test import override_settings

    token = ctx["plaintext"]
    # the first read builds the day hashes from the database
    first = [post_check(redis_server.port, token, b) for b in VERIFY_BODIES]
    for status, answer in first:
        if status != 200:
            raise SystemExit(f"check via Redis failed: {status} {answer}")
    # 1,000 more events with the counters live: counters.record increments the hashes that now exist
    with override_settings(REDIS_URL=ctx["redis_url"]):
        from apps.budgets import counters

        counters.reset_client()
        ingest(ctx["org"], ctx["token"], 1000, seed=99, prefix="ev2-")
        counters.reset_client()
    redis_answers = [post_check(redis_server.port, token, b) for b in VERIFY_BODIES]
    out = {"redis": redis_answers, "first": first}
    if fallback_port:
        out["db"] = [post_check(fallback_port, token, b) for b in VERIFY_BODIES]
    if dead_port:
        out["dead"] = [post_check(dead_port, token, b) for b in VERIFY_BODIES]
    out["in_process"] = in_process_compare(ctx["org"], ctx["redis_url"])
    return out


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--throttle-warmup",
        type=float,
        default=62.0,
        help="warm-up of runs on servers whose throttle keeps a one-minute history",
    )
    parser.add_argument("--connections", default="2,8,32", help="wrk closed-loop connection counts")
    parser.add_argument("--rate", type=int, default=1000, help="open-loop target rate (requests/s)")
    parser.add_argument("--db-rate", type=int, default=100, help="open-loop rate for the database fallback")
    parser.add_argument("--profile-requests", type=int, default=2000)
    parser.add_argument(
        "--quiet-threshold",
        type=float,
        default=0.3,
        help="busy cores below which the machine counts as quiet",
    )
    parser.add_argument(
        "--quiet-max-wait", type=float, default=300.0, help="seconds to wait for quiet before each run"
    )
    parser.add_argument("--quick", action="store_true", help="short runs (5 s, 2 s warm-up) for a smoke test")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the bench database at the end")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--worker-class",
        choices=("sync", "gthread"),
        default="sync",
        help="gunicorn worker class for every server (gthread keeps connections alive; sync closes each one)",
    )
    parser.add_argument("--threads", type=int, default=1, help="threads per gthread worker")
    parser.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile-bodies", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    parser.add_argument("--profile-path", default=CHECK_PATH, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile_child:
        return profile_child(args)
    Server.worker_class, Server.threads = args.worker_class, args.threads
    if args.quick:
        args.duration, args.warmup, args.throttle_warmup, args.profile_requests = 5.0, 2.0, 5.0, 300
    use_wrk = args.loadgen == "wrk" or (
        args.loadgen == "auto" and subprocess.run(["which", "wrk"], capture_output=True).returncode == 0
    )
    conns = [int(c) for c in args.connections.split(",") if c]

    def closed(c, **kw):
        if use_wrk:
            return {"kind": "wrk", "c": c, **kw}
        return {"kind": "python", "rate": None, "processes": 2, "threads": max(1, c // 2), **kw}

    def opened(rate, **kw):
        return {"kind": "open", "rate": rate, "processes": 2, "threads": 8, **kw}

    # the bench process itself: counters off, Celery eager (verify() turns the counters on for its increments)
    os.environ["REDIS_URL"] = ""
    os.environ["DJANGO_READ_DOT_ENV_FILE"] = "0"
    recreate_database(args.database_url)
    _common.setup_django(args.database_url)
    from django.db import connection

    dbname = urlsplit(args.database_url).path.lstrip("/")
    servers: list[Server] = []
    ctx: dict = {
        "database_url": args.database_url,
        "redis_url": args.redis_url,
        "dbname": dbname,
        "args": args,
    }
    results = []
    t_begin = time.time()
    tmpdir = tempfile.TemporaryDirectory(prefix="bench-check-")
    ctx["tmp"] = Path(tmpdir.name)
    org_id = token_id = None
    try:
        t0 = time.perf_counter()
        _common.migrate()
        print(f"migrated {dbname} in {time.perf_counter() - t0:.1f} s", flush=True)
        data = prepare(args)
        ctx.update(data)
        org_id, token_id = data["org"].pk, data["token"].pk
        cleanup_redis(args.redis_url, org_id, token_id)  # a stale hash of an earlier run must not answer
        with connection.cursor() as cur:
            cur.execute("VACUUM (ANALYZE)")
        ctx["bodies"] = request_bodies()
        load_env = f"loadavg at start {os.getloadavg()[0]:.2f}"
        print(load_env, flush=True)

        def start(label, app, env, health="/healthz"):
            server = Server(label, app, env, health)
            servers.append(server)
            return server

        def stop(server):
            server.stop()
            servers.remove(server)

        # Which throttle does the app have right now? DRF's SimpleRateThrottle keeps a per-request history.
        from rest_framework.throttling import SimpleRateThrottle

        from apps.orgs.throttling import TokenRateThrottle

        drf_history = issubclass(TokenRateThrottle, SimpleRateThrottle)
        ctx["drf_history"] = drf_history
        ctx["code_version"] = code_version()
        print(f"app throttle: {'DRF history (SimpleRateThrottle)' if drf_history else 'not DRF history'}")
        tw = args.throttle_warmup if drf_history else args.warmup
        ctx["tw"] = tw
        # 1. check via Redis, DEBUG off
        s = start("check", "spendctl.wsgi:application", server_env(ctx))
        # the fallback servers for the correctness check (Redis at a closed port)
        dead = start("redis-down", "spendctl.wsgi:application", server_env(ctx, REDIS_URL=DEAD_REDIS_URL))
        probe = post_check(dead.port, ctx["plaintext"], VERIFY_BODIES[0])[0]
        if probe == 200:  # the app answers with Redis down: its own settings are the fallback server
            fallback_env = server_env(ctx, REDIS_URL=DEAD_REDIS_URL)
            fallback_label = "check, Redis down → DB fallback"
            fallback = dead
        else:  # it does not (the throttle's cache is that Redis): measure the fallback with the cache on locmem
            fallback_env = server_env(
                ctx,
                REDIS_URL=DEAD_REDIS_URL,
                DJANGO_SETTINGS_MODULE="bench.check_settings",
                BENCH_CACHE="locmem",
            )
            fallback_label = "check, Redis down → DB fallback (cache on locmem)"
            fallback = start("redis-down, cache locmem", "spendctl.wsgi:application", fallback_env)
        ver = verify(ctx, s, fallback.port, dead.port)
        ctx["verify"] = ver
        stop(dead)
        if fallback is not dead:
            stop(fallback)
        # the keys and fields the check reads for a typical request: the bare baseline runs the same EVALSHA
        from apps.budgets import counters
        from apps.budgets.check import budget_field
        from apps.budgets.models import Budget
        from apps.budgets.selectors import budget_period, org_today

        org = ctx["org"]
        org.refresh_from_db()
        today = org_today(org)
        start_day, _end = budget_period(Budget.objects.for_org(org).first(), today)
        days = [start_day + timedelta(days=i) for i in range((today - start_day).days + 1)]
        keys = [counters.day_key(org.pk, org.counter_epoch, d) for d in days]
        applied = {b["id"] for b in ver["redis"][0][1]["budgets"]}
        fields = sorted(budget_field(b) for b in Budget.objects.for_org(org) if b.pk in applied)
        ctx["bare_keys"], ctx["bare_fields"] = keys, fields

        for c in conns:
            results.append(measure(s, "check (Redis)", closed(c, warmup=tw), args, ctx))
        results.append(measure(s, "check (Redis)", opened(args.rate, warmup=tw), args, ctx))
        stop(s)

        # 2. the same, DEBUG on (query log, DEBUG-only middleware behaviour)
        s = start("check DEBUG=1", "spendctl.wsgi:application", server_env(ctx, DEBUG="1"))
        results.append(measure(s, "check (Redis), DEBUG=1", closed(8, warmup=tw), args, ctx))
        stop(s)

        # 3. bare baselines: one EVALSHA of the same script, keys and fields
        from apps.orgs import versions

        bare_env = {
            "BARE_REDIS_URL": args.redis_url,
            # the check's own keys and arguments: throttle counter, org version, last-used marker, the day hashes
            "BARE_KEYS": json.dumps(["spc:bare:throttle", versions.key(org.pk), "spc:bare:used", *keys]),
            "BARE_ARGS": json.dumps([61, "bare", 1, len(keys), len(fields), *fields]),
            "DJANGO_SETTINGS_MODULE": "",
        }
        s = start("bare", "bench.bare_wsgi:application", bare_env)
        for c in conns:
            results.append(measure(s, "bare Django view + 1 EVALSHA", closed(c, path="/bare"), args, ctx))
        results.append(measure(s, "bare Django view + 1 EVALSHA", opened(args.rate, path="/bare"), args, ctx))
        for c in conns[-2:]:
            results.append(measure(s, "bare DRF APIView + 1 EVALSHA", closed(c, path="/bare-drf"), args, ctx))
        stop(s)

        # 4. database fallback: Redis at a closed port (the app's own settings, or the cache on locmem, see above)
        s = start("fallback", "spendctl.wsgi:application", fallback_env)
        results.append(measure(s, fallback_label, closed(2, warmup=tw), args, ctx))
        results.append(measure(s, fallback_label, closed(8, warmup=tw), args, ctx))
        results.append(measure(s, fallback_label, opened(args.db_rate, warmup=5), args, ctx))
        stop(s)

        # 5. where the time goes: one worker in process (same env as gunicorn)
        print("profiling one worker in process …", flush=True)
        clear_throttle(ctx)
        profiles = {"/api/v1/check": run_profile(ctx, server_env(ctx), "redis", args.profile_requests)}
        profiles["/api/v1/check, Redis down → DB fallback"] = run_profile(
            ctx, fallback_env, "db_fallback", min(args.profile_requests, 500)
        )
        text = report(args, ctx, results, profiles, use_wrk, load_env, time.time() - t_begin)
        print()
        print(text)
        path = _common.write_result("check", text)
        print(f"\nwritten to {path.relative_to(_common.ROOT)}")
    finally:
        for server in list(servers):
            server.stop()
        try:
            removed = cleanup_redis(args.redis_url, org_id, token_id)
            print(f"removed {removed} Redis keys of the bench")
        except Exception as exc:  # noqa: BLE001
            print(f"Redis cleanup failed: {exc}")
        connection.close()
        tmpdir.cleanup()
        if not args.keep_db:
            drop_database(args.database_url)
            print(f"dropped {dbname}")


# --- report ------------------------------------------------------------------------------------------------------------


def report(args, ctx, results, profiles, use_wrk, load_env, elapsed) -> str:
    kind = f"{args.worker_class}" + (
        f", {args.threads} thread(s) each" if args.worker_class == "gthread" else ""
    )
    server_cmd = f"gunicorn -w 2 -k {args.worker_class}" + (
        f" --threads {args.threads}" if args.worker_class == "gthread" else ""
    )
    reconnect = (
        "gunicorn sync closes every connection, wrk reconnects"
        if args.worker_class == "sync"
        else "gthread keeps connections alive, wrk reuses them"
    )
    lines = [
        f"# POST /api/v1/check under gunicorn (2 {kind} workers), loopback",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {load_env}; "
        f"`{' '.join(['.venv/bin/python', 'bench/check.py', *sys.argv[1:]])}` ({elapsed / 60:.0f} min).",
        f"{args.events:,} events this month (+1,000 in the verification), 8 monthly budgets, "
        f"{ctx['org'].timezone} org; {len(ctx['bodies'])} varied request bodies; a check reads "
        f"{len(ctx['bare_keys'])} day hashes × {len(ctx['bare_fields'])} fields in one EVALSHA.",
        f"Servers: `{server_cmd}`, DEBUG=0 unless said, CONN_MAX_AGE=600, API_RATE_LIMIT={RATE_LIMIT} "
        f"unless said. Measured window {args.duration:.0f} s after a warm-up of "
        + (
            f"{ctx['tw']:.0f} s (app servers: DRF's one-minute throttle history reaches its steady size) or "
            f"{args.warmup:.0f} s (others)."
            if ctx["drf_history"]
            else f"{args.warmup:.0f} s (the app's throttle is not DRF's history list)."
        ),
        f"App code measured: {ctx['code_version']}.",
        "Load: "
        + (
            "wrk 4.1 (2 threads; closed loop: each connection sends its next request when the answer "
            f"arrives; {reconnect})"
            if use_wrk
            else "python closed loop"
        )
        + "; open loop: 2 Python processes × 8 threads at a fixed total rate, "
        "latency from each request's scheduled send time. The load generator, gunicorn, PostgreSQL and Redis "
        "share the same 2 cores; CPU columns are cores used during the window (from /proc). "
        '"other" = machine busy minus all of those (other tenants of the machine, kernel); "busiest worker" = '
        "the busier worker's share of the workers' CPU (50% is an even split).",
        "",
    ]
    header = [
        "server",
        "load",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "errors",
        "workers cores",
        "worker ms/req",
        "loadgen",
        "pg",
        "redis",
        "other",
        "busiest worker",
        "busy before",
    ]
    rows = []
    for r in results:
        w = r["cpu_wall"]
        rows.append(
            [
                r["label"],
                r["load"],
                f"{r['rps']:,.0f}",
                fmt_ms(r["p50"]),
                fmt_ms(r["p95"]),
                fmt_ms(r["p99"]),
                f"{r['max']:.1f}",
                f"{r['errors']}" + (f" {r['error_detail']}" if r["errors"] else ""),
                f"{r['workers_cpu'] / w:.2f}",
                f"{r['worker_ms_per_req']:.2f}",
                f"{r['loadgen_cpu'] / w:.2f}",
                f"{r['pg_cpu'] / w:.2f}",
                f"{r['redis_cpu'] / w:.2f}",
                f"{r['other_cpu'] / w:.2f}",
                f"{r['busiest_share']:.0%}",
                f"{r['busy_before']:.2f}",
            ]
        )
    lines.append(_common.markdown_table(header, rows))

    def pick(label, load_prefix):
        return next((r for r in results if r["label"] == label and r["load"].startswith(load_prefix)), None)

    lines += ["", "## Ratios (same run)", ""]
    top = max(
        (r for r in results if r["label"] == "check (Redis)" and r["load"].startswith("wrk")),
        key=lambda r: r["rps"],
        default=None,
    )
    bare_top = max(
        (r for r in results if r["label"].startswith("bare Django") and r["load"].startswith("wrk")),
        key=lambda r: r["rps"],
        default=None,
    )
    if top and bare_top:
        lines.append(
            f"- best closed-loop throughput: check {top['rps']:,.0f}/s vs bare Django + EVALSHA "
            f"{bare_top['rps']:,.0f}/s: **{top['rps'] / bare_top['rps']:.2f}×** of the bare ceiling; "
            f"worker CPU per request {top['worker_ms_per_req']:.2f} ms vs {bare_top['worker_ms_per_req']:.2f} ms."
        )
    o = pick("check (Redis)", "python open")
    ob = pick("bare Django view + 1 EVALSHA", "python open")
    if o and ob:
        lines.append(
            f"- open loop at {args.rate:,}/s: check p99 {fmt_ms(o['p99'])} ms ({o['rps']:,.0f}/s done) vs bare "
            f"p99 {fmt_ms(ob['p99'])} ms ({ob['rps']:,.0f}/s)."
        )
    met = o is not None and o["rps"] >= 0.98 * args.rate and o["p99"] < 10 and o["errors"] == 0
    lines.append(
        f"- target (≥1,000 checks/s with p99 < 10 ms, open loop at {args.rate:,}/s, API_RATE_LIMIT={RATE_LIMIT}): "
        + ("**met**" if met else "**not met**")
    )
    d1 = pick("check (Redis), DEBUG=1", "wrk")
    d0 = pick("check (Redis)", "wrk closed loop, 8 conn")
    if d1 and d0:
        lines.append(
            f"- DEBUG=1 vs DEBUG=0 (8 connections): {d1['rps']:,.0f}/s vs {d0['rps']:,.0f}/s, worker "
            f"{d1['worker_ms_per_req']:.2f} vs {d0['worker_ms_per_req']:.2f} ms/request."
        )

    lines += ["", "## Correctness: Redis path vs database path (same requests)", ""]
    ver = ctx["verify"]
    vrows, all_equal = [], True
    names = {b.pk: b.name for b in ctx["budgets"]}
    for i, body in enumerate(VERIFY_BODIES):
        rs, ra = ver["redis"][i]
        ds, da = ver.get("db", [(None, {})] * 2)[i]
        r_sp, d_sp = spent_by_budget(ra), spent_by_budget(da)
        for bid in sorted(set(r_sp) | set(d_sp)):
            equal = r_sp.get(bid) == d_sp.get(bid)
            all_equal &= equal
            vrows.append(
                [
                    f"{body['provider']}/{body['model']}, team {body['team']}",
                    names.get(bid, bid),
                    r_sp.get(bid),
                    d_sp.get(bid),
                    "yes" if equal else "**NO**",
                ]
            )
        lines.append(
            f"- request {i + 1}: Redis server {rs} source={ra.get('source')} decision={ra.get('decision')}; "
            f"fallback server {ds} source={da.get('source')} decision={da.get('decision')}"
        )
    lines.append("")
    lines.append(
        _common.markdown_table(["request", "budget", "spent via Redis", "spent via DB", "equal"], vrows)
    )
    lines.append("")
    lines.append(
        f"All equal: **{'yes' if all_equal else 'NO'}** (answers after 1,000 more events went through "
        "counters.record's increments). In process at full precision, max |Redis − DB| over the 8 budgets: "
        f"{max(v[2] for v in ver['in_process'].values())} USD."
    )
    dead = ver.get("dead")
    if dead:
        st = [s for s, _ in dead]
        lines.append(
            f"- With REDIS_URL at a closed port and spendctl's own settings (cache on that Redis): HTTP {st}: "
            + (
                dead[0][1].get("error", {}).get("message", str(dead[0][1]))[:160]
                if st[0] != 200
                else "answered"
            )
            + (
                " — the DRF throttle reads its history from the Redis cache before the view runs, so the check's "
                "database fallback is never reached. The fallback figures below use BENCH_CACHE=locmem "
                "(bench/check_settings.py) to measure the fallback itself."
                if st[0] != 200
                else ""
            )
        )

    lines += [
        "",
        "## Where a worker's time goes (in process, WSGI app called directly, one request at a time)",
        "",
    ]
    summary = [
        [
            name,
            p["path"],
            f"{p['cpu_ms']:.2f}",
            f"{p['mean_ms']:.2f}",
            f"{p['plain_ms']['99']:.2f}",
            f"{p['sql']['per_req']:.1f}",
            f"{p['redis']['per_req']:.1f}",
            f"{p['throttle_history_len']}" if ctx["drf_history"] else "n/a",
            f"{p['busy_before']:.2f}",
            f"`{p['profile_file']}`",
        ]
        for name, p in profiles.items()
    ]
    lines.append(
        _common.markdown_table(
            [
                "variant",
                "path",
                "CPU ms/req",
                "wall ms/req (mean)",
                "wall p99",
                "SQL/req",
                "Redis RTT/req",
                "throttle history",
                "busy before",
                "cProfile (CPU timer)",
            ],
            summary,
        )
    )
    lines.append(
        "\nCPU ms/req is the worker's own CPU (process_time) per request without gunicorn's HTTP handling; wall "
        "includes waiting for PostgreSQL, Redis and a free core. Sections below (wall / CPU ms per request, "
        "instrumented run; nested rows are included in their parent)."
    )
    for name, p in profiles.items():
        if not any(v[0] for v in p["sections"].values()):
            continue
        lines.append(f"\n### {name}\n")
        srows = [[k, f"{w:.3f}", f"{c:.3f}"] for k, (w, c) in p["sections"].items()]
        outside_w = p["instrumented_mean_ms"] - p["sections"][DISPATCH][0] - p["sections"][RENDER][0]
        outside_c = p["instrumented_cpu_ms"] - p["sections"][DISPATCH][1] - p["sections"][RENDER][1]
        srows.append(
            [
                "Django outside the view (middleware, URL, request/response)",
                f"{outside_w:.3f}",
                f"{outside_c:.3f}",
            ]
        )
        srows.append(
            ["total (instrumented)", f"{p['instrumented_mean_ms']:.3f}", f"{p['instrumented_cpu_ms']:.3f}"]
        )
        lines.append(_common.markdown_table(["section", "wall ms", "CPU ms"], srows))
        lines.append("")
        lines.append(
            _common.markdown_table(
                [
                    "SQL statement",
                    "per request",
                    "wall ms/request",
                    "",
                    "Redis command",
                    "per request",
                    "wall ms",
                ],
                [
                    [*(sq or ("", "", "")), "", *(rd or ("", "", ""))]
                    for sq, rd in itertools.zip_longest(
                        [(k, f"{c:.2f}", f"{t:.3f}") for k, (c, t) in p["sql"]["by"].items()],
                        [(k, f"{c:.2f}", f"{t:.3f}") for k, (c, t) in p["redis"]["by"].items()],
                    )
                ],
            )
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
