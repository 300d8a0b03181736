import pytest
from playwright.sync_api import expect

from apps.connectors.services import connection_create
from tests.factories import MembershipFactory, OrganizationFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_reads_and_filters_the_audit_log(page, log_in, shot):
    org = OrganizationFactory(name="Acme Corp", slug="acme")
    admin = MembershipFactory(org=org, role="admin", user__email="ada@acme.test").user
    connection = connection_create(
        org=org, provider="sandbox", label="Sandbox demo", api_key="sandbox-key-0001"
    )
    log_in(page, admin)

    # a few changes through the screens: a token, a member, a new provider key
    page.goto("/o/acme/settings/tokens/")
    page.get_by_label("Name").fill("CI pipeline")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_test_id("new-token").input_value()
    page.goto("/o/acme/settings/members/")
    page.get_by_label("Email").fill("fin@acme.test")
    page.get_by_label("Role", exact=True).select_option("finance")
    page.get_by_role("button", name="Invite").click()
    page.goto(f"/o/acme/connectors/{connection.pk}/")
    page.get_by_label("New admin key").fill("sandbox-key-0002")
    page.get_by_role("button", name="Test and save").click()
    expect(page.get_by_role("status")).to_contain_text("New key saved")

    page.goto("/o/acme/settings/teams/")
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Audit log").click()
    table = page.get_by_test_id("audit-table")
    expect(table).to_be_visible()
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(
        4
    )  # connector.created (system), token.created, member.invited, connector.key_rotated
    first = rows.first
    expect(first).to_contain_text("connector.key_rotated")
    expect(first).to_contain_text("ada@acme.test")
    expect(first).to_contain_text("127.0.0.1")
    expect(first).to_contain_text("[secret] → [secret]")
    expect(table).to_contain_text("member.invited")
    expect(table).to_contain_text("fin@acme.test")
    html = page.content()
    assert token not in html and "sandbox-key-000" not in html
    shot(page, "audit-log")

    page.get_by_label("Action").select_option("member.invited")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("finance")
    shot(page, "audit-log-filtered")


def test_a_member_has_no_audit_log(page, log_in):
    org = OrganizationFactory(name="Acme Corp", slug="acme")
    member = MembershipFactory(org=org, role="member", user__email="mo@acme.test").user
    log_in(page, member)
    page.goto("/o/acme/settings/teams/")
    expect(
        page.get_by_role("navigation", name="Settings").get_by_role("link", name="Audit log")
    ).to_have_count(0)
    response = page.goto("/o/acme/settings/audit/")
    assert response.status == 403
