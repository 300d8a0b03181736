import re

import pytest
from playwright.sync_api import expect

from apps.orgs.models import ApiToken, Membership, Team
from tests.factories import MembershipFactory, OrganizationFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def two_orgs():
    acme = OrganizationFactory(name="Acme Corp", slug="acme")
    globex = OrganizationFactory(name="Globex", slug="globex")
    admin = MembershipFactory(org=acme, role="admin", user__email="ada@acme.test").user
    Membership.objects.create(org=globex, user=admin, role="finance")
    return acme, globex, admin


def test_log_in_and_switch_org(page, two_orgs, log_in, shot):
    acme, globex, admin = two_orgs
    log_in(page, admin)
    expect(page).to_have_url(re.compile(r"/o/acme/$"))
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    shot(page, "dashboard")
    page.get_by_label("Switch organisation").click()
    page.get_by_role("link", name="Globex").click()
    expect(page).to_have_url(re.compile(r"/o/globex/$"))
    expect(page.locator(".switcher summary")).to_contain_text("Globex")


def test_wrong_password_shows_an_error(page, two_orgs, log_in):
    log_in(page, two_orgs[2], password="wrong password")
    expect(page.get_by_role("alert")).to_contain_text("did not match")


def test_create_a_team(page, two_orgs, log_in, shot):
    acme, _, admin = two_orgs
    log_in(page, admin)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Teams", exact=True)).to_be_visible()
    page.get_by_label("Name").fill("Support")
    page.get_by_label("Description").fill("Support copilot")
    page.get_by_role("button", name="Create team").click()
    expect(page.get_by_role("status")).to_contain_text("Team “Support” created")
    expect(page.get_by_role("cell", name="Support copilot")).to_be_visible()
    assert Team.objects.filter(org=acme, name="Support").exists()
    page.get_by_label("Name").fill("support")
    page.get_by_role("button", name="Create team").click()
    expect(page.get_by_role("alert")).to_contain_text("already exists")
    shot(page, "teams")


def test_create_a_token_and_see_it_once(page, two_orgs, log_in, shot):
    acme, _, admin = two_orgs
    log_in(page, admin)
    page.goto("/o/acme/settings/tokens/")
    page.get_by_label("Name").fill("support-bot production")
    page.get_by_label("Push usage events").check()
    page.get_by_role("button", name="Create token").click()
    value = page.get_by_test_id("new-token").input_value()
    assert value.startswith("spc_")
    expect(page.get_by_text("It will not be shown again")).to_be_visible()
    shot(page, "token-created")
    token = ApiToken.objects.get(org=acme, name="support-bot production")
    assert sorted(token.scopes) == ["ingest", "read"] and token.prefix == value[:12]
    page.goto("/o/acme/settings/tokens/")
    expect(page.get_by_test_id("new-token")).to_have_count(0)
    assert value not in page.content()
    expect(page.get_by_role("cell", name="support-bot production", exact=True)).to_be_visible()


def test_member_cannot_reach_the_token_page(page, two_orgs, log_in, shot):
    acme = two_orgs[0]
    member = MembershipFactory(org=acme, role="member", user__email="mo@acme.test").user
    log_in(page, member)
    page.goto("/o/acme/settings/teams/")
    expect(page.get_by_role("link", name="API tokens")).to_have_count(0)
    expect(page.get_by_text("can see teams but not change them")).to_be_visible()
    response = page.goto("/o/acme/settings/tokens/")
    assert response.status == 403
    shot(page, "member-forbidden")
