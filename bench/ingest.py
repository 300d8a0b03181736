#!/usr/bin/env python
"""Ingest benchmark: N pushed events through the API's code path vs a bare binary COPY of the same rows.

    .venv/bin/python bench/ingest.py [--events 1000000] [--workers 1|2] [--database-url postgres://…]

Both phases get the same events from the same streaming generator (batches of 5,000 parsed event dicts, as the
JSON body gives them; 1M events are never held in memory):

* ingest: `apps.usage.services.usage_events_ingest(org=…, events=batch)`, what POST /api/v1/events calls after
  parsing the body: validation, team and rule attribution, normalisation, pricing, then COPY straight into the
  ledger (inside a savepoint; a key stored already falls back to a staging table and INSERT … ON CONFLICT DO
  NOTHING) and the rollup upserts, one transaction per batch.
* COPY: the same rows, already in their final shape, in binary COPY into a scratch table with the ledger's
  columns and no constraints or indexes: the physical limit of the write. It runs twice: one COPY streamed over
  the whole phase (its timer covers the write_row calls, while the server's work on the rows overlaps with the
  generation of the next batch, outside the timer), and one COPY per batch of 5,000, each timed until the server
  has stored it (as the ingest's batches are). The ratio is printed against both.

Rates are given twice: "in call" counts only the time inside usage_events_ingest / the COPY writes (the input is
generated outside the timer), "wall" is the whole phase including generating the input. With --workers 2 each
process handles half (its own org for ingest, its own connection for COPY) and rates are summed / wall-clocked.
After the run the daily rollup is checked against the raw ledger, group by group, and peak RSS is reported.

Before the timed phases one batch of another org goes in and the ledger and rollups are analysed (autovacuum is off
on these machines; see warm_up_and_analyze). Both phases run with Python's cyclic collector off, as the ingest
pauses it for each batch.
"""

import argparse
import contextlib
import gc
import multiprocessing as mp
import os
import queue
import random
import resource
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

BATCH = 5000
SCRATCH = "bench_copy_baseline"
ORG_SLUG = "bench-ingest"
TEAMS = ("search", "support", "growth", "platform", "research")
CUSTOMERS = tuple(f"cust-{i:03d}" for i in range(40))
# (provider, model as sent, weight when dimensions are independent, usage shape); all priced by genai-prices 0.2.3
MODELS = (
    ("openai", "gpt-4o-mini-2024-07-18", 30, "openai"),
    ("openai", "gpt-4o", 12, "openai"),
    ("openai", "gpt-4.1", 10, "openai"),
    ("openai", "o4-mini", 10, "reasoning"),
    ("anthropic", "claude-sonnet-4-5-20250929", 23, "anthropic"),
    ("anthropic", "claude-haiku-4-5", 15, "anthropic"),
)
# (feature, weight, owning team named in the event or None, models it calls: the first ~70 % of the time).
# "summarize" names no team: the bench's attribution rule (tag feature=summarize -> research) assigns it.
FEATURES = (
    ("chat", 25, "support", (0, 5)),
    ("search", 15, "search", (2, 0)),
    ("summarize", 10, None, (4, 0)),
    ("classify", 10, "platform", (0,)),
    ("extract", 10, "platform", (2, 3)),
    ("agent", 15, "growth", (4, 3, 1)),
    ("translate", 5, "growth", (1, 5)),
    ("autocomplete", 10, "search", (0, 5)),
)
# rough list rates (USD / Mtok: input, output) used only to give the COPY baseline's rows a realistic cost value
_COPY_RATES = {
    "gpt-4o-mini-2024-07-18": ("0.15", "0.6"),
    "gpt-4o": ("2.5", "10"),
    "gpt-4.1": ("2", "8"),
    "o4-mini": ("1.1", "4.4"),
    "claude-sonnet-4-5-20250929": ("3", "15"),
    "claude-haiku-4-5": ("1", "5"),
}


# --- the input -----------------------------------------------------------------------------------------------------


def event_batches(
    n: int,
    *,
    prefix: str,
    seed: int,
    start: float,
    span: float,
    batch_size: int = BATCH,
    independent: bool = False,
):
    """Yields lists of event dicts exactly as the JSON body parses (ISO strings, ints, a tags dict). Streaming.

    By default the dimensions are correlated the way a product's are (a feature belongs to a team and calls one to
    three models; customers are skewed). independent=True draws team, model, feature and customer independently:
    the rollup then has about 2.5x more groups per batch (a stress case for the rollup upsert).
    """
    rng = random.Random(seed)
    rand, randrange = rng.random, rng.randrange
    pick_model = [i for i, m in enumerate(MODELS) for _ in range(m[2])]
    pick_feature = [f for f in FEATURES for _ in range(f[1])]
    step = span / max(n, 1)
    batch = []
    for i in range(n):
        feature, _w, owner, models = pick_feature[randrange(len(pick_feature))]
        if independent:
            model_index = pick_model[randrange(len(pick_model))]
            team = TEAMS[randrange(len(TEAMS))] if rand() < 0.6 else None
        else:
            r = rand()
            model_index = (
                models[0]
                if r < 0.7 or len(models) == 1
                else models[1 + int((r - 0.7) / 0.3 * (len(models) - 1))]
            )
            team = owner if owner and rand() < 0.75 else None
        provider, model, _w, shape = MODELS[model_index]
        ts = datetime.fromtimestamp(start + i * step + rand() * step, UTC)
        input_tokens = 20 + int(rng.expovariate(1 / 1800))
        if shape == "anthropic" and rand() < 0.003:
            input_tokens += 200_000  # the long-context tier
        output_tokens = 1 + int(rng.expovariate(1 / 350))
        tags = {"feature": feature, "customer": CUSTOMERS[int(len(CUSTOMERS) * rand() ** 2)]}
        if rand() < 0.5:
            tags["environment"] = "production"
        if rand() < 0.2:
            tags["prompt_version"] = f"v{randrange(1, 6)}"
        event = {
            "id": f"{prefix}{i:09d}",
            "timestamp": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "provider": provider,
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "tags": tags,
        }
        r = rand()
        if shape == "anthropic" and r < 0.45:
            event["cache_read_tokens"] = int(input_tokens * (0.5 + rand() * 0.4))
            if r < 0.15:
                event["cache_write_tokens"] = (input_tokens - event["cache_read_tokens"]) // 2
        elif shape in ("openai", "reasoning") and r < 0.3:
            event["cache_read_tokens"] = (input_tokens // 2 // 128) * 128
        if shape == "reasoning":
            event["reasoning_tokens"] = int(output_tokens * rand())
        if team:
            event["team"] = team
        if provider == "openai" and rand() < 0.03:
            event["batch"] = True
        if rand() < 0.02:
            event["cost"] = f"{rand() / 50:.6f}"  # a caller that reports its own cost
        batch.append(event)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- phases (each in its own process) ------------------------------------------------------------------------------


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of another process, e.g. the PostgreSQL backend serving a connection."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_marks(done: int, n: int, marks: dict, next_mark: list):
    while next_mark and done >= next_mark[0] * n / 100:
        pct = next_mark.pop(0)
        marks[pct] = (_common.current_rss_mb(), _common.peak_rss_mb())


class _Sections:
    """Splits the time inside usage_events_ingest: Python (validation, attribution, pricing, row building), COPY (the
    chunks formatted and streamed to the ledger during the loop, and the rest at the end), the SQL statements of
    finish() (the rollup upsert; on a stored key the INSERT … ON CONFLICT), and the rest (commit). Wraps ledger.RecordWriter and times SQL through Django's execute_wrapper."""

    def __init__(self):
        from apps.usage import ledger, services

        self.sql = 0.0
        self.python = self.copy = self.statement = self.commit = self.after_write = 0.0
        self._streamed = 0.0  # COPY chunks sent during the loop, this call
        writer = ledger.RecordWriter
        send, finish = writer._send, writer.finish
        sections = self

        def timed_send(w):
            t0 = time.perf_counter()
            try:
                return send(w)
            finally:
                sections._streamed += time.perf_counter() - t0

        def timed_finish(w):
            streamed = sections._streamed
            sections._start, sql0 = time.perf_counter(), sections.sql
            try:
                return finish(w)
            finally:
                sections._end = time.perf_counter()
                sections._sql = sections.sql - sql0
                sections._streamed_before = streamed
                sections._streamed_in_finish = sections._streamed - streamed

        writer._send, writer.finish = timed_send, timed_finish
        if hasattr(services, "_after_write"):  # the on-commit hook (budget counters and evaluation)
            self._after = services._after_write
            services._after_write = self._timed_after_write

    def _timed_after_write(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self._after(*args, **kwargs)
        finally:
            self.after_write += time.perf_counter() - t0

    def __call__(self, execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.sql += time.perf_counter() - t0

    def add(self, t0, t1):
        """After one call that ran from t0 to t1."""
        streamed = (
            self._streamed_before
        )  # chunks sent from inside the loop (their SQL: CREATE/TRUNCATE, tiny)
        self.python += self._start - t0 - streamed
        self.statement += self._sql
        self.copy += streamed + (self._end - self._start - self._sql)
        self.commit += t1 - self._end  # after_write included; reported apart below
        self._streamed = 0.0


def ingest_worker(idx, n, barrier, out, org_id, seed, start, span, independent, profile_path):
    from django.db import connection, connections

    from apps.orgs.models import Organization
    from apps.usage.services import usage_events_ingest

    org = Organization.objects.get(pk=org_id)
    sections = _Sections()
    connection.execute_wrappers.append(sections)
    batches = event_batches(
        n, prefix=f"w{idx}-", seed=seed + idx, start=start, span=span, independent=independent
    )
    marks, next_mark = {0: (_common.current_rss_mb(), _common.peak_rss_mb())}, [10, 50, 100]
    accepted = duplicates = rejected = 0
    profiler = None
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    barrier.wait()
    t_start = time.perf_counter()
    server_cpu0 = _cpu_of(backend)
    in_call = client_cpu = 0.0
    done = 0
    for batch in batches:
        c0 = _cpu_self()
        t0 = time.perf_counter()
        if profiler:
            profiler.enable()
        result = usage_events_ingest(org=org, events=batch)
        if profiler:
            profiler.disable()
        t1 = time.perf_counter()
        client_cpu += _cpu_self() - c0
        in_call += t1 - t0
        sections.add(t0, t1)
        accepted += result.accepted
        duplicates += len(result.duplicate_events)
        rejected += len(result.rejected_events)
        if result.rejected_events and rejected == len(result.rejected_events):
            print("first rejected event:", result.rejected_events[0], file=sys.stderr)
        done += len(batch)
        _rss_marks(done, n, marks, next_mark)
    t_end = time.perf_counter()
    server_cpu = _cpu_of(backend) - server_cpu0
    if profiler:
        profiler.dump_stats(f"{profile_path}.{idx}")
    connections.close_all()
    out.put(
        {
            "idx": idx,
            "n": n,
            "in_call": in_call,
            "t_start": t_start,
            "t_end": t_end,
            "client_cpu": client_cpu,
            "server_cpu": server_cpu,
            "marks": marks,
            "accepted": accepted,
            "duplicates": duplicates,
            "rejected": rejected,
            "sections": {
                "python": sections.python,
                "copy": sections.copy,
                "statement": sections.statement,
                "commit": sections.commit - sections.after_write,
                "after_write": sections.after_write,
            },
        }
    )


def copy_worker(
    idx,
    n,
    barrier,
    out,
    org_id,
    seed,
    start,
    span,
    independent,
    database_url,
    columns,
    types,
    tz_name,
    teams,
    per_batch=False,
):
    """per_batch=False: one COPY for all the process's rows, timed over the write_row calls (the server parses
    and stores them while the next batch is generated, outside the timer). per_batch=True: one COPY per batch
    of 5,000 (as the ingest does), each timed until the server has stored it (the end of the COPY waits for its
    CommandComplete); one transaction either way."""
    import zoneinfo

    import psycopg
    from psycopg.types.json import Jsonb

    from apps.catalog.selectors import normalise_model
    from apps.usage.models import TAG_COLUMNS

    tz = zoneinfo.ZoneInfo(tz_name)
    normalised = {m: normalise_model(p, m) for p, m, _w, _s in MODELS}
    million = Decimal(1_000_000)
    rates = {m: (Decimal(i) / million, Decimal(o) / million) for m, (i, o) in _COPY_RATES.items()}
    q = Decimal("1e-10")
    now = datetime.now(UTC)
    ids = iter(range(idx * 10**10 + 1, (idx + 1) * 10**10))

    def to_row(ev):
        """The event in the ledger's final row shape: what COPY gets for free and the ingest path computes."""
        start_time = datetime.fromisoformat(ev["timestamp"])
        tags = dict(ev["tags"])
        named = {c: tags.pop(c, "") for c in TAG_COLUMNS}
        cr, cw = ev.get("cache_read_tokens", 0), ev.get("cache_write_tokens", 0)
        rate_in, rate_out = rates[ev["model"]]
        cost = (ev["input_tokens"] * rate_in + ev["output_tokens"] * rate_out).quantize(q)
        team = ev.get("team")
        values = {
            "id": next(ids),
            "org_id": org_id,
            "source": "event",
            "key": ev["id"],
            "connection_id": None,
            "provider": ev["provider"],
            "model": normalised[ev["model"]],
            "model_raw": ev["model"],
            "project_id": None,
            "workspace_id": None,
            "api_key_id": None,
            "team_id": teams[team] if team else None,
            "team_source": "explicit" if team else "none",
            **named,
            "tags": Jsonb(tags),
            "start_time": start_time,
            "day": start_time.astimezone(tz).date(),
            "bucket_seconds": 0,
            "service_tier": "batch" if ev.get("batch") else "standard",
            "context_window": "",
            "requests": 1,
            "uncached_input_tokens": ev["input_tokens"] - cr - cw,
            "cache_read_tokens": cr,
            "cache_write_tokens": cw,
            "cache_write_1h_tokens": 0,
            "output_tokens": ev["output_tokens"],
            "reasoning_tokens": ev.get("reasoning_tokens", 0),
            "input_audio_tokens": 0,
            "output_audio_tokens": 0,
            "cost": cost,
            "currency": "USD",
            "cost_basis": "computed",
            "computed_cost": cost,
            "reported_cost": None,
            "price_ref": f"{ev['provider']}/{normalised[ev['model']]} list 2025-01-01",
            "created_at": now,
        }
        return [values.get(c) for c in columns]

    batches = event_batches(
        n, prefix=f"w{idx}-", seed=seed + idx, start=start, span=span, independent=independent
    )
    marks, next_mark = {0: (_common.current_rss_mb(), _common.peak_rss_mb())}, [10, 50, 100]
    with psycopg.connect(database_url) as conn:
        cur = conn.cursor()
        backend = conn.info.backend_pid
        barrier.wait()
        t_start = time.perf_counter()
        server_cpu0 = _cpu_of(backend)
        in_call = client_cpu = 0.0
        done = 0
        gc.disable()  # as usage_events_ingest pauses it (spendctl.common.gc): the same conditions for both
        statement = f"COPY {SCRATCH} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"

        def open_copy(stack):
            copy = stack.enter_context(cur.copy(statement))
            copy.set_types(types)
            return copy

        # one COPY for the whole phase (ended when `whole` closes, inside the last timer), or one per batch (ended
        # when `this_batch` closes, inside that batch's timer)
        with contextlib.ExitStack() as whole:
            copy = None if per_batch else open_copy(whole)
            for batch in batches:
                rows = [to_row(ev) for ev in batch]
                c0 = _cpu_self()
                t0 = time.perf_counter()
                with contextlib.ExitStack() as this_batch:
                    if per_batch:
                        copy = open_copy(this_batch)
                    for row in rows:
                        copy.write_row(row)
                in_call += time.perf_counter() - t0
                client_cpu += _cpu_self() - c0
                done += len(batch)
                _rss_marks(done, n, marks, next_mark)
            c0 = _cpu_self()
            t0 = time.perf_counter()
        conn.commit()
        t_end = time.perf_counter()
        client_cpu += _cpu_self() - c0
        in_call += t_end - t0
        server_cpu = _cpu_of(backend) - server_cpu0
    out.put(
        {
            "idx": idx,
            "n": n,
            "in_call": in_call,
            "t_start": t_start,
            "t_end": t_end,
            "client_cpu": client_cpu,
            "server_cpu": server_cpu,
            "marks": marks,
        }
    )


def run_phase(target, workers: int, n: int, args_for) -> list[dict]:
    from django.db import connections

    connections.close_all()  # never share a connection with forked children
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(workers), ctx.Queue()
    shares = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
    procs = [
        ctx.Process(target=target, args=(i, shares[i], barrier, out, *args_for(i))) for i in range(workers)
    ]
    for p in procs:
        p.start()
    results = []
    while len(results) < workers:
        try:
            results.append(out.get(timeout=2))
        except queue.Empty:
            if any(p.exitcode for p in procs):
                for p in procs:
                    if p.is_alive():
                        p.terminate()
                raise SystemExit(f"a {target.__name__} process failed") from None
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"a {target.__name__} process failed (exit code {p.exitcode})")
    return sorted(results, key=lambda r: r["idx"])


def summarise(results: list[dict]) -> dict:
    n = sum(r["n"] for r in results)
    wall = max(r["t_end"] for r in results) - min(r["t_start"] for r in results)
    return {
        "n": n,
        "wall": wall,
        "in_call": max(r["in_call"] for r in results),
        "rate_in_call": sum(r["n"] / r["in_call"] for r in results),  # concurrent processes: rates add up
        "rate_wall": n / wall,
        # CPU µs per row of the client process(es) inside the timed calls and of their PostgreSQL backends
        "client_us": sum(r["client_cpu"] for r in results) / n * 1e6,
        "server_us": sum(r["server_cpu"] for r in results) / n * 1e6,
    }


# --- set-up and checks ---------------------------------------------------------------------------------------------


def reset(workers: int):
    """Empty ledger, a fresh org per worker with teams and one attribution rule, an empty scratch table."""
    from django.db import connection

    from apps.orgs.models import Organization
    from apps.orgs.services import org_create, team_create, user_get_or_create
    from apps.usage.models import UsageRecord
    from apps.usage.services import attribution_rule_create

    _common.truncate_ledger()
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
        # the ledger's columns and types, no constraints, no defaults, no indexes
        cur.execute(f"CREATE TABLE {SCRATCH} AS SELECT * FROM {UsageRecord._meta.db_table} WITH NO DATA")
    Organization.objects.filter(slug__startswith=ORG_SLUG).delete()
    owner = user_get_or_create(email="bench@spendctl.invalid").user
    orgs = []
    for i in range(workers):
        org = org_create(
            name=f"Bench ingest {i}", slug=f"{ORG_SLUG}-{i}", owner=owner, timezone_name="Europe/Berlin"
        )
        teams = {name: team_create(org=org, name=name) for name in TEAMS}
        attribution_rule_create(
            org=org, kind="tag", tag_key="feature", value="summarize", team=teams["research"]
        )
        orgs.append((org, {name: t.pk for name, t in teams.items()}))
    warm_up_and_analyze(owner)
    return orgs


def warm_up_and_analyze(owner):
    """A ledger as production has one: with planner statistics. Autovacuum is off on these machines, and an empty,
    never-analysed ledger makes PostgreSQL guess a few rows for a batch's id range and sort the batch's 5,000 wide
    rows to group them (measured: 16 ms a batch) where, with statistics, it hashes them (6 ms). So one batch of
    another org goes in first and the tables are analysed, as autovacuum's ANALYZE would have them; that org's rows
    stay out of every figure and check."""
    from django.db import connection

    from apps.orgs.services import org_create
    from apps.usage.models import UsageRecord
    from apps.usage.services import usage_events_ingest

    org = org_create(
        name="Bench warm-up", slug=f"{ORG_SLUG}-warm-up", owner=owner, timezone_name="Europe/Berlin"
    )
    now = time.time()
    for batch in event_batches(BATCH, prefix="warm-", seed=0, start=now - 86400, span=3600):
        usage_events_ingest(org=org, events=batch)
    tables = [UsageRecord._meta.db_table, *(model._meta.db_table for model, _key in _common.rollups())]
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {', '.join(tables)}")


def scratch_columns():
    from django.db import connection

    pg_to_copy = {
        "bigint": "int8",
        "integer": "int4",
        "character varying": "text",
        "text": "text",
        "jsonb": "jsonb",
        "timestamp with time zone": "timestamptz",
        "date": "date",
        "numeric": "numeric",
    }
    with connection.cursor() as cur:
        cur.execute(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            [SCRATCH],
        )
        cols = cur.fetchall()
    return [c for c, _t in cols], [pg_to_copy[t] for _c, t in cols]


def checkpoint():
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("CHECKPOINT")


ROLLUP_SUMS = (
    "records",
    "requests",
    "uncached_input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "cost",
    "computed_cost",
    "reported_cost",
    "unpriced_records",
    "unpriced_requests",
)


def rollup_check(org_ids: list[int]) -> dict:
    """Every row of every rollup equals the ledger's group (both directions), and the grand totals agree."""
    from django.db import connection

    from apps.usage.models import BASIS_UNPRICED

    ledger_sums = ", ".join(
        {
            "records": "COUNT(*)",
            "computed_cost": "SUM(COALESCE(computed_cost, 0))",
            "reported_cost": "SUM(COALESCE(reported_cost, 0))",
            "unpriced_records": "COUNT(*) FILTER (WHERE cost_basis = %(unpriced)s)",
            "unpriced_requests": "COALESCE(SUM(requests) FILTER (WHERE cost_basis = %(unpriced)s), 0)",
        }.get(c, f"SUM({c})")
        for c in ROLLUP_SUMS
    )
    params = {"orgs": org_ids, "unpriced": BASIS_UNPRICED}
    totals = (
        "SUM(cost), SUM(uncached_input_tokens + cache_read_tokens + cache_write_tokens), SUM(output_tokens)"
    )
    per_rollup, ok = [], True
    with connection.cursor() as cur:
        cur.execute(f"SELECT COUNT(*), {totals} FROM usage_usagerecord WHERE org_id = ANY(%(orgs)s)", params)
        raw = cur.fetchone()
        for model, key_fields in _common.rollups():
            table = model._meta.db_table
            key = ", ".join(
                ["org_id", *("COALESCE(team_id, 0)" if k == "team_id" else k for k in key_fields)]
            )
            ledger = f"SELECT {key}, {ledger_sums} FROM usage_usagerecord WHERE org_id = ANY(%(orgs)s) GROUP BY {key}"
            rollup = (
                f"SELECT org_id, {', '.join(key_fields)}, {', '.join(ROLLUP_SUMS)} FROM {table} "
                "WHERE org_id = ANY(%(orgs)s)"
            )
            cur.execute(
                f"SELECT (SELECT COUNT(*) FROM ({ledger} EXCEPT ALL {rollup}) a), "
                f"(SELECT COUNT(*) FROM ({rollup} EXCEPT ALL {ledger}) b), (SELECT COUNT(*) FROM ({rollup}) c)",
                params,
            )
            only_ledger, only_rollup, rows = cur.fetchone()
            cur.execute(f"SELECT SUM(records), {totals} FROM {table} WHERE org_id = ANY(%(orgs)s)", params)
            rolled = cur.fetchone()
            good = only_ledger == 0 and only_rollup == 0 and tuple(raw) == tuple(rolled)
            ok = ok and good
            per_rollup.append(
                {
                    "table": table,
                    "rows": rows,
                    "mismatched": only_ledger + only_rollup,
                    "totals": rolled,
                    "ok": good,
                }
            )
    return {"raw": raw, "rollups": per_rollup, "ok": ok}


def describe_check(check: dict) -> str:
    raw = check["raw"]
    parts = []
    for r in check["rollups"]:
        totals = "equal" if tuple(r["totals"]) == tuple(raw) else f"DIFFER: {r['totals']}"
        parts.append(f"`{r['table']}` {r['rows']:,} rows, {r['mismatched']} groups differ, totals {totals}")
    return (
        f"**{'OK' if check['ok'] else 'MISMATCH'}** — every rollup compared with the ledger group by group: "
        + "; ".join(parts)
        + f". Ledger: {raw[0]:,} rows, cost {raw[1]}, input tokens {raw[2]:,}, output tokens {raw[3]:,}."
    )


# --- main ----------------------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=1, help="processes; each ingests its share (own org)")
    parser.add_argument("--database-url", default=_common.DEFAULT_DATABASE_URL)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-copy", action="store_true", help="only the ingest phase (while iterating)")
    parser.add_argument("--profile", action="store_true", help="cProfile usage_events_ingest; prints the top")
    parser.add_argument(
        "--independent",
        action="store_true",
        help="draw team, model, feature and customer independently (about 2.5x more rollup groups per batch)",
    )
    parser.add_argument("--name", default="ingest", help="results file: bench/results/<name>.md")
    args = parser.parse_args()

    _common.ensure_database(args.database_url)
    _common.setup_django(args.database_url)
    _common.migrate()

    from apps.catalog import pricing

    for provider, model, _w, _s in MODELS:  # load genai-prices' data once, before forking
        assert pricing.normalise_model(provider, model), f"{provider}/{model} is not in genai-prices"
    orgs = reset(args.workers)
    org_ids = [org.pk for org, _teams in orgs]
    now = time.time()
    span = 30 * 86400
    start = now - span - 600  # the last 30 days, ending 10 minutes ago
    profile_path = str(_common.RESULTS / "ingest.prof") if args.profile else None
    if profile_path:
        _common.RESULTS.mkdir(parents=True, exist_ok=True)
    mix = "independent dimensions" if args.independent else "correlated dimensions"
    load_start = os.getloadavg()[0]
    print(
        f"{args.events:,} events ({mix}), {args.workers} worker(s), batches of {BATCH:,}, "
        f"database {args.database_url}; load average {os.getloadavg()[0]:.2f}"
    )

    checkpoint()
    ingest = run_phase(
        ingest_worker,
        args.workers,
        args.events,
        lambda i: (org_ids[i], args.seed, start, span, args.independent, profile_path),
    )
    s_ingest = summarise(ingest)
    accepted = sum(r["accepted"] for r in ingest)
    rejected = sum(r["rejected"] for r in ingest)
    duplicates = sum(r["duplicates"] for r in ingest)
    per_event = {k: sum(r["sections"][k] for r in ingest) / args.events * 1e6 for k in ingest[0]["sections"]}
    sections = ", ".join(f"{k} {v:.1f}" for k, v in per_event.items())
    print(f"ingest, µs per event inside the call (summed over processes): {sections}")
    print(
        f"ingest: {s_ingest['rate_in_call']:,.0f} events/s in call, {s_ingest['rate_wall']:,.0f} events/s wall "
        f"({s_ingest['wall']:.1f} s); accepted {accepted:,}, rejected {rejected:,}, duplicates {duplicates:,}; "
        f"CPU µs/event: client {s_ingest['client_us']:.1f}, PostgreSQL backend {s_ingest['server_us']:.1f}"
    )
    check = rollup_check(org_ids)
    print(f"rollup check: {describe_check(check)}")

    s_copy = s_copy_batched = None
    if not args.skip_copy:
        columns, types = scratch_columns()
        for per_batch in (False, True):
            checkpoint()
            copy = run_phase(
                copy_worker,
                args.workers,
                args.events,
                lambda i, per_batch=per_batch: (
                    org_ids[i],
                    args.seed,
                    start,
                    span,
                    args.independent,
                    args.database_url,
                    columns,
                    types,
                    "Europe/Berlin",
                    orgs[i][1],
                    per_batch,
                ),
            )
            summary = summarise(copy)
            print(
                f"COPY{' per batch' if per_batch else ''}: {summary['rate_in_call']:,.0f} rows/s in call, "
                f"{summary['rate_wall']:,.0f} rows/s wall ({summary['wall']:.1f} s); CPU µs/row: client "
                f"{summary['client_us']:.1f}, PostgreSQL backend {summary['server_us']:.1f}"
            )
            if per_batch:
                s_copy_batched = summary
            else:
                s_copy = summary
            from django.db import connection

            with connection.cursor() as cur:
                cur.execute(f"SELECT COUNT(*) FROM {SCRATCH}")
                copied = cur.fetchone()[0]
                cur.execute(f"TRUNCATE {SCRATCH}")  # keep the bench database small between runs
            assert copied == args.events, f"COPY loaded {copied} rows, expected {args.events}"

    if profile_path:
        import pstats

        stats = pstats.Stats(*[f"{profile_path}.{i}" for i in range(args.workers)])
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(40)

    # --- report
    def rate(x):
        return f"{x:,.0f}"

    w = args.workers

    def line(label, st, ratio):
        return [
            label,
            f"{st['n']:,}",
            f"{st['wall']:.1f}",
            rate(st["rate_in_call"]),
            rate(st["rate_wall"]),
            f"{st['client_us']:.1f} + {st['server_us']:.1f}",
            ratio,
        ]

    rows = []
    if s_copy:
        rows.append(line(f"COPY binary → scratch table, no constraints, one COPY ({w} conn)", s_copy, "1.00"))
        rows.append(
            line(
                f"the same, one COPY per batch of {BATCH:,}, timed until stored ({w} conn)",
                s_copy_batched,
                "–",
            )
        )
    ratios = (
        f"{s_ingest['rate_in_call'] / s_copy['rate_in_call']:.2f} (vs one COPY) / "
        f"{s_ingest['rate_in_call'] / s_copy_batched['rate_in_call']:.2f} (vs COPY per batch)"
        if s_copy
        else "–"
    )
    rows.append(
        line(
            f"`usage_events_ingest`, batches of {BATCH:,} ({w} process{'es' if w > 1 else ''})",
            s_ingest,
            ratios,
        )
    )
    table = _common.markdown_table(
        [
            "path",
            "rows",
            "wall s",
            "rows/s in call",
            "rows/s wall",
            "CPU µs/row: client + PostgreSQL",
            "ingest / COPY (rows/s in call)",
        ],
        rows,
    )
    mem_rows = []
    for r in ingest:
        m = r["marks"]
        mem_rows.append(
            [f"ingest process {r['idx']}"]
            + [f"{m[p][0]:.0f} / {m[p][1]:.0f}" for p in (0, 10, 50, 100) if p in m]
        )
    mem = _common.markdown_table(["RSS MB (current / peak)", "start", "10 %", "50 %", "100 %"], mem_rows)
    ratio_wall = f"{s_ingest['rate_wall'] / s_copy['rate_wall']:.2f}" if s_copy else "–"
    cpu_ratio = (
        f"{(s_copy['client_us'] + s_copy['server_us']) / (s_ingest['client_us'] + s_ingest['server_us']):.2f}"
        if s_copy
        else "–"
    )
    text = "\n\n".join(
        [
            f"### Ingest: {args.events:,} events ({mix}), {w} worker(s) — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            table,
            "Inside the call, µs per event: "
            + ", ".join(f"{k} {v:.1f}" for k, v in per_event.items())
            + " (python = validation, attribution, pricing, row building; copy = formatting and the COPY into "
            "the ledger, with the id reservation and the savepoint before the first chunk (on a stored key: also "
            "the COPY into the staging table); statement = the rollup upsert from the copied rows (on a stored "
            "key: INSERT … ON CONFLICT + rollup upsert); commit = COMMIT, with the deferred foreign-key "
            "checks; after_write = the on-commit hook: budget counters and evaluation).",
            f"Ingest / COPY by CPU per row (client + PostgreSQL backend): {cpu_ratio}; by wall clock including "
            f"generating the input: {ratio_wall} (not a fair ratio: COPY's wall time is mostly the bench building "
            "its final rows in Python). "
            f"Accepted {accepted:,}, rejected {rejected}, duplicates {duplicates}.",
            mem,
            f"Rollup check: {describe_check(check)}",
        ]
    )
    text += f"\n\nLoad average (1 min) at the start {load_start:.2f}, at the end {os.getloadavg()[0]:.2f}."
    print()
    print(text)
    path = _common.write_result(args.name, text)
    print(f"\nwritten to {path.relative_to(_common.ROOT)}")
    if not check["ok"] or accepted != args.events:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
