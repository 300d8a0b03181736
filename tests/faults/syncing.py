"""Shared by the sync fault tests: a fake OpenAI, a real Celery worker on a private broker, ledger totals per day."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from celery import Celery
from django.db.models import Sum

from apps.connectors import services
from apps.connectors.models import ProviderCostRecord, SyncRun
from apps.usage.models import DailyModelRollup, UsageRecord
from tests.faults import procs
from tests.faults.conftest import database_url
from tests.faults.fake_openai import API_KEY

CLIENT_OPTIONS = {"openai": {"usage_page_limit": 1, "cost_page_limit": 1, "usage_endpoints": ["completions"]}}
HTTP_SETTINGS = {
    "connect_timeout": 2,
    "read_timeout": 10,
    "max_attempts": 2,
    "backoff_base": 0.05,
    "backoff_max": 0.2,
}


class SyncHarness:
    """One private queue on a private Redis broker; workers are started (and killed) by the test."""

    def __init__(self, redis, counter_prefix: str, **env: str):
        self.queue = f"faults-{uuid.uuid4().hex[:8]}"
        self.env = procs.app_env(
            database_url=database_url(),
            redis_url=redis.url,
            counter_prefix=counter_prefix,
            FAULTS_CLIENT_OPTIONS=json.dumps(CLIENT_OPTIONS),
            FAULTS_HTTP_SETTINGS=json.dumps(HTTP_SETTINGS),
            LOG_LEVEL="INFO",
            **env,
        )
        self.sender = Celery("faults-sender", broker=redis.url, set_as_current=False)
        self.workers: list[procs.CeleryWorker] = []

    def worker(self) -> procs.CeleryWorker:
        w = procs.CeleryWorker(self.env, queue=self.queue, name=f"{self.queue}-{len(self.workers)}")
        self.workers.append(w)
        return w

    def enqueue(self, run: SyncRun) -> None:
        """What the API's "sync now" and the hourly beat task do: connectors.sync_run(run id) on a worker."""
        self.sender.send_task("connectors.sync_run", args=[run.pk], queue=self.queue)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        self.sender.close()


def connection_for(org, fake, label: str = "OpenAI"):
    return services.connection_create(
        org=org, provider="openai", label=label, api_key=API_KEY, base_url=fake.url, test=False
    )


def utc_days(n_back: int, n_days: int) -> tuple[date, date]:
    today = datetime.now(UTC).date()
    first = today - timedelta(days=n_back)
    return first, first + timedelta(days=n_days)


def run_status(run: SyncRun) -> SyncRun:
    return SyncRun.objects.get(pk=run.pk)


def ledger_by_day(connection) -> dict[date, dict]:
    """Per UTC day, what the ledger and the cost records hold for this connection."""
    out: dict[date, dict] = defaultdict(dict)
    rows = (
        UsageRecord.objects.filter(connection_id=connection.pk)
        .values("day")
        .annotate(
            requests=Sum("requests"),
            uncached=Sum("uncached_input_tokens"),
            cache_read_tokens=Sum("cache_read_tokens"),
            output_tokens=Sum("output_tokens"),
        )
    )
    for r in rows:
        out[r["day"]].update(
            requests=r["requests"],
            input_tokens=r["uncached"] + r["cache_read_tokens"],
            cache_read_tokens=r["cache_read_tokens"],
            output_tokens=r["output_tokens"],
            rows=UsageRecord.objects.filter(connection_id=connection.pk, day=r["day"]).count(),
        )
    for day, cost in (
        ProviderCostRecord.objects.filter(connection=connection)
        .values("day")
        .annotate(s=Sum("amount"))
        .values_list("day", "s")
    ):
        out[day]["cost"] = cost
    return dict(out)


def assert_rollup_equals_ledger(org) -> None:
    ledger = dict(
        UsageRecord.objects.filter(org=org)
        .values("day")
        .annotate(s=Sum("output_tokens"))
        .values_list("day", "s")
    )
    rolled = dict(
        DailyModelRollup.objects.filter(org=org)
        .values("day")
        .annotate(s=Sum("output_tokens"))
        .values_list("day", "s")
    )
    assert rolled == ledger
    ledger_cost = UsageRecord.objects.filter(org=org).aggregate(s=Sum("cost"))["s"]
    assert DailyModelRollup.objects.filter(org=org).aggregate(s=Sum("cost"))["s"] == ledger_cost
