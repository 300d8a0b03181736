#!/usr/bin/env python
"""Sync benchmark: one full OpenAI sync of 30 days of hourly buckets, then a re-sync of the same window.

    .venv/bin/python bench/sync.py [--days 30] [--projects 200] [--models 20] [--density 1.0]
                                   [--page-limit N] [--database-url postgres://…] [--skip-inline]

What runs, all against a fake OpenAI Usage + Costs API on loopback (bench/fake_openai.py, a separate process, data
generated per request and never prebuilt):

1. in-line baseline, no Celery: one org, one `openai` connection seeing all projects, a backfill run over
   [today - days, today) executed in this process by `apps.connectors.services.run_execute` (the code the Celery task
   calls). Then a second run over the same window (the re-sync). Both are timed per stage by wrapping the sync's
   functions (HTTP, JSON decode, row building, pricing, ledger delete / insert, cost rows, commit).
2. Celery, `celery -A spendctl worker -c 2 --pool prefork` (Redis db 14, a private queue): one org with TWO
   `openai` connections (two OpenAI organisations / admin keys), each seeing half of the projects over the whole
   window, so the two runs are independent syncs the two pool processes execute in parallel (one connection cannot
   have two runs under way: `run_create` refuses). Enqueued with `connectors_sync_run.delay(run_id)`; timed from
   enqueue until both runs are finished. Then the same two runs again (re-sync). Both phases start from an empty
   ledger.
3. with --proposed-delete, a third in-line run (re-sync) with `apps.usage.ledger.delete_records` replaced by
   `proposed_delete_records` below (a bench-only patch measuring a proposed change; same checks).

After the in-line full sync, the lookup `usage_provider_rows_replace` runs before every page is EXPLAINed (as the
planner sees it during the backfill, with the proposed extra start_time range, and after ANALYZE).

The OpenAI client is switched to hourly buckets through `apps.connectors.services.CLIENT_OPTIONS["openai"]`
(`bucket_width="1h"`, plus `usage_page_limit` when --page-limit is given), in this process and, through
bench/_sync_worker.py, in each worker pool process.

Measured: wall time, usage rows and cost rows written, pages, rows/s, peak RSS (VmHWM of this process for the in-line
runs, of each worker pool process for Celery: reset through /proc/<pid>/clear_refs before each phase, cross-checked by
sampling VmRSS), CPU seconds of the sync process(es), of the PostgreSQL backends serving the bench database and of the
fake server, and how often a bench backend was waiting on a lock. After each re-sync the ledger row count, the total
cost, the cost records and the rollup are compared with the figures after the full sync (they must be identical).

The bench database is created if missing, migrated, emptied at the start and dropped at the end; the fake server and
the Celery worker are stopped in every case. Results: a markdown table on stdout and in bench/results/sync.md.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/spendctl_bench_sync"
REDIS_URL = "redis://127.0.0.1:6379/14"
ROOT = _common.ROOT
PYTHON = str(ROOT / ".venv" / "bin" / "python")
CELERY = str(ROOT / ".venv" / "bin" / "celery")
KEY_PREFIX = "sk-admin-bench-"  # the fake server reads the project range from the key
TEAMS = ("search", "support", "growth", "platform", "research")
RULED_PROJECTS = 40  # projects mapped to a team by a project_id attribution rule (the rest stay unattributed)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


TASK_IDS: list[str] = []  # every task this run enqueued: their result keys are removed at the end


def _terminate(signum, _frame):
    """SIGTERM / SIGHUP: unwind through the finally blocks (stop the worker and the server, drop the database)."""
    raise SystemExit(f"terminated by signal {signum}")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


CODE_FILES = (
    "apps/connectors/services.py",
    "apps/connectors/tasks.py",
    "apps/connectors/models.py",
    "apps/connectors/providers/base.py",
    "apps/connectors/providers/openai.py",
    "apps/connectors/providers/http.py",
    "apps/connectors/providers/parsing.py",
    "apps/usage/services.py",
    "apps/usage/ledger.py",
    "apps/usage/models.py",
    "apps/catalog/pricing.py",
    "apps/catalog/selectors.py",
)


def code_fingerprint() -> dict[str, str]:
    """Short hashes of the files on the measured path: other engineers edit the tree while benchmarks run."""
    import hashlib

    out = {}
    for name in CODE_FILES:
        try:
            out[name] = hashlib.sha256((ROOT / name).read_bytes()).hexdigest()[:10]
        except OSError:
            out[name] = "missing"
    return out


# --- /proc ---------------------------------------------------------------------------------------------------------


def proc_status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_cpu(pid: int) -> float | None:
    """utime + stime of a process, seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def reset_peak_rss(pid: int) -> bool:
    """Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child_pids(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def system_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, as seconds."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:9]]  # user..steal (guest is already in user)
    idle = parts[3] + parts[4]
    return (sum(parts) - idle) / CLK_TCK, sum(parts) / CLK_TCK


class Sampler(threading.Thread):
    """Samples, every `interval` s: RSS of the watched processes, and the bench database's backends (their CPU
    time, and whether they are waiting on a lock) through pg_stat_activity on its own connection."""

    def __init__(self, database_url: str, watch: list[int], interval: float = 0.25):
        super().__init__(daemon=True)
        self.database_url, self.watch, self.interval = database_url, list(watch), interval
        self.stop_event = threading.Event()
        self.max_rss_kb: dict[int, int] = defaultdict(int)
        self.pg_cpu_first: dict[int, float] = {}
        self.pg_cpu_last: dict[int, float] = {}
        self.samples = 0
        self.lock_wait_samples = 0  # samples in which at least one bench backend waited on a lock
        self.backend_lock_waits = 0  # backend x sample count of lock waits
        self.active_backend_samples = 0
        self.error: str | None = None

    def run(self):
        import psycopg

        try:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                me = conn.info.backend_pid
                dbname = urlsplit(self.database_url).path.lstrip("/")
                while True:
                    self._sample(conn, me, dbname)
                    if self.stop_event.wait(self.interval):
                        self._sample(conn, me, dbname)
                        return
        except Exception as exc:  # noqa: BLE001 - report, never kill the benchmark
            self.error = repr(exc)

    def _sample(self, conn, me: int, dbname: str):
        for pid in self.watch:
            rss = proc_status_kb(pid, "VmRSS")
            if rss:
                self.max_rss_kb[pid] = max(self.max_rss_kb[pid], rss)
        rows = conn.execute(
            "SELECT pid, state, wait_event_type FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
            [dbname, me],
        ).fetchall()
        waiting = 0
        for pid, state, wait_type in rows:
            cpu = proc_cpu(pid)
            if cpu is not None:
                self.pg_cpu_first.setdefault(pid, cpu)
                self.pg_cpu_last[pid] = cpu
            if state == "active":
                self.active_backend_samples += 1
                if wait_type == "Lock":
                    waiting += 1
        self.samples += 1
        self.backend_lock_waits += waiting
        self.lock_wait_samples += 1 if waiting else 0

    def finish(self) -> dict:
        self.stop_event.set()
        self.join(timeout=10)
        return {
            "max_rss_mb": {pid: kb / 1024 for pid, kb in self.max_rss_kb.items()},
            "pg_cpu": sum(self.pg_cpu_last[p] - self.pg_cpu_first[p] for p in self.pg_cpu_last),
            "samples": self.samples,
            "lock_wait_share": self.lock_wait_samples / self.samples if self.samples else float("nan"),
            "error": self.error,
        }


# --- stage timers (in-line runs only) ------------------------------------------------------------------------------


class Timers:
    """Wraps functions of the sync path; records inclusive time per call path and exclusive time per path."""

    def __init__(self):
        self.incl: dict[str, float] = defaultdict(float)
        self.children: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.max: dict[str, float] = defaultdict(float)
        self.stack: list[str] = []
        self.patched: list[tuple] = []

    def wrap(self, owner, attr: str, label: str):
        original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        timers = self

        def wrapper(*args, **kwargs):
            path = f"{timers.stack[-1]} > {label}" if timers.stack else label
            timers.stack.append(path)
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                timers.stack.pop()
                timers.incl[path] += dt
                timers.calls[path] += 1
                timers.max[path] = max(timers.max[path], dt)
                if timers.stack:
                    timers.children[timers.stack[-1]] += dt

        setattr(owner, attr, wrapper)
        self.patched.append((owner, attr, original))

    def unwrap(self):
        for owner, attr, original in reversed(self.patched):
            setattr(owner, attr, original)
        self.patched.clear()

    def reset(self):
        self.incl.clear()
        self.children.clear()
        self.calls.clear()
        self.max.clear()

    def snapshot(self) -> list[tuple[str, int, float, float, float]]:
        """(path, calls, inclusive s, exclusive s, longest call s), in call-tree order."""
        return [
            (
                path,
                self.calls[path],
                self.incl[path],
                self.incl[path] - self.children.get(path, 0.0),
                self.max[path],
            )
            for path in sorted(self.incl)
        ]

    def overhead_per_call(self) -> float:
        """What one wrapped call costs on top of the function (measured on a no-op)."""

        class Dummy:
            @staticmethod
            def noop():
                return None

        t = Timers()
        t.wrap(Dummy, "noop", "noop")
        n = 200_000
        f = Dummy.noop
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        wrapped = time.perf_counter() - t0
        t.unwrap()
        f = Dummy.noop
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        bare = time.perf_counter() - t0
        return max(0.0, (wrapped - bare) / n)


def install_timers() -> Timers:
    import psycopg
    from django.db.backends.utils import CursorWrapper
    from django.db.models.query import QuerySet

    from apps.connectors import services as conn_services
    from apps.connectors.providers import http as provider_http
    from apps.connectors.providers.openai import OpenAIClient
    from apps.usage import ledger
    from apps.usage import services as usage_services

    t = Timers()
    t.wrap(conn_services, "run_execute", "run_execute")
    t.wrap(provider_http.HttpClient, "request", "HTTP GET (server generates + sends, client reads body)")
    t.wrap(provider_http, "parse_json_page", "JSON decode (parse_json_page)")
    t.wrap(OpenAIClient, "_parse_usage_buckets", "build UsageRows (field reads, dataclass, sha256 key)")
    t.wrap(OpenAIClient, "_parse_cost_buckets", "build CostRows")
    t.wrap(conn_services, "_commit_page", "_commit_page (transaction)")
    t.wrap(conn_services, "_usage_item", "_usage_item (row -> dict)")
    t.wrap(conn_services, "usage_provider_rows_replace", "usage_provider_rows_replace")
    t.wrap(conn_services, "_cost_rows_replace", "_cost_rows_replace")
    t.wrap(usage_services, "_provider_row", "_provider_row (normalise, attribute)")
    t.wrap(usage_services, "price_row", "price_row (pricing)")
    t.wrap(ledger, "delete_records", "ledger.delete_records")
    t.wrap(ledger, "rollup_add", "ledger.rollup_add (ORM, per rollup row)")
    t.wrap(ledger, "insert_records", "ledger.insert_records (COPY, INSERT, rollup upsert)")
    t.wrap(QuerySet, "delete", "QuerySet.delete (Django collector)")
    t.wrap(QuerySet, "bulk_create", "QuerySet.bulk_create")
    t.wrap(CursorWrapper, "execute", "SQL execute")
    t.wrap(psycopg.Copy, "write_row", "COPY write_row (Python-side row formatting)")
    return t


# --- fake server, worker -------------------------------------------------------------------------------------------


class FakeServer:
    def __init__(self, args):
        cmd = [
            PYTHON,
            str(ROOT / "bench" / "fake_openai.py"),
            "--projects",
            str(args.projects),
            "--models",
            str(args.models),
            "--density",
            str(args.density),
            "--max-seconds",
            str(args.max_seconds),
        ]
        if args.strict_server:
            cmd.append("--strict")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("LISTENING "):
            self.stop()
            raise SystemExit(f"the fake server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.pid = self.proc.pid

    def _call(self, method: str, path: str) -> dict:
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - loopback
            return json.loads(r.read())

    def stats(self) -> dict:
        return self._call("GET", "/_bench/stats")

    def reset(self) -> None:
        self._call("POST", "/_bench/reset")

    def stop(self) -> None:
        stop_process(self.proc, "fake server")


def stop_process(proc: subprocess.Popen, name: str, sig=signal.SIGTERM, wait: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        log(f"{name} (pid {proc.pid}) did not stop after {wait:.0f}s: SIGKILL")
        for child in child_pids(proc.pid):
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
        proc.wait(timeout=10)


class Worker:
    def __init__(self, args, client_options: dict, queue: str):
        env = dict(os.environ)
        env.update(
            {
                "REDIS_URL": REDIS_URL,
                "DATABASE_URL": args.database_url,
                "BENCH_SYNC_CLIENT_OPTIONS": json.dumps(client_options),
                "PYTHONPATH": str(ROOT),
            }
        )
        cmd = [
            CELERY,
            "-A",
            "spendctl",
            "worker",
            "-c",
            str(args.concurrency),
            "--pool",
            "prefork",
            "--include",
            "bench._sync_worker",
            "-Q",
            queue,
            "-n",
            f"{queue}@%h",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        self.log_path = _common.RESULTS / "sync-worker.log"
        _common.RESULTS.mkdir(parents=True, exist_ok=True)
        self.log_file = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log_file, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    def pool_pids(self) -> list[int]:
        return child_pids(self.pid)

    def stop(self) -> None:
        stop_process(self.proc, "celery worker", sig=signal.SIGTERM, wait=30)
        self.log_file.close()


# --- data set-up and checks ----------------------------------------------------------------------------------------


def reset_database():
    """Empties every table of the bench database that a previous (interrupted) run may have filled."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from apps.orgs.models import Organization

    with connection.cursor() as cur:
        cur.execute(
            f"TRUNCATE {Organization._meta.db_table}, {get_user_model()._meta.db_table} RESTART IDENTITY CASCADE"
        )


def empty_ledger():
    from django.db import connection

    from apps.connectors.models import ProviderCostRecord
    from apps.usage.models import DailyRollup, UsageRecord

    with connection.cursor() as cur:
        cur.execute(
            f"TRUNCATE {UsageRecord._meta.db_table}, {DailyRollup._meta.db_table}, "
            f"{ProviderCostRecord._meta.db_table} CASCADE"
        )
    analyze()


def analyze():
    """Autovacuum is off on these machines: ANALYZE the written tables as autovacuum would after bulk writes."""
    from django.db import connection

    from apps.connectors.models import ProviderCostRecord
    from apps.usage.models import DailyRollup, UsageRecord

    with connection.cursor() as cur:
        for model in (UsageRecord, DailyRollup, ProviderCostRecord):
            cur.execute(f"ANALYZE {model._meta.db_table}")


def table_stats() -> dict:
    """Cumulative scan / write counters of the ledger tables (pg_stat_user_tables), to diff around a phase."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT relname, seq_scan, seq_tup_read, COALESCE(idx_scan, 0), n_tup_ins, n_tup_upd, n_tup_del "
            "FROM pg_stat_user_tables WHERE relname IN ('usage_usagerecord', 'usage_dailyrollup', "
            "'connectors_providercostrecord')"
        )
        return {r[0]: r[1:] for r in cur.fetchall()}


def table_stats_delta(before: dict, after: dict) -> dict:
    names = ("seq_scan", "seq_tup_read", "idx_scan", "ins", "upd", "del")
    return {
        t: dict(
            zip(names, (a - b for a, b in zip(after[t], before.get(t, (0,) * 6), strict=True)), strict=True)
        )
        for t in after
    }


def explain_replace_lookup(org, connection, end, *, with_range: bool = False) -> str:
    """EXPLAIN ANALYZE of the lookup `usage_provider_rows_replace` runs before every page (rows of this connection,
    endpoint and buckets, to delete), for the last 31 hourly buckets of the window. with_range: the proposed
    extra `start_time BETWEEN first AND last bucket` condition."""
    from apps.usage.models import UsageRecord

    starts = [datetime(end.year, end.month, end.day, tzinfo=UTC) - timedelta(hours=h) for h in range(1, 32)]
    qs = UsageRecord.objects.for_org(org).filter(
        connection_id=connection.pk, start_time__in=starts, key__startswith=f"{connection.pk}:completions:"
    )
    if with_range:
        qs = qs.filter(start_time__gte=min(starts), start_time__lte=max(starts))
    plan = qs.values("day", "team_id", "provider", "model", "cost").explain(analyze=True, buffers=True)
    keep = [
        line.strip()
        for line in plan.splitlines()
        if "Scan" in line or "Execution Time" in line or "Rows Removed" in line
    ]
    return " / ".join(keep)


def proposed_delete_records(queryset) -> int:
    """The change proposed for `apps.usage.ledger.delete_records` on PostgreSQL, measured by --proposed-delete
    (bench only, not app code): one DELETE … RETURNING that also removes the dependent RepriceChange rows and
    takes the deleted rows out of the daily rollup with one aggregated UPDATE, instead of Django's collector
    (model instances, then DELETE … WHERE id IN (100 ids) batches) and one SELECT FOR UPDATE + UPDATE per rollup
    row. Single-process A/B only: concurrent use would also need the rollup rows locked in key order."""
    from django.db import connection
    from django.db.models.sql.subqueries import DeleteQuery

    from apps.usage import ledger
    from apps.usage.models import BASIS_UNPRICED, DailyRollup, RepriceChange, UsageRecord

    query = queryset.query.clone()
    query.__class__ = (
        DeleteQuery  # what QuerySet._raw_delete does: DELETE FROM … WHERE <the queryset's filter>
    )
    delete_sql, params = query.get_compiler(queryset.db).as_sql()
    _rec, roll, changes = UsageRecord._meta.db_table, DailyRollup._meta.db_table, RepriceChange._meta.db_table
    key = ("org_id", "day", "team_id", "provider", "model", "feature", "customer")
    extra = ("computed_cost", "reported_cost", "records", "unpriced_records", "unpriced_requests")
    sums = ", ".join(f"SUM({c}) AS {c}" for c in ledger.SUMMED)
    sets = ", ".join(f"{c} = r.{c} - a.{c}" for c in (*ledger.SUMMED, *extra))
    join = " AND ".join(f"r.{c} = a.{c}" for c in key)
    sql = f"""
        WITH gone AS ({delete_sql} RETURNING *),
        rc AS (DELETE FROM {changes} WHERE record_id IN (SELECT id FROM gone)),
        a AS (
            SELECT org_id, day, COALESCE(team_id, 0) AS team_id, provider, model, feature, customer, {sums},
                   SUM(COALESCE(computed_cost, 0)) AS computed_cost, SUM(COALESCE(reported_cost, 0)) AS reported_cost,
                   COUNT(*) AS records, COUNT(*) FILTER (WHERE cost_basis = %s) AS unpriced_records,
                   COALESCE(SUM(requests) FILTER (WHERE cost_basis = %s), 0) AS unpriced_requests
            FROM gone GROUP BY 1, 2, 3, 4, 5, 6, 7
        ),
        u AS (UPDATE {roll} r SET {sets} FROM a WHERE {join} RETURNING r.id)
        SELECT (SELECT COUNT(*) FROM gone), (SELECT MIN(org_id) FROM a)
    """  # noqa: S608 - identifiers from model metadata
    with connection.cursor() as cur:
        cur.execute(sql, [*params, BASIS_UNPRICED, BASIS_UNPRICED])
        removed, org_id = cur.fetchone()
        if removed:
            cur.execute(f"DELETE FROM {roll} WHERE org_id = %s AND records <= 0", [org_id])  # noqa: S608
    return removed


def make_org(slug: str, projects: list[str]):
    """An org with teams and a project_id attribution rule for each of the first RULED_PROJECTS projects."""
    from apps.orgs.services import org_create, team_create, user_get_or_create
    from apps.usage.services import attribution_rule_create

    owner = user_get_or_create(email=f"{slug}@spendctl.invalid").user
    org = org_create(name=slug, slug=slug, owner=owner, timezone_name="UTC")
    teams = [team_create(org=org, name=name) for name in TEAMS]
    for i, project_id in enumerate(projects[:RULED_PROJECTS]):
        attribution_rule_create(org=org, kind="project_id", value=project_id, team=teams[i % len(teams)])
    return org


def make_connection(org, label: str, first: int, stop: int, base_url: str):
    from apps.connectors import services

    return services.connection_create(
        org=org,
        provider="openai",
        label=label,
        api_key=f"{KEY_PREFIX}{first}-{stop}",
        base_url=base_url,
        test=False,
    )


def ledger_totals(org) -> dict:
    from django.db.models import Count, Sum

    from apps.connectors.models import ProviderCostRecord
    from apps.usage.models import DailyRollup, UsageRecord

    usage = UsageRecord.objects.filter(org=org).aggregate(
        n=Count("id"), cost=Sum("cost"), computed=Sum("computed_cost"), out=Sum("output_tokens")
    )
    costs = ProviderCostRecord.objects.filter(org=org).aggregate(n=Count("id"), amount=Sum("amount"))
    roll = DailyRollup.objects.filter(org=org).aggregate(
        records=Sum("records"), cost=Sum("cost"), out=Sum("output_tokens")
    )
    unpriced = UsageRecord.objects.filter(org=org, cost_basis="unpriced").count()
    return {
        "usage_rows": usage["n"],
        "usage_cost": usage["cost"],
        "usage_output_tokens": usage["out"],
        "cost_rows": costs["n"],
        "cost_amount": costs["amount"],
        "rollup_records": roll["records"],
        "rollup_cost": roll["cost"],
        "rollup_output_tokens": roll["out"],
        "unpriced_rows": unpriced,
    }


def rollup_consistent(t: dict) -> bool:
    return (t["rollup_records"], t["rollup_cost"], t["rollup_output_tokens"]) == (
        t["usage_rows"],
        t["usage_cost"],
        t["usage_output_tokens"],
    )


# --- phases --------------------------------------------------------------------------------------------------------


def new_runs(connections, start, end):
    from apps.connectors import services

    return [services.run_create(connection=c, kind="backfill", start=start, end=end) for c in connections]


def run_summary(run_ids) -> dict:
    from apps.connectors.models import SyncRun

    runs = list(SyncRun.objects.filter(pk__in=run_ids).order_by("pk"))
    return {
        "status": [r.status for r in runs],
        "errors": [r.error for r in runs if r.error],
        "records_added": sum(r.records_added for r in runs),
        "records_replaced": sum(r.records_replaced for r in runs),
        "cost_rows": sum(r.cost_rows for r in runs),
        "pages": sum(r.pages for r in runs),
        "attempts": [r.attempts for r in runs],
        "per_run_seconds": [
            (r.finished_at - r.started_at).total_seconds() if r.finished_at and r.started_at else None
            for r in runs
        ],
        "spans": [(r.started_at, r.finished_at) for r in runs],
    }


def phase_inline(
    label: str, connections, start, end, server: FakeServer, args, timers: Timers | None
) -> dict:
    from django.db import connection as db

    from apps.connectors import services

    runs = new_runs(connections, start, end)
    server.reset()
    me = os.getpid()
    reset_ok = reset_peak_rss(me)
    rss_before = proc_status_kb(me, "VmRSS") / 1024
    sampler = Sampler(args.database_url, [me])
    sampler.start()
    server_cpu0, sys0 = proc_cpu(server.pid), system_cpu()
    cpu0 = os.times()
    if timers:
        timers.reset()
    time.sleep(0.6)  # pg_stat counters are flushed at most every 0.5 s (PG 15)
    stats0 = table_stats()
    t0 = time.perf_counter()
    for run in runs:
        services.run_execute(run=run)
    wall = time.perf_counter() - t0
    cpu1 = os.times()
    server_cpu1, sys1 = proc_cpu(server.pid), system_cpu()
    sampled = sampler.finish()
    db.close()  # flushes this backend's pg_stat counters
    time.sleep(0.6)
    stats1 = table_stats()
    result = {
        "label": label,
        "mode": "inline",
        "table_stats": table_stats_delta(stats0, stats1),
        "wall": wall,
        "peak_rss_mb": [proc_status_kb(me, "VmHWM") / 1024 if reset_ok else None],
        "peak_rss_reset": reset_ok,
        "rss_before_mb": rss_before,
        "sampled_rss_mb": list(sampled["max_rss_mb"].values()),
        "sync_cpu": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
        "pg_cpu": sampled["pg_cpu"],
        "server_cpu": server_cpu1 - server_cpu0,
        "machine_busy": (sys1[0] - sys0[0]),
        "machine_total": (sys1[1] - sys0[1]),
        "lock_wait_share": sampled["lock_wait_share"],
        "sampler_error": sampled["error"],
        "server": server.stats(),
        "breakdown": timers.snapshot() if timers else None,
        **run_summary([r.pk for r in runs]),
    }
    db.close_if_unusable_or_obsolete()
    return result


def phase_celery(label: str, connections, start, end, server: FakeServer, worker: Worker, args) -> dict:
    from apps.connectors.models import SyncRun
    from apps.connectors.tasks import connectors_sync_run

    runs = new_runs(connections, start, end)
    server.reset()
    pool = worker.pool_pids()
    reset_ok = all(reset_peak_rss(pid) for pid in pool)
    rss_before = [proc_status_kb(pid, "VmRSS") / 1024 for pid in pool]
    sampler = Sampler(args.database_url, pool)
    sampler.start()
    cpu0 = {pid: proc_cpu(pid) for pid in [worker.pid, *pool]}
    server_cpu0, sys0 = proc_cpu(server.pid), system_cpu()
    ids = [r.pk for r in runs]
    time.sleep(0.6)
    stats0 = table_stats()
    t0 = time.perf_counter()
    results = [connectors_sync_run.delay(run_id) for run_id in ids]
    TASK_IDS.extend(r.id for r in results)
    deadline = time.monotonic() + args.phase_timeout
    while True:
        statuses = dict(SyncRun.objects.filter(pk__in=ids).values_list("pk", "status"))
        if all(s in (SyncRun.SUCCEEDED, SyncRun.FAILED) for s in statuses.values()):
            break
        failed = [r for r in results if r.state == "FAILURE"]
        if failed:
            raise SystemExit(
                f"{label}: a sync task raised: {failed[0].result!r} (worker log: {worker.log_path})"
            )
        if worker.proc.poll() is not None:
            raise SystemExit(f"{label}: the Celery worker exited (log: {worker.log_path})")
        if time.monotonic() > deadline:
            raise SystemExit(f"{label}: runs not finished after {args.phase_timeout:.0f}s: {statuses}")
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    task_states = [r.get(timeout=30) for r in results]
    cpu1 = {pid: proc_cpu(pid) for pid in cpu0}
    server_cpu1, sys1 = proc_cpu(server.pid), system_cpu()
    sampled = sampler.finish()
    peak = [proc_status_kb(pid, "VmHWM") / 1024 for pid in pool]
    for r in results:
        r.forget()  # the result keys in Redis
    time.sleep(1.0)  # the workers' backends flush their pg_stat counters when idle (PG 15: at most every 1 s)
    stats1 = table_stats()
    return {
        "label": label,
        "mode": "celery",
        "table_stats": table_stats_delta(stats0, stats1),
        "wall": wall,
        "peak_rss_mb": peak if reset_ok else [None for _ in pool],
        "peak_rss_reset": reset_ok,
        "rss_before_mb": rss_before,
        "sampled_rss_mb": [sampled["max_rss_mb"].get(pid, 0.0) for pid in pool],
        "sync_cpu": sum((cpu1[p] or 0) - (cpu0[p] or 0) for p in cpu0),
        "pool_cpu": [(cpu1[p] or 0) - (cpu0[p] or 0) for p in pool],
        "pg_cpu": sampled["pg_cpu"],
        "server_cpu": server_cpu1 - server_cpu0,
        "machine_busy": (sys1[0] - sys0[0]),
        "machine_total": (sys1[1] - sys0[1]),
        "lock_wait_share": sampled["lock_wait_share"],
        "sampler_error": sampled["error"],
        "task_states": task_states,
        "server": server.stats(),
        "breakdown": None,
        **run_summary(ids),
    }


def wait_for_worker(worker: Worker, timeout: float = 90.0) -> None:
    from spendctl.celery import ping

    deadline = time.monotonic() + timeout
    while True:
        if worker.proc.poll() is not None:
            raise SystemExit(f"the Celery worker exited at start (log: {worker.log_path})")
        try:
            res = ping.delay()
            TASK_IDS.append(res.id)
            if res.get(timeout=5) == "pong":
                res.forget()
                break
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"the Celery worker did not answer within {timeout:.0f}s (log: {worker.log_path})"
                ) from None
    while len(worker.pool_pids()) < worker_concurrency(worker) and time.monotonic() < deadline:
        time.sleep(0.2)


def worker_concurrency(worker: Worker) -> int:
    return int(worker.proc.args[worker.proc.args.index("-c") + 1])


# --- report --------------------------------------------------------------------------------------------------------


def fmt_mb(values) -> str:
    vals = [v for v in values if v is not None]
    return " + ".join(f"{v:,.0f}" for v in vals) if vals else "n/a"


def report(args, phases: list[dict], checks: list[str], meta: dict) -> str:
    header = [
        "variant",
        "wall s",
        "usage rows",
        "cost rows",
        "pages",
        "usage rows/s",
        "peak RSS MB (per process)",
        "CPU s: sync / PostgreSQL / fake server",
        "machine busy (cores)",
        "other load (cores)",
        "lock-wait samples",
    ]
    rows = []
    for p in phases:
        cores = p["machine_busy"] / p["wall"] if p["wall"] else float("nan")
        other = max(0.0, p["machine_busy"] - p["sync_cpu"] - p["pg_cpu"] - p["server_cpu"]) / p["wall"]
        rows.append(
            [
                p["label"],
                f"{p['wall']:,.1f}",
                f"{p['records_added']:,}"
                + (f" (replaced {p['records_replaced']:,})" if p["records_replaced"] else ""),
                f"{p['cost_rows']:,}",
                f"{p['pages']:,}",
                f"{p['records_added'] / p['wall']:,.0f}",
                f"{fmt_mb(p['peak_rss_mb'])} (at start {fmt_mb(p['rss_before_mb'] if isinstance(p['rss_before_mb'], list) else [p['rss_before_mb']])})",
                f"{p['sync_cpu']:,.1f} / {p['pg_cpu']:,.1f} / {p['server_cpu']:,.1f}",
                f"{cores:.2f} of {os.cpu_count()}",
                f"{other:.2f}",
                f"{p['lock_wait_share']:.0%}",
            ]
        )
    lines = [
        "# Sync benchmark (bench/sync.py)",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Data: {args.days} days x 24 hourly buckets x {args.projects} projects x {args.models} models, density "
        f"{args.density} ({meta['per_day']} of {args.models} models per project and day) = "
        f"{meta['expected_usage_rows']:,} usage result rows and {meta['expected_cost_rows']:,} cost lines "
        f"(input / cached input / output per project x model x day). Window {meta['window']}. "
        f"Client options: `{json.dumps(meta['client_options'])}`. Machine: {os.cpu_count()} cores; "
        f"{meta['started']}.",
        "",
        _common.markdown_table(header, rows),
        "",
        "In-line = `services.run_execute` in the benchmark process, one connection seeing every project (stage timers "
        "on). Celery = `celery -A spendctl worker -c 2 --pool prefork`, two connections of the same org with half of "
        "the projects each, the two runs enqueued together; wall time from enqueue to both runs finished. Peak RSS "
        "is VmHWM after a reset at the start of each variant (in-line: the whole benchmark process, Django included; "
        "Celery: each pool process). CPU: of the sync process(es), of the PostgreSQL backends of the bench database, "
        "of the fake server. Machine busy: all processes of the machine (/proc/stat); other load = busy minus the three, i.e. whatever else ran on the machine at the time (other engineers' tests). Lock-wait samples: share of 0.25 s samples in which a bench backend waited on a lock.",
        "",
        "## Checks",
        "",
        *[f"- {c}" for c in checks],
    ]
    for p in phases:
        if not p.get("breakdown"):
            continue
        total = p["wall"]
        rows_n = max(1, p["records_added"])
        lines += [
            "",
            f"## Where the time goes: {p['label']} ({total:,.1f} s wall, {p['records_added']:,} usage rows)",
            "",
            f"Stage timers wrap the sync's own functions; 'self' excludes the nested stages listed below it. "
            f"Timer overhead ~{meta['timer_overhead_us']:.2f} µs per wrapped call "
            f"(~{meta['timer_overhead_us'] * 3:.1f} µs per usage row for the three per-row stages).",
            "",
            _common.markdown_table(
                [
                    "stage (call path)",
                    "calls",
                    "inclusive s",
                    "longest call s",
                    "self s",
                    "self % of wall",
                    "self µs / usage row",
                ],
                [
                    [
                        path.replace(" > ", " › "),
                        f"{calls:,}",
                        f"{incl:,.2f}",
                        f"{longest:,.3f}",
                        f"{excl:,.2f}",
                        f"{excl / total:.1%}",
                        f"{excl / rows_n * 1e6:,.1f}",
                    ]
                    for path, calls, incl, excl, longest in p["breakdown"]
                ],
            ),
        ]
    lines += [
        "",
        "Code measured (sha256 prefixes of the files on the sync path at the start): "
        + ", ".join(f"`{k.split('/', 1)[1]}` {v}" for k, v in meta["code"].items()),
    ]
    extra = meta.get("notes") or []
    if extra:
        lines += ["", "## Notes", "", *[f"- {n}" for n in extra]]
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------------------------------


def drop_database(database_url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, parts.fragment))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    log(f"dropped database {name}")


def redis_cleanup(queue: str) -> None:
    """Removes the keys of the benchmark's private queue (the results were forgotten one by one)."""
    try:
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        keys = [queue, f"_kombu.binding.{queue}"] + list(r.scan_iter(match=f"*{queue}*"))
        keys += [f"celery-task-meta-{task_id}" for task_id in TASK_IDS]
        if keys:
            r.delete(*keys)
    except Exception as exc:  # noqa: BLE001
        log(f"redis clean-up skipped: {exc!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--projects", type=int, default=200)
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument(
        "--density",
        type=float,
        default=1.0,
        help="share of the models each project uses per day, every hour (1.0 = all 20: 2.88M rows for 30 days)",
    )
    ap.add_argument(
        "--page-limit",
        type=int,
        default=None,
        help="usage buckets per page (OpenAI: at most 168 for 1h); default: the client's own usage_page_limit",
    )
    ap.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    ap.add_argument("--concurrency", type=int, default=2, help="Celery pool processes (and connections)")
    ap.add_argument("--skip-inline", action="store_true", help="only the Celery variant")
    ap.add_argument("--skip-celery", action="store_true", help="only the in-line variant")
    ap.add_argument("--no-timers", action="store_true", help="no stage timers in the in-line runs")
    ap.add_argument(
        "--proposed-delete",
        action="store_true",
        help="add an in-line re-sync with the proposed single-statement ledger.delete_records (bench patch)",
    )
    ap.add_argument(
        "--strict-server", action="store_true", help="the fake server refuses what OpenAI refuses"
    )
    ap.add_argument(
        "--phase-timeout", type=float, default=3600.0, help="give up on a Celery phase after this"
    )
    ap.add_argument("--max-seconds", type=float, default=4 * 3600.0, help="the fake server exits after this")
    ap.add_argument("--keep-database", action="store_true", help="do not drop the bench database at the end")
    ap.add_argument("--name", default="sync", help="results file: bench/results/<name>.md")
    args = ap.parse_args()
    if args.projects < args.concurrency:
        raise SystemExit("--projects must be at least --concurrency")

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    started = datetime.now(UTC)
    command = " ".join([".venv/bin/python", "bench/sync.py", *sys.argv[1:]])
    os.environ["REDIS_URL"] = REDIS_URL  # before Django: .delay() goes to Redis, not eager
    os.environ.setdefault("ALLOW_PRIVATE_URLS", "1")  # the fake provider is on loopback
    os.environ.setdefault("CONN_MAX_AGE", "60")
    _common.ensure_database(args.database_url)
    _common.setup_django(args.database_url)
    _common.migrate()
    reset_database()
    analyze()  # every variant starts from analysed empty tables (the Celery one after TRUNCATE + ANALYZE)

    from django.db import connections

    from apps.catalog import pricing
    from apps.connectors import services
    from apps.connectors.providers.openai import OpenAIClient
    from spendctl.celery import app as celery_app

    sys.path.insert(0, str(ROOT / "bench"))
    import fake_openai

    dataset = fake_openai.Dataset(args.projects, args.models, args.density)
    for name in dataset.models:  # the catalog knows every model the fake serves (no unpriced rows by design)
        assert pricing.normalise_model("openai", name), name
    client_options = {"bucket_width": "1h"}
    if args.page_limit:
        client_options["usage_page_limit"] = args.page_limit
    services.CLIENT_OPTIONS = {"openai": client_options}
    effective_limit = args.page_limit or OpenAIClient.usage_page_limit
    today = started.date()
    start, end = today - timedelta(days=args.days), today
    expected_usage = args.days * 24 * args.projects * dataset.per_day
    expected_costs = args.days * args.projects * dataset.per_day * 3
    meta = {
        "command": command,
        "per_day": dataset.per_day,
        "expected_usage_rows": expected_usage,
        "expected_cost_rows": expected_costs,
        "window": f"[{start}, {end})",
        "client_options": {"openai": {**client_options, "usage_page_limit": effective_limit}},
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "timer_overhead_us": Timers().overhead_per_call() * 1e6,
        "code": code_fingerprint(),
        "notes": [],
    }
    log(
        f"{args.days} days x 24 h x {args.projects} projects x {dataset.per_day}/{args.models} models = "
        f"{expected_usage:,} usage rows, {expected_costs:,} cost lines; window {meta['window']}; "
        f"usage page limit {effective_limit} buckets"
    )

    phases: list[dict] = []
    checks: list[str] = []
    server = worker = None
    queue = f"bench-sync-{os.getpid()}"
    failed = False
    try:
        server = FakeServer(args)
        log(f"fake server pid {server.pid} on {server.url}")

        def check_full(p: dict, totals: dict, label: str):
            ok_rows = totals["usage_rows"] == expected_usage == p["records_added"]
            ok_costs = totals["cost_rows"] == expected_costs == p["cost_rows"]
            ok_roll = rollup_consistent(totals)
            msg = (
                f"{label}: runs {p['status']}; ledger {totals['usage_rows']:,} rows (expected {expected_usage:,}: "
                f"{'OK' if ok_rows else 'MISMATCH'}), cost {totals['usage_cost']}, {totals['unpriced_rows']} unpriced; "
                f"{totals['cost_rows']:,} cost records (expected {expected_costs:,}: {'OK' if ok_costs else 'MISMATCH'}) "
                f"= {totals['cost_amount']} USD; rollup = ledger: {'OK' if ok_roll else 'MISMATCH'}"
            )
            checks.append(msg)
            log(msg)
            return ok_rows and ok_costs and ok_roll and all(s == "succeeded" for s in p["status"])

        def check_resync(p: dict, before: dict, after: dict, label: str):
            same = before == after
            msg = (
                f"{label}: ledger after the re-sync identical to after the full sync: {'YES' if same else 'NO'} "
                f"(usage rows {before['usage_rows']:,} -> {after['usage_rows']:,}, total cost {before['usage_cost']} "
                f"-> {after['usage_cost']}, cost records {before['cost_rows']:,} -> {after['cost_rows']:,}, "
                f"reported {before['cost_amount']} -> {after['cost_amount']}, rollup records "
                f"{before['rollup_records']:,} -> {after['rollup_records']:,}, rollup cost {before['rollup_cost']} "
                f"-> {after['rollup_cost']}); rows replaced {p['records_replaced']:,}, re-added "
                f"{p['records_added']:,}"
            )
            checks.append(msg)
            log(msg)
            return same and all(s == "succeeded" for s in p["status"])

        def describe(p: dict):
            log(
                f"{p['label']}: {p['wall']:.1f}s, {p['records_added']:,} usage rows "
                f"({p['records_added'] / p['wall']:,.0f}/s), {p['cost_rows']:,} cost rows, {p['pages']} pages, "
                f"peak RSS {fmt_mb(p['peak_rss_mb'])} MB (sampled {fmt_mb(p['sampled_rss_mb'])}), CPU sync "
                f"{p['sync_cpu']:.1f}s / pg {p['pg_cpu']:.1f}s / server {p['server_cpu']:.1f}s, lock-wait samples "
                f"{p['lock_wait_share']:.0%}; server: {p['server']['requests']} "
                f"violations {p['server']['violations']}"
            )

        if not args.skip_inline:
            org = make_org("bench-sync-inline", dataset.project_ids)
            conn = make_connection(org, "OpenAI (all projects)", 0, args.projects, server.url)
            timers = None if args.no_timers else install_timers()
            try:
                p = phase_inline("in-line full sync (1 process)", [conn], start, end, server, args, timers)
                describe(p)
                phases.append(p)
                full = ledger_totals(org)
                failed |= not check_full(p, full, "in-line full sync")
                if timers:
                    timers.unwrap()
                plan = explain_replace_lookup(org, conn, end)
                meta["notes"].append(
                    f"page lookup before delete, after the in-line full sync (no ANALYZE yet): {plan}"
                )
                log(meta["notes"][-1])
                plan = explain_replace_lookup(org, conn, end, with_range=True)
                meta["notes"].append(f"the same with the proposed start_time range condition added: {plan}")
                log(meta["notes"][-1])
                analyze()
                plan = explain_replace_lookup(org, conn, end)
                meta["notes"].append(f"the same after ANALYZE: {plan}")
                log(meta["notes"][-1])
                if timers:
                    timers = install_timers()
                p = phase_inline("in-line re-sync (1 process)", [conn], start, end, server, args, timers)
                describe(p)
                phases.append(p)
                failed |= not check_resync(p, full, ledger_totals(org), "in-line re-sync")
                if args.proposed_delete:
                    from apps.usage import ledger

                    original = ledger.delete_records
                    if timers:
                        timers.unwrap()
                    ledger.delete_records = proposed_delete_records
                    timers = None if args.no_timers else install_timers()
                    try:
                        label = "in-line re-sync, PROPOSED delete (bench patch)"
                        p = phase_inline(label, [conn], start, end, server, args, timers)
                    finally:
                        if timers:
                            timers.unwrap()
                            timers = None
                        ledger.delete_records = original
                    describe(p)
                    phases.append(p)
                    failed |= not check_resync(p, full, ledger_totals(org), label)
            finally:
                if timers:
                    timers.unwrap()
            if not args.skip_celery:
                empty_ledger()

        if not args.skip_celery:
            celery_app.conf.task_default_queue = queue  # .delay() -> the benchmark's private queue
            _common.migrate()  # migrations other engineers added since the start (the worker loads today's code)
            now_code = code_fingerprint()
            changed = [f for f in CODE_FILES if now_code[f] != meta["code"][f]]
            if changed:
                note = (
                    f"the measured code changed between the in-line and the Celery variants (other engineers' "
                    f"edits): {changed}; the Celery worker ran the newer version"
                )
                meta["notes"].append(note)
                meta["code_celery"] = now_code
                log("NOTE: " + note)
            connections.close_all()
            worker = Worker(args, {"openai": client_options}, queue)
            wait_for_worker(worker)
            log(f"celery worker pid {worker.pid}, pool {worker.pool_pids()}, queue {queue}")
            org = make_org("bench-sync-celery", dataset.project_ids)
            n = args.concurrency
            bounds = [args.projects * i // n for i in range(n + 1)]
            conns = [
                make_connection(org, f"OpenAI {i + 1}/{n}", bounds[i], bounds[i + 1], server.url)
                for i in range(n)
            ]
            p = phase_celery(f"Celery full sync ({n} workers)", conns, start, end, server, worker, args)
            describe(p)
            phases.append(p)
            full = ledger_totals(org)
            failed |= not check_full(p, full, f"Celery full sync ({n} workers)")
            analyze()
            p = phase_celery(f"Celery re-sync ({n} workers)", conns, start, end, server, worker, args)
            describe(p)
            phases.append(p)
            failed |= not check_resync(p, full, ledger_totals(org), f"Celery re-sync ({n} workers)")
            for q in phases[-2:]:
                spans = q["spans"]
                if len(spans) > 1 and all(s and e for s, e in spans):
                    overlap = (min(e for _s, e in spans) - max(s for s, _e in spans)).total_seconds()
                    meta["notes"].append(
                        f"{q['label']}: per-run seconds {[round(x or 0, 1) for x in q['per_run_seconds']]}, runs "
                        f"overlapped {max(0.0, overlap):.1f}s; CPU per pool process "
                        f"{[round(c, 1) for c in q['pool_cpu']]} s"
                    )
        server_peak = proc_status_kb(server.pid, "VmHWM")
        meta["notes"].append(
            f"fake server peak RSS over the whole benchmark: {server_peak / 1024 if server_peak else float('nan'):,.0f} MB"
        )
        for p in phases:
            v = p["server"]["violations"]
            if v:
                meta["notes"].append(f"{p['label']}: fake server saw {v}")
            meta["notes"].append(
                f"{p['label']}: requests {p['server']['requests']}, {p['server']['bytes'] / 2**20:,.0f} MiB of JSON "
                f"served; query shapes {p['server']['query_shapes']}"
            )
            ts = p.get("table_stats", {}).get("usage_usagerecord")
            if ts:
                meta["notes"].append(f"{p['label']}: usage_usagerecord counters during the phase {ts}")
            if p.get("sampler_error"):
                meta["notes"].append(f"{p['label']}: sampler error {p['sampler_error']}")
        text = report(args, phases, checks, meta)
        print()
        print(text)
        path = _common.write_result(args.name, text)
        log(f"written {path}")
        with open(_common.RESULTS / f"{args.name}.json", "w") as f:
            json.dump({"meta": meta, "phases": phases, "checks": checks}, f, indent=1, default=str)
    except BaseException:
        failed = True
        raise
    finally:
        if worker is not None:
            worker.stop()
            log("celery worker stopped")
            redis_cleanup(queue)
        if server is not None:
            server.stop()
            log("fake server stopped")
        connections.close_all()
        if not args.keep_database:
            drop_database(args.database_url)
    if failed:
        raise SystemExit("a check failed (see above)")


if __name__ == "__main__":
    main()
