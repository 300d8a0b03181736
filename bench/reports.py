"""Monthly reports for many orgs: generated and e-mailed by 2 Celery workers, the way the beat does it.

    .venv/bin/python bench/reports.py --orgs 1000

1. Data (PostgreSQL, COPY): N orgs, each with 4 teams, an owner who gets the report, and two months of usage
   (September and October 2026; the report compares October with September): one ledger record per org-local day,
   team, model and feature (daily provider buckets, 8 a day per org) and the two daily rollups that the ingest path
   keeps, written from the same rows. So 1,000 orgs = 488,000 ledger records and as many rollup rows.
2. Per report, in this process (warm, sequential, 20 orgs): the time to build the report (all sections from the
   rollups) and the time to render and serialise the e-mail (HTML, text, 3 chart PNGs, CSV, MIME bytes).
3. Celery: `celery -A spendctl worker -c 2 --pool prefork` on Redis (db REDIS_DB); this process enqueues
   `reports.generate_and_dispatch` for every org, which builds the report and enqueues `reports.deliver` for its
   recipient, which sends it over SMTP to a sink on loopback (aiosmtpd, in this process). The clock stops when every
   delivery row is `sent`. Peak memory: VmHWM of each pool process at the end.

The database is emptied first (it is a scratch database: spendctl_reports by default).
"""

import argparse
import io
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import _common  # noqa: E402

ROOT = _common.ROOT
CELERY = str(ROOT / ".venv" / "bin" / "celery")
MONTH, PREV = date(2026, 10, 1), date(2026, 9, 1)
TEAMS = ["Support", "Search", "Growth", "Platform"]
# (team index, provider, model, feature, tokens per day, cost per 1k tokens)
WORKLOADS = [
    (0, "anthropic", "claude-sonnet-4-5", "support-copilot", 400_000, "0.0060"),
    (0, "openai", "gpt-4o-mini", "ticket-triage", 900_000, "0.0002"),
    (1, "openai", "text-embedding-3-small", "semantic-search", 5_000_000, "0.00002"),
    (1, "openai", "gpt-5-mini", "semantic-search", 600_000, "0.0006"),
    (2, "anthropic", "claude-haiku-4-5", "email-drafts", 500_000, "0.0015"),
    (2, "openai", "gpt-4.1", "email-drafts", 200_000, "0.0030"),
    (3, "anthropic", "claude-sonnet-4-5", "evals", 150_000, "0.0060"),
    (3, "openai", "gpt-4.1", "evals", 100_000, "0.0030"),
]


def log(msg: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def days(start: date, end: date):
    d = start
    while d < end:
        yield d
        d += timedelta(days=1)


def reset():
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE reports_reportdelivery, reports_monthlyreport, reports_reportsubscription, "
            "reports_reportsettings, usage_usagerecord, usage_dailyrollup, usage_dailymodelrollup, "
            "orgs_membership, orgs_team, orgs_organization, auth_user RESTART IDENTITY CASCADE"
        )


def load(n_orgs: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from apps.orgs.models import Membership, Organization, Team

    t0 = time.monotonic()
    with transaction.atomic():
        orgs = Organization.objects.bulk_create(
            [
                Organization(
                    name=f"Bench {i}", slug=f"bench-{i}", timezone=random.choice(["UTC", "Europe/Paris"])
                )
                for i in range(n_orgs)
            ],
            batch_size=1000,
        )
        users = get_user_model().objects.bulk_create(
            [
                get_user_model()(username=f"owner{i}@bench.test", email=f"owner{i}@bench.test")
                for i in range(n_orgs)
            ],
            batch_size=1000,
        )
        Membership.objects.bulk_create(
            [Membership(org=o, user=u, role="owner") for o, u in zip(orgs, users, strict=True)],
            batch_size=1000,
        )
        teams = Team.objects.bulk_create([Team(org=o, name=t) for o in orgs for t in TEAMS], batch_size=2000)
    team_ids = {(t.org_id, t.name): t.pk for t in teams}
    rng = random.Random(6)
    ledger, rollup, model_rollup = io.StringIO(), io.StringIO(), io.StringIO()
    rows = 0
    for org in orgs:
        scale = Decimal(rng.randint(20, 300)) / 100
        growth = Decimal(rng.randint(80, 140)) / 100
        per_model: dict = {}
        for day in days(PREV, date(2026, 11, 1)):
            month_factor = growth if day >= MONTH else Decimal(1)
            weekday = Decimal("0.5") if day.weekday() >= 5 else Decimal(1)
            for i, (team, provider, model, feature, tokens, per_k) in enumerate(WORKLOADS):
                t = int(tokens * scale * month_factor * weekday * Decimal(rng.randint(85, 115)) / 100)
                price = Decimal(per_k) * (Decimal("0.9") if (i == 0 and day >= MONTH) else 1)  # a discount
                cost = (Decimal(t) / 1000 * price).quantize(Decimal("0.0000000001"))
                team_id = team_ids[(org.pk, TEAMS[team])]
                inp, out = t * 9 // 10, t - t * 9 // 10
                start = f"{day.isoformat()} 00:00:00+00"
                ledger.write(
                    f"{org.pk}\tprovider\tb-{org.pk}-{day}-{i}\t{provider}\t{model}\t{model}\t{team_id}\trule\t"
                    f"{feature}\t\t\t\t\t{{}}\t{start}\t{day}\t86400\tstandard\t\t1000\t{inp}\t0\t0\t0\t{out}\t0\t0\t0\t"
                    f"{cost}\tUSD\treported\t{cost}\t\t{start}\n"
                )
                rollup.write(
                    f"{org.pk}\t{day}\t{team_id}\t{provider}\t{model}\t{feature}\t\t1\t1000\t{inp}\t0\t0\t0\t{out}\t"
                    f"0\t0\t0\t{cost}\t0\t{cost}\t0\t0\n"
                )
                key = (day, provider, model)
                acc = per_model.setdefault(key, [0, 0, 0, Decimal(0)])
                acc[0] += 1
                acc[1] += inp
                acc[2] += out
                acc[3] += cost
                rows += 1
        for (day, provider, model), (n, inp, out, cost) in per_model.items():
            model_rollup.write(
                f"{org.pk}\t{day}\t{provider}\t{model}\t{n}\t{n * 1000}\t{inp}\t0\t0\t0\t{out}\t0\t0\t0\t{cost}\t0\t"
                f"{cost}\t0\t0\n"
            )
    sums = (
        "records, requests, uncached_input_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, "
        "output_tokens, reasoning_tokens, input_audio_tokens, output_audio_tokens, cost, computed_cost, "
        "reported_cost, unpriced_records, unpriced_requests"
    )
    copies = [
        (
            "COPY usage_usagerecord (org_id, source, key, provider, model, model_raw, team_id, team_source, feature, "
            "task_id, customer, end_user, environment, tags, start_time, day, bucket_seconds, service_tier, "
            "context_window, requests, uncached_input_tokens, cache_read_tokens, cache_write_tokens, "
            "cache_write_1h_tokens, output_tokens, reasoning_tokens, input_audio_tokens, output_audio_tokens, cost, "
            "currency, cost_basis, reported_cost, price_ref, created_at) FROM STDIN",
            ledger,
        ),
        (
            f"COPY usage_dailyrollup (org_id, day, team_id, provider, model, feature, customer, {sums}) FROM STDIN",
            rollup,
        ),
        (f"COPY usage_dailymodelrollup (org_id, day, provider, model, {sums}) FROM STDIN", model_rollup),
    ]
    with transaction.atomic(), connection.cursor() as cur:
        for sql, buf in copies:
            with cur.copy(sql) as copy:
                copy.write(buf.getvalue())
    with connection.cursor() as cur:
        cur.execute("ANALYZE usage_usagerecord; ANALYZE usage_dailyrollup; ANALYZE usage_dailymodelrollup")
    return {"orgs": n_orgs, "ledger_rows": rows, "seconds": time.monotonic() - t0}


def sample(n: int) -> dict:
    """Sequential, warm, in this process: build and render/serialise times per report."""
    from apps.orgs.models import Organization
    from apps.reports import services
    from apps.reports.rendering import build_message

    orgs = list(Organization.objects.order_by("pk")[: n + 1])
    build, render = [], []
    for i, org in enumerate(orgs):
        t0 = time.perf_counter()
        report = services.report_generate(org=org, month=MONTH, regenerate=True)
        t1 = time.perf_counter()
        build_message(report, to="x@bench.test", unsubscribe_url="https://x.test/u").message().as_bytes()
        t2 = time.perf_counter()
        if i:  # the first one pays imports and font loading
            build.append(t1 - t0)
            render.append(t2 - t1)
    from apps.reports.models import MonthlyReport

    MonthlyReport.objects.all().delete()  # the Celery phase starts from nothing
    q = statistics.quantiles
    return {
        "build_p50": statistics.median(build),
        "build_p95": q(build, n=20)[-1] if len(build) > 1 else build[0],
        "render_p50": statistics.median(render),
        "render_p95": q(render, n=20)[-1] if len(render) > 1 else render[0],
    }


def child_pids(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


def vm_hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Sink:
    def __init__(self):
        self.count = 0
        self.bytes = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        self.bytes += len(envelope.content)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def celery_phase(args, n_orgs: int) -> dict:
    from aiosmtpd.controller import Controller

    from apps.orgs.models import Organization
    from apps.reports.models import ReportDelivery
    from apps.reports.tasks import report_generate_and_dispatch
    from spendctl.celery import app

    app.control.purge()  # leftovers of an interrupted run, in our own Redis database
    sink = Sink()
    smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtp.start()
    env = dict(os.environ)
    env.update(
        {
            "REDIS_URL": args.redis_url,
            "DATABASE_URL": args.database_url,
            "EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}",
            "PYTHONPATH": str(ROOT),
        }
    )
    log_path = _common.RESULTS / "reports-worker.log"
    _common.RESULTS.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log_file:
        worker = subprocess.Popen(
            [CELERY, "-A", "spendctl", "worker", "-c", str(args.concurrency), "--pool", "prefork"]
            + ["--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while len(child_pids(worker.pid)) < args.concurrency and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(2)
            pool = child_pids(worker.pid)
            log(f"worker {worker.pid} up, pool {pool}; enqueueing {n_orgs} orgs")
            t0 = time.monotonic()
            for org_id in Organization.objects.order_by("pk").values_list("pk", flat=True):
                report_generate_and_dispatch.delay(org_id, MONTH.isoformat())
            sent = failed = 0
            while time.monotonic() - t0 < args.timeout:
                sent = ReportDelivery.objects.filter(status="sent").count()
                failed = ReportDelivery.objects.filter(status="failed").count()
                if sent + failed >= n_orgs:
                    break
                if worker.poll() is not None:
                    raise SystemExit(f"the worker exited (log: {log_path})")
                time.sleep(1)
            wall = time.monotonic() - t0
            peaks = [vm_hwm_mb(p) for p in pool]
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
            smtp.stop()
    return {
        "wall": wall,
        "sent": sent,
        "failed": failed,
        "received": sink.count,
        "mean_bytes": sink.bytes / max(sink.count, 1),
        "peaks": peaks,
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--sample", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/spendctl_reports"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/1"))
    args = parser.parse_args()
    os.environ["REDIS_URL"] = args.redis_url
    os.environ.setdefault("EMAIL_URL", "dummymail://")
    _common.ensure_database(args.database_url)
    _common.setup_django(args.database_url)
    _common.migrate()
    reset()
    data = load(args.orgs)
    log(f"loaded {data['orgs']} orgs, {data['ledger_rows']:,} ledger records in {data['seconds']:.1f}s")
    per = sample(min(args.sample, args.orgs - 1))
    log(
        f"per report: build p50 {per['build_p50'] * 1000:.0f} ms, render+MIME p50 {per['render_p50'] * 1000:.0f} ms"
    )
    run = celery_phase(args, args.orgs)
    throughput = run["sent"] / run["wall"]
    table = [
        "| orgs | ledger records | workers | total | per report (2 workers) | build p50 / p95 | render+MIME p50 / p95 "
        "| peak RSS per worker | sent / failed | e-mail size |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {args.orgs:,} | {data['ledger_rows']:,} | {args.concurrency} prefork | {run['wall']:.0f} s | "
        f"{run['wall'] / max(run['sent'], 1) * 1000:.0f} ms ({throughput:.1f}/s) | "
        f"{per['build_p50'] * 1000:.0f} / {per['build_p95'] * 1000:.0f} ms | "
        f"{per['render_p50'] * 1000:.0f} / {per['render_p95'] * 1000:.0f} ms | "
        f"{' / '.join(f'{p:.0f}' for p in run['peaks'])} MB | {run['sent']} / {run['failed']} "
        f"(SMTP sink got {run['received']}) | {run['mean_bytes'] / 1024:.0f} KB |",
    ]
    out = "\n".join(table)
    print(out)
    (_common.RESULTS / "reports.md").write_text(out + "\n")


if __name__ == "__main__":
    main()
