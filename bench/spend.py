#!/usr/bin/env python
"""Spend query benchmark: GET /api/v1/spend over 90 days grouped by day and model, on a 5M-row ledger.

    .venv/bin/python bench/spend.py [--rows 5000000] [--days 90] [--requests 200] [--raw-requests 20] [--live]
                                    [--reuse] [--database-url postgres://…]

1. Fill: one org, `--rows` ledger rows over `--days` days, generated in PostgreSQL (INSERT … SELECT over
   generate_series, in chunks, into usage_usagerecord with all its indexes), 20 models of 3 providers (one of
   them, a fine-tune, unpriced: ~0.5 % of the rows), 10 teams (15 % unattributed), 10 features, 50 customers
   (skewed). Then the daily rollup is built with `apps.usage.ledger.rollups_rebuild`, checked against the ledger,
   and the tables are VACUUMed and ANALYZEd (autovacuum is off on these machines). --reuse keeps a previous fill.
2. The API: `--requests` timed GETs of /api/v1/spend?start=…&end=…&group_by=day,model with a real token
   (`apps.orgs.services.api_token_create`), through Django's test client (in process: URL routing, DRF, token
   auth, throttling, the selectors, JSON rendering; no HTTP parsing). With --live also through gunicorn (2 sync
   workers) on loopback over real HTTP. The SQL the view runs is captured and each statement timed on its own.
3. Baseline: the same aggregation straight from the raw ledger (`SELECT day, model, SUM(cost), … FROM
   usage_usagerecord WHERE org_id = … GROUP BY day, model`), `--raw-requests` times.

Prints p50 / p95 / p99 in ms and writes a markdown table to bench/results/<name>.md.
"""

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/spendctl_bench_spend"
ORG_SLUG = "bench-spend"
TZ = "Europe/Berlin"
CHUNK = 1_000_000
# (provider, model, USD per Mtok input, output): rough list rates; the last one is a fine-tune with no price
MODELS = (
    ("openai", "gpt-4o-mini", "0.15", "0.6"),
    ("openai", "gpt-4o", "2.5", "10"),
    ("openai", "gpt-4.1", "2", "8"),
    ("openai", "gpt-4.1-mini", "0.4", "1.6"),
    ("openai", "gpt-4.1-nano", "0.1", "0.4"),
    ("openai", "o4-mini", "1.1", "4.4"),
    ("openai", "o3", "2", "8"),
    ("openai", "gpt-5", "1.25", "10"),
    ("anthropic", "claude-sonnet-4-5", "3", "15"),
    ("anthropic", "claude-haiku-4-5", "1", "5"),
    ("anthropic", "claude-opus-4-1", "15", "75"),
    ("anthropic", "claude-3-5-haiku-latest", "0.8", "4"),
    ("anthropic", "claude-sonnet-4-0", "3", "15"),
    ("anthropic", "claude-3-7-sonnet-latest", "3", "15"),
    ("google", "gemini-2.5-pro", "1.25", "10"),
    ("google", "gemini-2.5-flash", "0.3", "2.5"),
    ("google", "gemini-2.0-flash", "0.1", "0.4"),
    ("google", "gemini-2.5-flash-lite", "0.1", "0.4"),
    ("google", "gemini-1.5-pro", "1.25", "5"),
    ("google", "gemma-3-27b-support-ft", None, None),
)
TEAMS = tuple(
    f"team-{n}"
    for n in (
        "search",
        "support",
        "growth",
        "platform",
        "research",
        "data",
        "mobile",
        "web",
        "billing",
        "ops",
    )
)
FEATURES = (
    "chat",
    "search",
    "summarize",
    "classify",
    "extract",
    "agent",
    "translate",
    "autocomplete",
    "draft",
    "qa",
)
N_CUSTOMERS = 50

# Every column of usage_usagerecord the fill knows, as an expression over the generated row `d`.
COLUMN_SQL = {
    "org_id": "%(org)s",
    "source": "'event'",
    "key": "'spend-' || lpad(d.g::text, 9, '0')",
    "connection_id": "NULL",
    "token_id": "NULL",
    "provider": "(%(providers)s::text[])[d.m]",
    "model": "(%(models)s::text[])[d.m]",
    "model_raw": "(%(models)s::text[])[d.m]",
    "project_id": "NULL",
    "workspace_id": "NULL",
    "api_key_id": "NULL",
    "team_id": "(%(teams)s::bigint[])[d.t]",
    "team_source": "CASE WHEN d.t IS NULL THEN 'none' ELSE 'explicit' END",
    "feature": "(%(features)s::text[])[d.f + 1]",
    "task_id": "''",
    "customer": "'cust-' || lpad(d.c::text, 3, '0')",
    "end_user": "''",
    "environment": "'production'",
    "tags": "'{}'::jsonb",
    "start_time": "d.ts",
    "day": "(d.ts AT TIME ZONE %(tz)s)::date",
    "bucket_seconds": "0",
    "service_tier": "'standard'",
    "context_window": "''",
    "requests": "1",
    "uncached_input_tokens": "d.input_tokens - d.cache_read",
    "cache_read_tokens": "d.cache_read",
    "cache_write_tokens": "0",
    "cache_write_1h_tokens": "0",
    "output_tokens": "d.output_tokens",
    "reasoning_tokens": "0",
    "input_audio_tokens": "0",
    "output_audio_tokens": "0",
    "cost": "COALESCE(d.cost, 0)",
    "currency": "'USD'",
    "cost_basis": "CASE WHEN d.cost IS NULL THEN 'unpriced' ELSE 'computed' END",
    "computed_cost": "d.cost",
    "reported_cost": "NULL",
    "price_ref": "CASE WHEN d.cost IS NULL THEN '' ELSE 'bench list' END",
    "created_at": "now()",
}

FILL_SQL = """
INSERT INTO usage_usagerecord ({columns})
SELECT {values}
FROM (
    SELECT s.*,
           round(((s.input_tokens - s.cache_read) * (%(rate_in)s::numeric[])[s.m]
                  + s.cache_read * (%(rate_in)s::numeric[])[s.m] / 10
                  + s.output_tokens * (%(rate_out)s::numeric[])[s.m]) / 1000000, 10) AS cost
    FROM (
        SELECT r.g, r.ts, r.c, r.f, r.input_tokens, r.output_tokens,
               CASE WHEN r.r_cache < 0.3 THEN floor(r.input_tokens * 0.6)::bigint ELSE 0 END AS cache_read,
               -- a feature calls its main model 70 %% of the time, else its second one; 0.5 %% of all calls
               -- (5 %% of the last feature's) go to the unpriced fine-tune
               CASE WHEN r.f = 9 AND r.r_model >= 0.95 THEN 20
                    WHEN r.r_model < 0.7 THEN (r.f * 2) %% 19 + 1
                    ELSE (r.f * 2 + 1) %% 19 + 1 END AS m,
               CASE WHEN r.r_team < 0.85 THEN r.c %% 10 + 1 END AS t
        FROM (
            SELECT g,
                   %(start)s::timestamptz + (g - 1 + random()) * %(step)s * interval '1 second' AS ts,
                   floor(%(customers)s * power(random(), 2))::int AS c,
                   floor(10 * random())::int AS f,
                   random() AS r_model, random() AS r_team, random() AS r_cache,
                   20 + floor(-ln(1 - random()) * 1800)::bigint AS input_tokens,
                   1 + floor(-ln(1 - random()) * 350)::bigint AS output_tokens
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g
        ) r
    ) s
) d
"""


def fill(org, team_ids: list[int], rows: int, start: datetime, end: datetime) -> float:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT column_name, is_nullable = 'NO' AND column_default IS NULL FROM information_schema.columns "
            "WHERE table_name = 'usage_usagerecord' AND table_schema = current_schema()"
        )
        table_columns = dict(cur.fetchall())
    missing = [c for c, required in table_columns.items() if required and c not in COLUMN_SQL and c != "id"]
    if missing:
        raise SystemExit(f"usage_usagerecord has required columns this fill does not know: {missing}")
    columns = [c for c in COLUMN_SQL if c in table_columns]
    sql = FILL_SQL.format(columns=", ".join(columns), values=", ".join(COLUMN_SQL[c] for c in columns))
    params = {
        "org": org.pk,
        "providers": [m[0] for m in MODELS],
        "models": [m[1] for m in MODELS],
        "rate_in": [Decimal(m[2]) if m[2] else None for m in MODELS],
        "rate_out": [Decimal(m[3]) if m[3] else None for m in MODELS],
        "teams": team_ids,
        "features": list(FEATURES),
        "customers": N_CUSTOMERS,
        "tz": TZ,
        "start": start,
        "step": (end - start).total_seconds() / rows,
    }
    t0 = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("SELECT setseed(0.42)")
        for lo in range(1, rows + 1, CHUNK):
            hi = min(rows, lo + CHUNK - 1)
            cur.execute(sql, {**params, "lo": lo, "hi": hi})
            print(f"  filled {hi:,} rows ({time.perf_counter() - t0:.0f} s)", flush=True)
    return time.perf_counter() - t0


def prepare(args):
    """The org, its teams and token; the ledger filled and the rollup built unless --reuse finds them."""
    from django.db import connection, transaction

    from apps.orgs.models import Organization, Team
    from apps.orgs.services import api_token_create, org_create, team_create, user_get_or_create
    from apps.usage import ledger
    from apps.usage.models import UsageRecord

    owner = user_get_or_create(email="bench@spendctl.invalid").user
    org = Organization.objects.filter(slug=ORG_SLUG).first()
    today = datetime.now(UTC).date()
    end = today
    start_day = end - timedelta(days=args.days)
    timings = {}
    reuse = args.reuse and org is not None and UsageRecord.objects.filter(org=org).count() == args.rows
    if reuse:
        print(f"reusing the {args.rows:,} rows of org {org.slug}")
        first = UsageRecord.objects.filter(org=org).order_by("day").values_list("day", flat=True).first()
        start_day, end = first, first + timedelta(days=args.days)
    else:
        _common.truncate_ledger()
        Organization.objects.filter(slug=ORG_SLUG).delete()
        org = org_create(name="Bench spend", slug=ORG_SLUG, owner=owner, timezone_name=TZ)
        for name in TEAMS:
            team_create(org=org, name=name)
        team_ids = list(Team.objects.for_org(org).order_by("name").values_list("id", flat=True))
        # start at org-local midnight so the days are whole
        import zoneinfo

        tz = zoneinfo.ZoneInfo(TZ)
        start, stop = (datetime.combine(d, datetime.min.time(), tz) for d in (start_day, end))
        print(f"filling {args.rows:,} rows over {args.days} days from {start_day} …")
        timings["fill"] = fill(org, team_ids, args.rows, start, stop)
        t0 = time.perf_counter()
        with transaction.atomic():
            groups = ledger.rollups_rebuild(org.pk, start_day, end)
        timings["rollup"] = time.perf_counter() - t0
        print(f"rollup: {groups:,} rows built with rollups_rebuild in {timings['rollup']:.0f} s")
    t0 = time.perf_counter()
    with connection.cursor() as cur:
        for table in [UsageRecord._meta.db_table, *(m._meta.db_table for m, _k in _common.rollups())]:
            cur.execute(f"VACUUM (ANALYZE) {table}")
    timings["vacuum"] = time.perf_counter() - t0
    _token, plaintext = api_token_create(org=org, name="bench spend", scopes=["read"], created_by=owner)
    return org, plaintext, start_day, end, timings


def check_rollup(org) -> dict:
    """Totals of every rollup the ledger keeps equal the raw ledger's (rows, cost, requests, output tokens)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*), SUM(cost), SUM(requests), SUM(output_tokens) FROM usage_usagerecord WHERE org_id = %s",
            [org.pk],
        )
        raw = cur.fetchone()
        tables = []
        for model, _key in _common.rollups():
            table = model._meta.db_table
            cur.execute(
                f"SELECT SUM(records), SUM(cost), SUM(requests), SUM(output_tokens), COUNT(*) FROM {table} "
                "WHERE org_id = %s",
                [org.pk],
            )
            *rolled, rows = cur.fetchone()
            tables.append({"table": table, "rows": rows, "ok": tuple(raw) == tuple(rolled)})
    ok = all(t["ok"] for t in tables)
    text = "; ".join(
        f"`{t['table']}` {t['rows']:,} rows, totals {'equal' if t['ok'] else 'DIFFER'}" for t in tables
    )
    return {"raw": raw, "tables": tables, "ok": ok, "text": text}


def summary(ms: list[float]) -> dict:
    s = sorted(ms)
    return {
        "n": len(s),
        "p50": _common.percentile(s, 50),
        "p95": _common.percentile(s, 95),
        "p99": _common.percentile(s, 99),
        "max": s[-1],
    }


def time_test_client(path: str, plaintext: str, n: int, warmup: int = 5):
    from django.db import connection
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    captured = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        response = client.get(path)
    assert response.status_code == 200, (response.status_code, response.content[:500])
    body = json.loads(response.content)
    for _ in range(warmup):
        client.get(path)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    ms, cpu, db_cpu = [], [], []
    for _ in range(n):
        c0, d0 = time.process_time(), _backend_cpu(backend)
        t0 = time.perf_counter()
        response = client.get(path)
        ms.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
        db_cpu.append((_backend_cpu(backend) - d0) * 1000)
        assert response.status_code == 200, response.status_code
    result = summary(ms)
    # CPU per request is far less disturbed by other load on the machine than wall-clock time
    result["cpu_mean"], result["db_cpu_mean"] = sum(cpu) / n, sum(db_cpu) / n
    return result, body, captured, len(response.content)


def _backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the PostgreSQL backend serving a connection (/proc, clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_sql(sql: str, params, n: int) -> dict:
    from django.db import connection

    ms = []
    with connection.cursor() as cur:
        for _ in range(n):
            t0 = time.perf_counter()
            cur.execute(sql, params)
            if cur.description is not None:
                cur.fetchall()
            ms.append((time.perf_counter() - t0) * 1000)
    return summary(ms)


def time_live(path: str, plaintext: str, n: int, database_url: str, warmup: int = 5) -> dict:
    """gunicorn, 2 sync workers, on loopback; one client, sequential requests (a new connection each)."""
    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "DATABASE_URL": database_url}
    proc = subprocess.Popen(
        [
            str(_common.ROOT / ".venv" / "bin" / "gunicorn"),
            "spendctl.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--worker-class",
            "sync",
            "--log-level",
            "warning",
        ],
        cwd=_common.ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120  # a loaded machine starts Django slowly
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit("gunicorn did not start") from None
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {plaintext}", "Host": "127.0.0.1"}

        def get():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            data = response.read()
            conn.close()
            assert response.status == 200, (response.status, data[:300])

        for _ in range(warmup):
            get()
        ms = []
        for _ in range(n):
            t0 = time.perf_counter()
            get()
            ms.append((time.perf_counter() - t0) * 1000)
        return summary(ms)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def time_pieces(org, path: str, n: int) -> dict:
    """The view's parts in process: spend_by (its SQL and the Python fold), format_spend, unpriced_summary, JSON."""
    from django.http import QueryDict
    from rest_framework.renderers import JSONRenderer

    from apps.usage import selectors
    from apps.usage.queries import parse_spend_query

    query = parse_spend_query(org, QueryDict(path.split("?", 1)[1]))
    out = {k: [] for k in ("spend_by", "format_spend", "unpriced_summary", "json_render")}
    for _ in range(n):
        t0 = time.perf_counter()
        result = selectors.spend_by(org=org, query=query)
        t1 = time.perf_counter()
        formatted = selectors.format_spend(result)
        t2 = time.perf_counter()
        unpriced = selectors.unpriced_summary(org=org, start=query.start, end=query.end)
        t3 = time.perf_counter()
        JSONRenderer().render({**formatted, "unpriced": unpriced, "start": query.start, "end": query.end})
        t4 = time.perf_counter()
        for key, (a, b) in zip(out, ((t0, t1), (t1, t2), (t2, t3), (t3, t4)), strict=True):
            out[key].append((b - a) * 1000)
    return {k: summary(v) for k, v in out.items()}


WHAT_IF_COARSE = """
CREATE TEMP TABLE bench_rollup_coarse AS
SELECT org_id, day, team_id, provider, model, SUM(records) AS records, SUM(requests) AS requests,
       SUM(uncached_input_tokens) AS uncached_input_tokens, SUM(cache_read_tokens) AS cache_read_tokens,
       SUM(cache_write_tokens) AS cache_write_tokens, SUM(cache_write_1h_tokens) AS cache_write_1h_tokens,
       SUM(output_tokens) AS output_tokens, SUM(reasoning_tokens) AS reasoning_tokens,
       SUM(input_audio_tokens) AS input_audio_tokens, SUM(output_audio_tokens) AS output_audio_tokens,
       SUM(cost) AS cost, SUM(unpriced_records) AS unpriced_records, SUM(unpriced_requests) AS unpriced_requests
FROM usage_dailyrollup WHERE org_id = %s GROUP BY org_id, day, team_id, provider, model
"""
WHAT_IF_QUERIES = (
    (
        "what-if (not app code): the same aggregation from a (day, team, provider, model) rollup",
        "SELECT day, model, SUM(cost), SUM(requests), SUM(uncached_input_tokens), SUM(cache_read_tokens), "
        "SUM(cache_write_tokens), SUM(cache_write_1h_tokens), SUM(output_tokens), SUM(reasoning_tokens), "
        "SUM(input_audio_tokens), SUM(output_audio_tokens), SUM(unpriced_requests) FROM bench_rollup_coarse "
        "WHERE org_id = %s AND day >= %s AND day < %s GROUP BY day, model",
    ),
    (
        "what-if (not app code): the unpriced summary from that rollup",
        "SELECT provider, model, SUM(unpriced_records), SUM(unpriced_requests) FROM bench_rollup_coarse "
        "WHERE org_id = %s AND day >= %s AND day < %s AND unpriced_records > 0 GROUP BY provider, model",
    ),
    (
        "what-if (not app code): the unpriced summary from the daily rollup",
        "SELECT provider, model, SUM(unpriced_records), SUM(unpriced_requests) FROM usage_dailyrollup "
        "WHERE org_id = %s AND day >= %s AND day < %s AND unpriced_records > 0 GROUP BY provider, model",
    ),
)


def time_what_ifs(org, start_day, end, n: int) -> list[tuple[str, dict]]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_rollup_coarse")
        cur.execute(WHAT_IF_COARSE, [org.pk])
        cur.execute("CREATE INDEX ON bench_rollup_coarse (org_id, day, model)")
        cur.execute("ANALYZE bench_rollup_coarse")
        cur.execute("SELECT COUNT(*) FROM bench_rollup_coarse")
        rows = cur.fetchone()[0]
    out = [
        (
            label.replace("rollup", f"rollup ({rows:,} rows)", 1) if i == 0 else label,
            time_sql(sql, [org.pk, start_day, end], n),
        )
        for i, (label, sql) in enumerate(WHAT_IF_QUERIES)
    ]
    with connection.cursor() as cur:
        cur.execute("DROP TABLE bench_rollup_coarse")
    return out


RAW_SQL = """
SELECT day, model, SUM(cost), SUM(requests), SUM(uncached_input_tokens), SUM(cache_read_tokens),
       SUM(cache_write_tokens), SUM(cache_write_1h_tokens), SUM(output_tokens), SUM(reasoning_tokens),
       SUM(input_audio_tokens), SUM(output_audio_tokens), SUM(requests) FILTER (WHERE cost_basis = 'unpriced')
FROM usage_usagerecord
WHERE org_id = %s AND day >= %s AND day < %s
GROUP BY day, model
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--raw-requests", type=int, default=20, help="the raw aggregation takes seconds each")
    parser.add_argument("--live", action="store_true", help="also time the API through gunicorn on loopback")
    parser.add_argument("--reuse", action="store_true", help="keep a previous fill of the same size")
    parser.add_argument(
        "--what-if", action="store_true", help="also time the same answers from a coarser (scratch) rollup"
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--name", default="spend", help="results file: bench/results/<name>.md")
    args = parser.parse_args()

    os.environ.setdefault("API_RATE_LIMIT", "100000/min")  # the throttle still runs, it just never refuses
    _common.ensure_database(args.database_url)
    _common.setup_django(args.database_url)
    _common.migrate()
    load_start = os.getloadavg()[0]

    org, plaintext, start_day, end, timings = prepare(args)
    check = check_rollup(org)
    print(
        f"rollup check: {'OK' if check['ok'] else 'MISMATCH'} — {check['text']}; "
        f"ledger (rows, cost, requests, output) = {check['raw']}"
    )
    path = f"/api/v1/spend?start={start_day}&end={end}&group_by=day,model"
    print(f"GET {path} × {args.requests}")
    api, body, captured, size = time_test_client(path, plaintext, args.requests)
    api_total = Decimal(body["totals"]["cost"])
    raw_total = check["raw"][1].quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    print(
        f"  {len(body['groups']):,} groups, {size / 1024:.0f} KiB; API total cost {api_total} vs ledger {raw_total}; "
        f"test client p50 {api['p50']:.1f} ms, p95 {api['p95']:.1f} ms, p99 {api['p99']:.1f} ms; CPU per request "
        f"(mean): Django process {api['cpu_mean']:.1f} ms, PostgreSQL backend {api['db_cpu_mean']:.1f} ms"
    )
    statements = []
    for sql, params in captured:
        s = time_sql(sql, params, args.requests)
        first = " ".join(sql.split())[:90]
        statements.append((first, s))
        print(f"  SQL p50 {s['p50']:.2f} ms, p95 {s['p95']:.2f} ms: {first}…")
    pieces = time_pieces(org, path, args.requests)
    for key, s in pieces.items():
        print(f"  in process: {key} p50 {s['p50']:.1f} ms, p95 {s['p95']:.1f} ms")
    live = None
    if args.live:
        live = time_live(path, plaintext, args.requests, args.database_url)
        print(f"  gunicorn p50 {live['p50']:.1f} ms, p95 {live['p95']:.1f} ms, p99 {live['p99']:.1f} ms")
    what_ifs = time_what_ifs(org, start_day, end, args.requests) if args.what_if else []
    for label, s in what_ifs:
        print(f"  {label}: p50 {s['p50']:.2f} ms, p95 {s['p95']:.2f} ms")
    print(f"raw aggregation × {args.raw_requests} …")
    raw = time_sql(RAW_SQL, [org.pk, start_day, end], args.raw_requests)
    print(f"  raw p50 {raw['p50']:.0f} ms, p95 {raw['p95']:.0f} ms, p99 {raw['p99']:.0f} ms")
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + RAW_SQL, [org.pk, start_day, end])
        raw_plan = "\n".join(r[0] for r in cur.fetchall())
        rollup_sql, rollup_params = next(
            ((s, p) for s, p in captured if "rollup" in s and "GROUP BY" in s), (None, None)
        )
        rollup_plan = ""
        if rollup_sql:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + rollup_sql, rollup_params)
            rollup_plan = "\n".join(r[0] for r in cur.fetchall())

    def row(label, s):
        return [label, s["n"], f"{s['p50']:.1f}", f"{s['p95']:.1f}", f"{s['p99']:.1f}"]

    rows = [row("`GET /api/v1/spend` (rollup), Django test client", api)]
    if live:
        rows.append(row("`GET /api/v1/spend` (rollup), gunicorn 2 sync workers, loopback HTTP", live))
    for first, s in statements:
        rows.append(row(f"… SQL, timed alone: `{first[:60]}…`", s))
    for key, s in pieces.items():
        rows.append(row(f"… in process, timed alone: `{key}`", s))
    rows.append(row("raw ledger: `SELECT day, model, SUM(cost), … GROUP BY day, model`", raw))
    for label, s in what_ifs:
        rows.append(row(label, s))
    table = _common.markdown_table(
        ["query, 90 days grouped by day, model", "n", "p50 ms", "p95 ms", "p99 ms"], rows
    )
    text = "\n\n".join(
        [
            f"### Spend: {args.rows:,} ledger rows, one org, {args.days} days — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            table,
            f"Rollups (built by `rollups_rebuild`), totals checked against the ledger: "
            f"**{'OK' if check['ok'] else 'MISMATCH'}** — {check['text']} (ledger rows {check['raw'][0]:,}, "
            f"cost {check['raw'][1]}). "
            f"Response: {len(body['groups']):,} groups, {size / 1024:.0f} KiB, total cost {api_total} "
            f"(ledger {raw_total}). p99 of {args.raw_requests} raw runs is their maximum. CPU per request through the "
            f"test client (mean): Django process {api['cpu_mean']:.1f} ms, PostgreSQL backend "
            f"{api['db_cpu_mean']:.1f} ms (the backend's from /proc in 10 ms clock ticks: a mean of coarse samples).",
            ("Set-up: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ". ") if timings else "",
            f"Load average (1 min) at the start {load_start:.2f}, at the end {os.getloadavg()[0]:.2f}.",
        ]
    )
    print()
    print(text)
    print("\nraw plan:\n" + raw_plan + "\n\nrollup plan:\n" + rollup_plan)
    out = _common.write_result(args.name, text + "\n\n```\n" + raw_plan + "\n\n" + rollup_plan + "\n```")
    print(f"\nwritten to {out.relative_to(_common.ROOT)}")
    if not check["ok"] or api_total != raw_total:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
