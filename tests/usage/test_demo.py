"""The demo loader: realistic, deterministic usage pushed through the real ingest path."""

import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db.models import Count, Max, Min, Sum

from apps.orgs.models import Organization
from apps.usage.dashboard import org_today
from apps.usage.demo import SPIKE_DAYS_AGO, demo_events, load_demo_usage
from apps.usage.models import DailyRollup, UsageRecord
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)


def london_org(slug):
    return OrganizationFactory(name=slug.title(), slug=slug, timezone="Europe/London")


def fingerprint(org):
    """Cost, requests and tokens per day and model: equal fingerprints mean equal ledgers."""
    rows = (
        UsageRecord.objects.filter(org=org)
        .values("day", "provider", "model", "service_tier", "cost_basis")
        .annotate(cost=Sum("cost"), requests=Sum("requests"), cached=Sum("cache_read_tokens"), n=Count("id"))
        .order_by("day", "provider", "model", "service_tier", "cost_basis")
    )
    return [tuple(r.values()) for r in rows]


@time_machine.travel(
    NOW, tick=True
)  # at 00:03 today has no usage yet; the span is then 89 days and yesterday
def test_make_demo_loads_ninety_days_with_cached_batch_unpriced_usage_and_a_spike():
    out = StringIO()
    call_command("demo", stdout=out)
    org = Organization.objects.get(slug="acme")
    today = org_today(org)
    records = UsageRecord.objects.filter(org=org)
    count = records.count()
    assert f"Demo usage: loaded {count} events over 90 days." in out.getvalue()
    assert 40_000 <= count <= 80_000
    # Repeatable: a second run leaves the usage as it is.
    out = StringIO()
    call_command("demo", stdout=out)
    assert "already loaded" in out.getvalue() and records.count() == count
    # Last month's report is ready to preview (issue #6).
    from apps.reports.models import MonthlyReport

    assert "Monthly report:" in out.getvalue()
    assert MonthlyReport.objects.filter(org=org).count() == 1
    span = records.aggregate(first=Min("day"), last=Max("day"))
    assert (span["first"], span["last"]) == (today - timedelta(days=89), today)
    assert records.values("day").distinct().count() == 90
    assert set(records.values_list("team__name", flat=True).distinct()) == {
        "Support",
        "Search",
        "Growth",
        "Platform",
        None,  # a little unattributed usage
    }
    assert set(records.values_list("provider", flat=True).distinct()) == {"openai", "anthropic", "selfhosted"}
    assert set(records.exclude(feature="").values_list("feature", flat=True).distinct()) == {
        "support-copilot",
        "ticket-triage",
        "semantic-search",
        "email-drafts",
        "evals",
    }
    assert records.exclude(customer="").values("customer").distinct().count() == 12
    # Every model but the self-hosted one is priced by the catalog; the self-hosted one is unpriced.
    assert set(records.filter(cost_basis="unpriced").values_list("model", flat=True).distinct()) == {
        "llama-3.1-70b-local"
    }
    assert not records.filter(cost_basis="computed", cost=0).exclude(model="text-embedding-3-small").exists()
    assert records.filter(cost_basis__in=["computed", "unpriced"]).count() == count
    assert records.aggregate(c=Sum("cache_read_tokens"))["c"] > 0
    batch = records.filter(service_tier="batch")
    assert batch.exists() and batch.filter(price_ref__contains="processing=batch").exists()
    total = records.aggregate(c=Sum("cost"))["c"]
    assert Decimal(10_000) < total < Decimal(100_000)
    # The rollup the screens read agrees with the ledger (to the cent: SQLite sums decimals as floats).
    rollup_total = DailyRollup.objects.filter(org=org).aggregate(c=Sum("cost"))["c"]
    assert rollup_total.quantize(Decimal("0.01")) == total.quantize(Decimal("0.01"))

    daily = dict(
        DailyRollup.objects.filter(org=org).values_list("day").annotate(c=Sum("cost")).order_by("day")
    )
    median = statistics.median(daily.values())
    spike = [daily[today - timedelta(days=n)] for n in SPIKE_DAYS_AGO]
    assert max(spike) > Decimal("1.8") * median, (spike, median)
    # Weekdays cost more than weekends.
    weekdays = [c for d, c in daily.items() if d.weekday() < 5 and d != today]
    weekends = [c for d, c in daily.items() if d.weekday() >= 5]
    assert statistics.median(weekends) < Decimal("0.6") * statistics.median(weekdays)
    # Gentle growth: the last four weeks cost more than the first four.
    days = sorted(daily)
    assert sum(daily[d] for d in days[-29:-1]) > sum(daily[d] for d in days[:28])


def test_the_loader_is_deterministic_and_idempotent():
    first, second = london_org("demo-a"), london_org("demo-b")
    a = load_demo_usage(first, days=21, now=NOW)
    b = load_demo_usage(second, days=21, now=NOW)
    assert a == b and a["events"] > 0
    assert fingerprint(first) == fingerprint(second)
    assert UsageRecord.objects.filter(org=first).aggregate(c=Sum("cost")) == UsageRecord.objects.filter(
        org=second
    ).aggregate(c=Sum("cost"))
    # Loading again stores nothing new: event ids are stable.
    again = load_demo_usage(first, days=21, now=NOW)
    assert again["events"] == 0 and again["duplicates"] == a["events"]
    # The full 90-day stream is the same for the same seed and differs for another seed.
    assert list(demo_events(first, now=NOW)) == list(demo_events(second, now=NOW))
    assert list(demo_events(first, now=NOW))[:50] != list(demo_events(first, now=NOW, seed=8))[:50]
