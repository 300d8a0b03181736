"""UsageRecordQuerySet.on_days: a day range on the ledger, also bounded by the start_time range it implies so the
(org, start_time) index serves it (the ledger has no (org, day) index). The result must be exactly the day filter's,
whatever time zone the org had when each row was written."""

import re
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection, transaction

from apps.usage import ledger
from apps.usage.models import UsageRecord
from tests.usage.factories import event, ingest, provider_row

pytestmark = pytest.mark.django_db

FIRST, LAST = datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)


def _events(prefix):
    steps = int((LAST - FIRST) / timedelta(minutes=37))
    return [event(f"{prefix}-{i}", ts=FIRST + i * timedelta(minutes=37)) for i in range(steps)]


@pytest.fixture
def rows_in_every_offset(org):
    # the org's time zone changes between batches: each row keeps the day it was written with (+14, -12, +5:45, UTC)
    for tz in ("Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kathmandu", "UTC"):
        org.timezone = tz
        org.save()
        assert ingest(org, _events(tz)).accepted == len(_events(tz))
    # a provider's daily bucket is booked on its UTC date
    with transaction.atomic():
        ledger.insert_records(
            [
                provider_row(
                    org,
                    f"daily-{d}",
                    start_time=FIRST + timedelta(days=d),
                    day=(FIRST + timedelta(days=d)).date(),
                )
                for d in range(5)
            ]
        )
    return org


def test_on_days_is_exactly_the_day_range_in_every_time_zone(rows_in_every_offset, other_org):
    org = rows_in_every_offset
    base = UsageRecord.objects.for_org(org)
    days = sorted(set(base.values_list("day", flat=True)))
    assert days[0] == date(2026, 11, 15) and days[-1] == date(
        2026, 11, 21
    )  # -12 h and +14 h reach both sides
    edges = [days[0] - timedelta(days=1), *days, days[-1] + timedelta(days=1)]
    for i, start in enumerate(edges):
        for end in edges[i + 1 :]:
            got = set(base.on_days(start, end).values_list("id", flat=True))
            want = set(base.filter(day__gte=start, day__lt=end).values_list("id", flat=True))
            assert got == want, (start, end)
        assert set(base.on_days(start, None).values_list("id", flat=True)) == set(
            base.filter(day__gte=start).values_list("id", flat=True)
        )
        assert set(base.on_days(None, start).values_list("id", flat=True)) == set(
            base.filter(day__lt=start).values_list("id", flat=True)
        )
    assert base.on_days().count() == base.count()
    assert not UsageRecord.objects.for_org(other_org).on_days(days[0], days[-1]).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner")
def test_a_day_range_on_the_ledger_can_use_the_start_time_index(rows_in_every_offset):
    """Without the start_time bounds a day range has no index to use since (org, day) went (but the key's, for the
    org alone); with them the (org, start_time) index answers it."""
    qs = UsageRecord.objects.for_org(rows_in_every_offset).on_days(date(2026, 11, 18), date(2026, 11, 19))
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {UsageRecord._meta.db_table}")
        cur.execute(
            "SET LOCAL enable_seqscan = off"
        )  # the table is small here; the test's transaction ends it
        sql, params = qs.values("id").query.sql_with_params()
        cur.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert "usage_org_start" in plan, plan
    assert not re.search(r"usage_org_day\b", plan)
