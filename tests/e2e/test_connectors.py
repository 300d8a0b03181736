import pytest
from playwright.sync_api import expect

from apps.connectors.models import SyncRun
from tests.factories import MembershipFactory, OrganizationFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_connect_the_sandbox_provider_and_see_the_sync(page, log_in, shot):
    org = OrganizationFactory(name="Acme Corp", slug="acme")
    admin = MembershipFactory(org=org, role="admin", user__email="ada@acme.test").user
    log_in(page, admin)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Connectors").click()
    expect(page.get_by_role("heading", name="Connectors", exact=True)).to_be_visible()
    page.get_by_label("Provider").select_option("sandbox")
    page.get_by_label("Label").fill("Sandbox demo")
    page.get_by_label("Admin key").fill("sandbox-secret-key")
    page.get_by_role("button", name="Test and connect").click()
    expect(page.get_by_role("status")).to_contain_text("the key works")
    expect(page.get_by_role("link", name="Sandbox demo")).to_be_visible()
    assert "sandbox-secret-key" not in page.content()
    shot(page, "connectors")
    page.get_by_role("link", name="Sandbox demo").click()
    expect(page.get_by_role("cell", name="Succeeded")).to_be_visible()
    expect(page.get_by_role("heading", name="Reconciliation, last 30 days")).to_be_visible()
    shot(page, "connector-detail")
    assert SyncRun.objects.get().status == "succeeded"
