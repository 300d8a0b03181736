"""The finance screens in a real browser: dashboard with a drawn chart, the explorer, CSV downloads."""

import csv
import io
import re
from datetime import datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
import time_machine
from django.db.models import Sum
from playwright.sync_api import expect

from apps.usage.dashboard import org_today
from apps.usage.demo import load_demo_usage
from apps.usage.exports import FOCUS_HEADER
from apps.usage.models import UsageRecord
from apps.usage.services import usage_events_ingest
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHART_IS_DRAWN = """() => {
  const canvas = document.querySelector('canvas[data-chart]');
  if (!canvas || !canvas.chart) return false;
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return true;
  return false;
}"""


def dollars(amount) -> str:
    return f"${Decimal(amount).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,.2f}"


@pytest.fixture
def finance_user():
    def make(org):
        return MembershipFactory(org=org, role="finance", user__email=f"fin@{org.slug}.test").user

    return make


def mid_next_month_london() -> datetime:
    """15:30 on the 15th of next month in London: ahead of the real clock (the browser keeps the cookies the
    server sets) and far from a month's edge, where month to date is still empty (minutes into the 1st)."""
    org = OrganizationFactory.build(timezone="Europe/London")
    first_of_next = (org_today(org).replace(day=1) + timedelta(days=32)).replace(day=15)
    return datetime.combine(first_of_next, time(15, 30), org.tz)


def test_dashboard_and_explorer_with_the_demo_data(page, log_in, shot, finance_user):
    with time_machine.travel(mid_next_month_london(), tick=True):
        dashboard_and_explorer(page, log_in, shot, finance_user)


def dashboard_and_explorer(page, log_in, shot, finance_user):
    org = OrganizationFactory(name="Acme Corp", slug="acme", timezone="Europe/London")
    load_demo_usage(org)
    user = finance_user(org)
    today = org_today(org)
    mtd = UsageRecord.objects.filter(org=org, day__gte=today.replace(day=1)).aggregate(c=Sum("cost"))["c"]

    log_in(page, user)
    expect(page).to_have_url(re.compile(r"/o/acme/$"))
    expect(page.get_by_test_id("stat-mtd")).to_contain_text(dollars(mtd))
    expect(page.get_by_test_id("stat-change")).to_contain_text("%")
    page.wait_for_function(CHART_IS_DRAWN)
    assert page.evaluate("document.querySelector('canvas[data-chart]').chart.data.datasets.length") >= 2
    warning = page.get_by_test_id("unpriced-warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("llama-3.1-70b-local")
    expect(warning).to_contain_text("not included")
    expect(page.get_by_role("heading", name=re.compile("Top teams"))).to_be_visible()
    expect(page.get_by_role("link", name="Support", exact=True)).to_be_visible()
    shot(page, "dashboard-data")

    page.get_by_role("link", name="By model").click()
    page.wait_for_function(CHART_IS_DRAWN)
    assert "claude-sonnet-4-5" in page.evaluate(
        "document.querySelector('canvas[data-chart]').chart.data.datasets.map(d => d.label)"
    )

    warning.get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/o/acme/usage/\?.*model=llama-3.1-70b-local"))
    expect(page.get_by_test_id("spend-table")).to_contain_text("llama-3.1-70b-local")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Usage").click()
    page.get_by_label("Group by").select_option("team")
    page.get_by_label("Then by").select_option("model")
    page.get_by_role("button", name="Show spend").click()
    expect(page).to_have_url(re.compile(r"group_by=team&then_by=model"))
    page.wait_for_function(CHART_IS_DRAWN)
    expect(page.get_by_test_id("spend-table")).to_contain_text("claude-sonnet-4-5")
    shot(page, "explorer")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/o/acme/")
    page.wait_for_function(CHART_IS_DRAWN)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "dashboard-phone")
    page.goto("/o/acme/usage/?group_by=team&then_by=model")
    page.wait_for_function(CHART_IS_DRAWN)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the wide table scrolls in its box
    shot(page, "explorer-phone")


@pytest.fixture
def small_ledger():
    org = OrganizationFactory(name="Initech", slug="initech", timezone="UTC")
    TeamFactory(org=org, name="Support")
    TeamFactory(org=org, name="Search")
    today = org_today(org)

    def ev(n, days_ago, cost, team, model="gpt-4o-mini", **extra):
        return {
            "id": f"e{n}",
            "timestamp": f"{today - timedelta(days=days_ago)}T09:00:00Z",
            "provider": "openai",
            "model": model,
            "input_tokens": 1000,
            "output_tokens": 200,
            "cost": cost,
            "team": team,
            **extra,
        }

    result = usage_events_ingest(
        org=org,
        events=[
            ev(1, 3, "1200.00", "Support", model="gpt-4.1", tags={"feature": "support-copilot"}),
            ev(2, 2, "34.56", "Search", tags={"feature": "semantic-search"}),
            ev(3, 1, "0.44", "Search", tags={"feature": "semantic-search"}),
            {
                "id": "local",
                "timestamp": f"{today - timedelta(days=1)}T09:00:00Z",
                "provider": "selfhosted",
                "model": "llama-3.1-70b-local",
                "input_tokens": 500,
                "output_tokens": 50,
                "requests": 7,
            },
        ],
    )
    assert result.accepted == 4
    return org


def test_explorer_grouping_filter_and_downloads(page, log_in, shot, small_ledger, finance_user, tmp_path):
    log_in(page, finance_user(small_ledger))
    page.goto("/o/initech/usage/")
    table = page.get_by_test_id("spend-table")
    expect(page.get_by_test_id("total-cost")).to_have_text("$1,235.00")
    expect(table.locator("tbody tr")).to_have_count(3)  # three days with usage
    expect(page.get_by_test_id("unpriced-warning")).to_contain_text("7 requests")

    page.get_by_label("Group by").select_option("team")
    page.get_by_role("button", name="Show spend").click()
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("Support")
    expect(rows.nth(0)).to_contain_text("$1,200.00")
    expect(rows.nth(1)).to_contain_text("Search")
    expect(rows.nth(1)).to_contain_text("$35.00")
    # The self-hosted model, no team: $0.00 and 7 unpriced requests.
    expect(rows.nth(2)).to_contain_text("Unattributed")
    expect(rows.nth(2)).to_contain_text("$0.00")
    page.wait_for_function(CHART_IS_DRAWN)

    page.get_by_label("Team", exact=True).select_option(label="Search")
    page.get_by_role("button", name="Show spend").click()
    expect(rows).to_have_count(1)
    expect(page.get_by_test_id("total-cost")).to_have_text("$35.00")
    assert "team=" in page.url

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    download = download_info.value
    assert re.fullmatch(r"spend-\d{4}-\d\d-\d\d-\d{4}-\d\d-\d\d\.csv", download.suggested_filename)
    path = tmp_path / "spend.csv"
    download.save_as(path)
    rows = list(csv.reader(io.StringIO(Path(path).read_text())))
    assert rows[0][:3] == ["team", "cost", "currency"]
    assert rows[1:] and [(r[0], r[1]) for r in rows[1:]] == [("Search", "35.0000")]

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download FOCUS CSV").click()
    path = tmp_path / "focus.csv"
    download_info.value.save_as(path)
    rows = list(csv.reader(io.StringIO(Path(path).read_text())))
    assert rows[0] == FOCUS_HEADER
    billed = FOCUS_HEADER.index("BilledCost")
    assert sum(Decimal(r[billed]) for r in rows[1:]) == Decimal("35.00")


def test_a_bad_filter_shows_a_readable_error(page, log_in, small_ledger, finance_user):
    log_in(page, finance_user(small_ledger))
    response = page.goto("/o/initech/usage/?start=2026-11-10&end=2026-11-01")
    assert response.status == 400
    expect(page.get_by_role("alert").first).to_contain_text("Some filters need fixing")
    expect(page.get_by_text("The end (exclusive) must be after the start.")).to_be_visible()
