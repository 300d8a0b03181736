"""Browser-side security in a real browser: the Content-Security-Policy (no inline script or style allowed) breaks
nothing on the main pages, charts included, and no page reports a violation."""

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from apps.budgets import services as budget_services
from apps.budgets.models import AlertChannel
from apps.usage.demo import load_demo_usage
from tests.factories import MembershipFactory, OrganizationFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHARTS_DRAWN = """() => {
  const canvases = [...document.querySelectorAll('canvas[data-chart]')];
  return canvases.length > 0 && canvases.every((canvas) => {
    if (!canvas.chart) return false;
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return true;
    return false;
  });
}"""


@pytest.fixture
def acme():
    org = OrganizationFactory(name="Acme Corp", slug="acme", timezone="Europe/London")
    load_demo_usage(org, days=40)
    owner = MembershipFactory(org=org, role="owner", user__email="owner@acme.test")
    budget = budget_services.budget_create(org=org, name="Company", amount=1000)
    budget_services.budgets_evaluate(org=org)
    budget_services.channel_create(org=org, kind=AlertChannel.EMAIL, name="Finance", recipients=[owner])
    return org, owner.user, budget


def test_the_main_pages_render_under_the_policy_with_no_violation(page, log_in, shot, acme, live_server):
    org, user, budget = acme
    response = page.goto("/accounts/login/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    log_in(page, user)
    expect(page).to_have_url(re.compile(r"/o/acme/$"))

    with_charts = {
        reverse("dashboard", args=[org.slug]),
        reverse("usage", args=[org.slug]),
        reverse("budget", args=[org.slug, budget.pk]),
    }
    pages = [
        *sorted(with_charts),
        reverse("budgets", args=[org.slug]),
        reverse("budget-new", args=[org.slug]),
        reverse("alerts", args=[org.slug]),
        reverse("notifications", args=[org.slug]),
        reverse("connectors", args=[org.slug]),
        reverse("settings-org", args=[org.slug]),
        reverse("settings-teams", args=[org.slug]),
        reverse("settings-members", args=[org.slug]),
        reverse("settings-tokens", args=[org.slug]),
        "/api/docs/",
    ]
    for path in pages:
        response = page.goto(path)
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"], path
        page.wait_for_load_state("networkidle")
        if path in with_charts:
            page.wait_for_function(CHARTS_DRAWN)
        if path == "/api/docs/":
            expect(page.get_by_text("spendctl API").first).to_be_visible()
            shot(page, "security-api-docs")
        violations = page.evaluate("window.__cspViolations")
        assert violations == [], (path, violations)
        assert page.csp_messages == [], (path, page.csp_messages)
    shot(page, "security-last-page")


def test_an_inline_script_would_be_blocked(page, live_server):
    """The policy is really enforced: a script injected into the page's markup does not run, and is reported."""
    page.goto("/accounts/login/")
    page.evaluate(
        """() => { const d = document.createElement('div');
                   d.innerHTML = '<img src=x onerror="window.__pwned = 1">';
                   document.body.appendChild(d); }"""
    )
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.evaluate("window.__pwned") is None
    assert any("script-src" in v for v in page.evaluate("window.__cspViolations"))
    page.csp_messages.clear()  # expected here: the fixture would otherwise fail the test for it
