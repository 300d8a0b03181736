"""Fault: the Celery worker running a provider sync is SIGKILLed in the middle of the run, twice.

Real processes on loopback: a fake OpenAI Administration API (slow pages, one daily bucket per page) and a real
`celery worker` (prefork) on a private Redis broker. First only the pool process dies (the worker re-queues the task:
acks_late + reject_on_worker_lost); later the whole worker dies with its broker connection, and the stalled-run
recovery of the hourly beat task (`runs_stalled`) hands the run to a new worker. Each time the run resumes from the
cursor committed with its last page: no page committed twice, none skipped, the ledger's per-day totals equal the
provider's pages exactly.
"""

import os
import signal
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.connectors import services
from apps.connectors.models import SyncRun
from apps.usage.models import UsageRecord
from tests.factories import OrganizationFactory
from tests.faults import procs
from tests.faults.conftest import needs_servers
from tests.faults.fake_openai import COSTS_PATH, USAGE_PATH, FakeOpenAI, expected_by_day
from tests.faults.syncing import (
    SyncHarness,
    assert_rollup_equals_ledger,
    connection_for,
    ledger_by_day,
    utc_days,
)

pytestmark = [pytest.mark.faults, needs_servers, pytest.mark.django_db(transaction=True)]
DAYS = 10  # two chunks (7 + 3 days); one usage page and one cost page per day: 20 pages


def pages_committed(run) -> int:
    return SyncRun.objects.values_list("pages", flat=True).get(pk=run.pk)


def test_a_sync_whose_worker_is_killed_resumes_from_its_cursor_with_exact_totals(
    private_redis, started, counter_prefix
):
    org = OrganizationFactory(timezone="UTC")
    fake = started(FakeOpenAI(delay=0.2))
    connection = connection_for(org, fake)
    first, stop = utc_days(DAYS + 1, DAYS)
    run = services.run_create(connection=connection, kind=SyncRun.BACKFILL, start=first, end=stop)
    sync = started(SyncHarness(private_redis, counter_prefix))

    worker = sync.worker()
    sync.enqueue(run)
    procs.wait_until(lambda: pages_committed(run) >= 3, timeout=90, what="3 pages committed")
    # 1. The pool process dies mid-run (OOM killer, segfault): the worker re-queues the task and a new pool
    #    process resumes the run.
    children = procs.wait_until(worker.pool_pids, timeout=10, what="the worker's pool process")
    os.kill(children[0], signal.SIGKILL)
    at_first_kill = pages_committed(run)
    procs.wait_until(
        lambda: pages_committed(run) >= at_first_kill + 4, timeout=90, what="progress after the kill"
    )
    # 2. The whole worker dies (the machine is lost): its task stays unacknowledged at the broker.
    worker.process.kill()
    at_second_kill = run_pages = pages_committed(run)
    assert at_second_kill < 2 * DAYS, "the run finished before the worker could be killed: slow the fake down"
    assert SyncRun.objects.get(pk=run.pk).status == SyncRun.RUNNING
    # Nothing moves while no worker runs; then the hourly recovery finds the run (no heartbeat for 30 minutes)
    # and a new worker takes it.
    assert services.runs_stalled() == []
    found = services.runs_stalled(now=timezone.now() + timedelta(minutes=31))
    assert [r.pk for r in found] == [run.pk]
    assert pages_committed(run) == run_pages
    sync.worker()
    sync.enqueue(found[0])
    procs.wait_until(
        lambda: SyncRun.objects.get(pk=run.pk).status == SyncRun.SUCCEEDED,
        timeout=120,
        what="the run to finish",
    )

    run.refresh_from_db()
    assert run.attempts == 3 and run.error == ""
    assert run.pages == 2 * DAYS  # every page committed exactly once
    # Per UTC day, exactly what the provider's pages say: no day missing, none counted twice.
    assert ledger_by_day(connection) == expected_by_day(first, stop)
    assert UsageRecord.objects.filter(org=org).count() == run.records_added == DAYS * 4
    assert_rollup_equals_ledger(org)
    # Resumed from the cursor: apart from the page in flight at each kill, no page was requested twice.
    requests = [(path, start, offset) for path, start, offset, _ in fake.requests()]
    assert {p for p, _, _ in requests} == {USAGE_PATH, COSTS_PATH}
    assert len(set(requests)) == 2 * DAYS
    assert len(requests) - len(set(requests)) <= 2, requests
