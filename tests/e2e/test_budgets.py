"""The budgets screens in a real browser: the form (with a validation error), the list's burn bars, the budget page's
drawn chart, acknowledging an alert, and a webhook's "Send test". Screenshots at desktop and phone width."""

import re
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.budgets import services
from apps.budgets.models import Alert, Budget, WebhookDelivery
from apps.budgets.selectors import budget_status, org_today
from apps.orgs.models import Team
from apps.usage.demo import load_demo_usage
from apps.usage.services import usage_events_ingest
from tests.factories import MembershipFactory, OrganizationFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}
CHART_IS_DRAWN = """() => {
  const canvas = document.querySelector('canvas[data-chart]');
  if (!canvas || canvas.chart === undefined) return false;
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return true;
  return false;
}"""


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_DOWN)


def spent_and_forecast(org, **scope) -> tuple[Decimal, Decimal]:
    """This period's spend to date and forecast for a scope, from an unsaved budget (nothing is evaluated or
    alerted). Amounts are set from these, not from the calendar: on the 2nd of a month a budget at 1.25x the
    forecast has used a few percent, on the 30th most of it."""
    status = budget_status(Budget(org=org, amount=Decimal(1), **scope))
    return status.spent, status.forecast.expected_total


def shots(page, shot, name):
    shot(page, name)
    page.set_viewport_size(PHONE)
    shot(page, f"{name}-phone")
    page.set_viewport_size(DESKTOP)


@pytest.fixture
def acme():
    org = OrganizationFactory(name="Acme Corp", slug="acme", timezone="Europe/London")
    load_demo_usage(org)
    # Minutes into a month the demo has no spend in it yet: one call a minute ago gives every scope below some.
    result = usage_events_ingest(
        org=org,
        events=[
            {
                "id": "e2e-this-month",
                "timestamp": (timezone.now() - timedelta(minutes=1)).isoformat(),
                "provider": "openai",
                "model": "gpt-4.1",
                "input_tokens": 1000,
                "output_tokens": 100,
                "cost": "40.00",
                "team": "Support",
                "tags": {"feature": "email-drafts"},
            }
        ],
    )
    assert result.accepted == 1, result
    return org


def test_create_a_budget_see_its_burn_and_acknowledge_an_alert(page, log_in, shot, acme):
    support = Team.objects.get(org=acme, name="Support")
    # Three budgets around the one made through the form: one over, one forecast to go over, one on track.
    support_spent, _ = spent_and_forecast(acme, scope="team", team=support)
    services.budget_create(
        org=acme, name="Support", scope="team", team=support, amount=cents(support_spent * Decimal("0.8"))
    )
    # Halfway between spend to date and the forecast: under budget now, forecast to cross before the end. Its own
    # four weeks around today, so that there are days left to forecast even late on the last day of a month.
    today = org_today(acme)
    fortnight = {
        "period": "custom",
        "custom_start": today - timedelta(days=14),
        "custom_end": today + timedelta(days=14),
    }
    gpt_spent, gpt_forecast = spent_and_forecast(acme, scope="model", model="gpt-4.1", **fortnight)
    assert gpt_forecast - gpt_spent > Decimal("0.10")
    services.budget_create(
        org=acme,
        name="GPT-4.1",
        scope="model",
        model="gpt-4.1",
        amount=cents((gpt_spent + gpt_forecast) / 2),
        **fortnight,
    )
    _, drafts_forecast = spent_and_forecast(
        acme, scope="tag", tag_key="feature", tag_value="email-drafts", period="quarterly"
    )
    services.budget_create(
        org=acme,
        name="E-mail drafts",
        scope="tag",
        tag_key="feature",
        tag_value="email-drafts",
        amount=cents(drafts_forecast * Decimal("1.6")),
        period="quarterly",
    )
    finance = MembershipFactory(org=acme, role="finance", user__email="fin@acme.test").user
    log_in(page, finance)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Budgets").click()
    expect(page.get_by_role("heading", name="Budgets", exact=True)).to_be_visible()
    page.get_by_role("link", name="New budget").click()

    # The scope's own fields appear only for that scope.
    expect(page.get_by_label("Team", exact=True)).to_be_hidden()
    page.get_by_label("Applies to").select_option("team")
    expect(page.get_by_label("Team", exact=True)).to_be_visible()
    page.get_by_label("Applies to").select_option("org")
    expect(page.get_by_label("First day")).to_be_hidden()

    page.get_by_label("Name").fill("Company AI")
    page.get_by_label("Amount (USD)").fill("0")
    page.get_by_role("button", name="Create budget").click()
    expect(page.get_by_role("alert").filter(has_text="The amount must be more than zero.")).to_be_visible()
    expect(page.get_by_role("alert").filter(has_text="The budget was not saved")).to_be_visible()
    assert not Budget.objects.filter(name="Company AI").exists()
    shots(page, shot, "budget-form")
    # 60% used: past the 50% threshold only, whatever the day of the month.
    company_spent, _ = spent_and_forecast(acme)
    page.get_by_label("Amount (USD)").fill(str(cents(company_spent / Decimal("0.6"))))
    page.get_by_role("button", name="Create budget").click()

    expect(page.get_by_role("status")).to_contain_text("Budget “Company AI” created.")
    expect(page.get_by_role("heading", name=re.compile("^Company AI"))).to_be_visible()
    page.wait_for_function(CHART_IS_DRAWN)
    assert page.evaluate("document.querySelector('canvas').chart !== undefined")
    labels = page.evaluate("document.querySelector('canvas').chart.data.datasets.map(d => d.label)")
    assert labels == ["Spent so far", "Budget", "Forecast", "Likely low", "Likely high"]
    # A saved budget is evaluated at once; evaluating again raises nothing twice.
    services.budgets_evaluate(org=acme)
    assert Alert.objects.filter(budget__name="Company AI").exists()
    page.reload()
    page.wait_for_function(CHART_IS_DRAWN)
    expect(page.get_by_role("region", name="Alerts for this budget")).to_contain_text(
        "Company AI: 50% of budget used"
    )
    shots(page, shot, "budget-detail")

    page.get_by_role("link", name="← Budgets").click()
    card = page.get_by_test_id("budget-card").filter(has=page.get_by_role("link", name="Company AI"))
    expect(card.locator("meter.burn-bar")).to_be_visible()
    expect(card).to_contain_text("Whole organisation")
    over = page.get_by_test_id("budget-card").filter(has=page.get_by_role("link", name="Support"))
    expect(over).to_contain_text("Over budget")
    expect(over.locator("meter.burn-over")).to_be_visible()
    expect(page.get_by_test_id("budget-card").filter(has_text="Tag feature = email-drafts")).to_be_visible()
    shots(page, shot, "budgets")

    page.get_by_role("navigation", name="Budgets").get_by_role("link", name=re.compile("Alerts")).click()
    first = (
        Alert.objects.filter(org=acme, acknowledged_at__isnull=True).order_by("-created_at", "-id").first()
    )
    assert first is not None
    open_before = Alert.objects.filter(org=acme, acknowledged_at__isnull=True).count()
    expect(page.get_by_test_id("alert")).to_have_count(open_before)
    page.get_by_role("button", name=f"Acknowledge: {first.title}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Acknowledged: {first.title}")
    expect(page.get_by_test_id("alert")).to_have_count(open_before - 1)
    first.refresh_from_db()
    assert first.acknowledged_at is not None and first.acknowledged_by == finance
    page.get_by_role("link", name=re.compile("^Acknowledged")).click()
    expect(page.get_by_test_id("alert").filter(has_text=first.title)).to_contain_text("acknowledged")
    page.get_by_role("link", name=re.compile("^Open")).click()
    shots(page, shot, "alerts")

    # A budget forecast to go over: the cone crosses the budget line. Then delete it, confirming first.
    page.get_by_role("link", name="GPT-4.1", exact=True).first.click()
    page.wait_for_function(CHART_IS_DRAWN)
    box = page.locator("canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.93, box["y"] + box["height"] * 0.5)
    expect(page.get_by_test_id("stat-crossing")).to_contain_text("Forecast to cross 100%")
    shot(page, "budget-detail-over")
    page.get_by_text("Delete budget…").click()
    page.get_by_role("button", name="Yes, delete “GPT-4.1”").click()
    expect(page.get_by_role("status")).to_contain_text("Budget “GPT-4.1” deleted")
    expect(page.get_by_test_id("budget-card")).to_have_count(3)


def test_add_a_webhook_and_send_a_test(page, log_in, shot, httpserver):
    org = OrganizationFactory(name="Acme Corp", slug="acme")
    admin = MembershipFactory(org=org, role="admin", user__email="ada@acme.test").user
    MembershipFactory(org=org, role="finance", user__email="fin@acme.test")
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    httpserver.expect_request("/broken", method="POST").respond_with_data("nope", status=500)
    log_in(page, admin)
    page.goto("/o/acme/budgets/notifications/")
    expect(page.get_by_text("No channels yet")).to_be_visible()

    email = page.get_by_role("region", name="Add an e-mail channel")
    email.get_by_label("Name").fill("Finance team")
    email.get_by_label("fin@acme.test (Finance)").check()
    email.get_by_role("button", name="Add e-mail channel").click()
    expect(page.get_by_role("status")).to_contain_text("E-mail channel “Finance team” added.")

    hook = page.get_by_role("region", name="Add a webhook")
    hook.get_by_label("Name").fill("Ops webhook")
    hook.get_by_label("URL").fill(httpserver.url_for("/hook"))
    hook.get_by_role("button", name="Add webhook").click()
    secret = page.get_by_test_id("webhook-secret")
    expect(secret).to_have_value(re.compile(r"^whsec_"))
    shot(page, "webhook-secret")
    page.get_by_role("button", name="Send test to Ops webhook").click()
    expect(page.get_by_role("status")).to_contain_text("Test delivered to “Ops webhook” (HTTP 200).")
    expect(page.get_by_test_id("webhook-secret")).to_have_count(0)  # shown once

    hook = page.get_by_role("region", name="Add a webhook")
    hook.get_by_label("Name").fill("Broken endpoint")
    hook.get_by_label("URL").fill(httpserver.url_for("/broken"))
    hook.get_by_label("Slack format").check()
    hook.get_by_role("button", name="Add webhook").click()
    page.get_by_role("button", name="Send test to Broken endpoint").click()
    expect(page.get_by_role("status")).to_contain_text("Test to “Broken endpoint” failed: HTTP 500.")
    broken = page.get_by_test_id("channel").filter(has_text="Broken endpoint")
    expect(broken.get_by_role("cell", name=re.compile("Failed"))).to_contain_text("HTTP 500 · 1 attempt")
    assert [r.path for r, _ in httpserver.log] == ["/hook", "/broken"]
    assert WebhookDelivery.objects.filter(status="delivered").count() == 1
    shots(page, shot, "notifications")
