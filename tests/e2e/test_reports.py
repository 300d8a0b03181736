"""Reports in the browser: the archive, the preview as sent, and the HTML e-mail part at desktop and phone width."""

from datetime import UTC, date, datetime

import pytest

from apps.reports import rendering, services
from apps.usage.demo import load_demo_usage
from tests.factories import MembershipFactory

pytestmark = pytest.mark.browser
OCTOBER = date(2026, 10, 1)


@pytest.fixture
def demo_org(org):
    """The demo workloads for September and October 2026 (62 days ending 1 November)."""
    load_demo_usage(org, days=62, now=datetime(2026, 11, 1, 12, tzinfo=UTC))
    return org


@pytest.mark.django_db(transaction=True)
def test_reports_page_and_preview(page, log_in, shot, demo_org):
    owner = MembershipFactory(org=demo_org, role="owner", user__email="owner@acme.test").user
    report = services.report_generate(org=demo_org, month=OCTOBER)
    log_in(page, owner)
    page.goto(f"/o/{demo_org.slug}/reports/")
    table = page.get_by_test_id("report-list")
    table.wait_for()
    shot(page, "reports-list")
    label = rendering.month_label(report.month)
    page.get_by_role("link", name=label).click()
    page.get_by_role("heading", name=f"{label} report").wait_for()
    frame = page.frame_locator("[data-testid=report-frame]")
    frame.get_by_role("heading", name="Why spend changed").wait_for()
    frame.get_by_text("Spent this month").wait_for()
    images = frame.locator("img")
    assert images.count() == 3
    for i in range(3):
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 500")
    shot(page, "reports-preview")


@pytest.mark.django_db
def test_email_html_part_reads_well_on_desktop_and_phone(browser, demo_org):
    from tests.e2e.conftest import SHOTS

    report = services.report_generate(org=demo_org, month=OCTOBER)
    rendered = rendering.render(
        report, inline="data", unsubscribe_url="https://example.test/u", app_url="https://x"
    )
    SHOTS.mkdir(exist_ok=True)
    for width, name in ((1024, "desktop"), (390, "phone")):
        context = browser.new_context(viewport={"width": width, "height": 900})
        pg = context.new_page()
        pg.set_content(rendered.html)
        pg.screenshot(path=str(SHOTS / f"report-email-{name}.png"), full_page=True)
        # nothing wider than the screen: no sideways scrolling on a phone
        assert pg.evaluate("document.documentElement.scrollWidth") <= width, name
        assert pg.get_by_text("Spent this month").is_visible()
        context.close()
