"""Fault: the provider answers a truncated page, an HTML page with 200, or a proxy's HTML 502.

The in-process tests (tests/connectors/test_sync.py) already show, with Celery eager, that a malformed page keeps what
came before and that the retry resumes from the cursor. Eager mode ignores the retry countdown, so they cannot show
the run waiting in "retrying" with a readable error while a real worker holds the retry back, nor a 502 HTML page
from a proxy going through the client's retries and then the task's. This test does, with a real `celery worker`
and a fake OpenAI on loopback; then a run whose page stays malformed fails visibly after its retries, keeps its
committed pages, and a later run completes with exact per-day totals.
"""

import pytest

from apps.connectors import services
from apps.connectors.models import ProviderConnection, SyncRun
from apps.usage.models import UsageRecord
from tests.factories import OrganizationFactory
from tests.faults import procs
from tests.faults.conftest import needs_servers
from tests.faults.fake_openai import BODY_MARKER, COSTS_PATH, USAGE_PATH, FakeOpenAI, expected_by_day
from tests.faults.syncing import (
    SyncHarness,
    assert_rollup_equals_ledger,
    connection_for,
    ledger_by_day,
    run_status,
    utc_days,
)

pytestmark = [pytest.mark.faults, needs_servers, pytest.mark.django_db(transaction=True)]


def assert_readable(error: str, *words: str) -> None:
    assert error and all(w in error for w in words), error
    assert BODY_MARKER not in error and "<html" not in error.lower() and "{" not in error, error


def test_malformed_pages_fail_visibly_keep_what_came_before_and_are_retried(
    private_redis, started, counter_prefix
):
    org = OrganizationFactory(timezone="UTC")
    fake = started(FakeOpenAI())
    connection = connection_for(org, fake)
    sync = started(
        SyncHarness(
            private_redis,
            counter_prefix,
            FAULTS_BACKOFF_BASE="0.5",
            FAULTS_BACKOFF_MIN="2",  # "retrying" lasts at least 2 s, so the test cannot miss it under load
            FAULTS_MAX_RETRIES="2",
        )
    )
    sync.worker()

    # 1. Transient faults: usage page 3 truncated, then cost page 2 a proxy's HTML 502 on both client attempts.
    #    The fake holds the next request after each fault until the test has looked at the run.
    first, stop = utc_days(6, 5)
    fake.hold_after_fault = True
    fake.add_fault(USAGE_PATH, 2, "truncate")
    fake.add_fault(COSTS_PATH, 1, "html502", "html502")
    run = services.run_create(connection=connection, kind=SyncRun.BACKFILL, start=first, end=stop)
    sync.enqueue(run)

    waiting = procs.wait_until(
        lambda: (r := run_status(run)).status == SyncRun.RETRYING and r,
        timeout=60,
        what="the run to be retrying",
    )
    assert_readable(waiting.error, "Malformed page", "truncated", "what came before it is kept")
    assert (
        waiting.pages == 2 and waiting.cursor
    )  # the two pages before the broken one are committed, with a cursor
    assert sorted(ledger_by_day(connection)) == sorted(expected_by_day(first, stop))[:2]
    connection.refresh_from_db()
    assert connection.status == ProviderConnection.ERROR
    assert_readable(connection.last_error, "Malformed page")
    fake.release()

    procs.wait_until(lambda: fake.faults_served() == 3, timeout=60, what="the proxy's 502 pages")
    waiting = procs.wait_until(
        lambda: (r := run_status(run)).status == SyncRun.RETRYING and "502" in r.error and r,
        timeout=60,
        what="the run to be retrying after the 502s",
    )
    assert_readable(waiting.error, "HTTP 502", "2 attempts")
    assert waiting.pages == 5 + 1  # all usage pages and the first cost page
    fake.release()

    procs.wait_until(
        lambda: run_status(run).status == SyncRun.SUCCEEDED, timeout=60, what="the run to succeed"
    )
    run.refresh_from_db()
    assert run.attempts == 3 and run.error == "" and run.pages == 10
    assert ledger_by_day(connection) == expected_by_day(first, stop)
    connection.refresh_from_db()
    assert connection.status == ProviderConnection.ACTIVE and connection.last_error == ""
    # the broken pages were re-read from their cursor, nothing before them
    usage = [offset for _, _, offset, _ in fake.requests(USAGE_PATH)]
    assert usage == [0, 1, 2, 2, 3, 4], usage

    # 2. A page that stays malformed (an HTML page with status 200): the run fails after its retries, visibly,
    #    keeping the pages before it; the connection says so. Nothing else of the ledger is touched.
    fake.hold_after_fault = False
    earlier_first, earlier_stop = utc_days(13, 5)
    fake.add_fault(USAGE_PATH, 1, *["html200"] * 10)
    failing = services.run_create(
        connection=connection, kind=SyncRun.BACKFILL, start=earlier_first, end=earlier_stop
    )
    sync.enqueue(failing)
    procs.wait_until(lambda: run_status(failing).status == SyncRun.FAILED, timeout=60, what="the run to fail")
    failing.refresh_from_db()
    assert failing.attempts == 3  # the first try and FAULTS_MAX_RETRIES=2 retries
    assert_readable(failing.error, "Malformed page", "not valid JSON", "what came before it is kept")
    assert failing.finished_at is not None and failing.pages == 1
    connection.refresh_from_db()
    assert connection.status == ProviderConnection.ERROR
    assert_readable(connection.last_error, "Malformed page")
    kept = ledger_by_day(connection)
    assert sorted(kept) == [earlier_first, *sorted(expected_by_day(first, stop))]
    assert kept[earlier_first] == {
        k: v for k, v in expected_by_day(earlier_first, earlier_stop)[earlier_first].items() if k != "cost"
    }

    # 3. The provider is fixed; a later run of the same window completes and every day is exact, no duplicates.
    fake.clear_faults()
    later = services.run_create(
        connection=connection, kind=SyncRun.BACKFILL, start=earlier_first, end=earlier_stop
    )
    sync.enqueue(later)
    procs.wait_until(lambda: run_status(later).status == SyncRun.SUCCEEDED, timeout=60, what="the later run")
    assert ledger_by_day(connection) == {
        **expected_by_day(earlier_first, earlier_stop),
        **expected_by_day(first, stop),
    }
    assert UsageRecord.objects.filter(org=org).count() == 10 * 4
    assert_rollup_equals_ledger(org)
    connection.refresh_from_db()
    assert connection.status == ProviderConnection.ACTIVE
