import re

import pytest
from django.core import mail
from django.urls import reverse

from apps.orgs.models import ApiToken, Membership, Team
from tests.factories import TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def login(client):
    def as_user(user):
        client.force_login(user)
        return client

    return as_user


def test_pages_need_login(client, org):
    response = client.get(reverse("dashboard", args=[org.slug]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_home_redirects_to_the_first_org_or_explains(login, org, member_of):
    user = member_of(org, "member")
    assert login(user).get("/")["Location"] == f"/o/{org.slug}/"
    lonely = login(UserFactory())
    assert "not in an organisation yet" in lonely.get("/").content.decode()


def test_non_members_get_a_404_like_a_missing_org(login, org, other_org, member_of):
    client = login(member_of(other_org, "owner"))
    assert client.get(reverse("dashboard", args=[org.slug])).status_code == 404
    assert client.get(reverse("dashboard", args=["no-such-org"])).status_code == 404
    assert client.get(reverse("settings-teams", args=[org.slug])).status_code == 404


def test_navigation_and_org_switcher_list_the_users_orgs(login, org, other_org, member_of):
    user = member_of(org, "finance")
    Membership.objects.create(org=other_org, user=user, role="member")
    html = login(user).get(reverse("dashboard", args=[org.slug])).content.decode()
    for label in (
        "Dashboard",
        "Usage",
        "Budgets",
        "Connectors",
        "Recommendations",
        "Plans",
        "Reports",
        "Settings",
    ):
        assert f">{label}</a>" in html
    assert f'href="/o/{other_org.slug}/"' in html and f'href="/o/{org.slug}/"' in html


def test_admin_creates_edits_and_deletes_a_team(login, org, member_of):
    client = login(member_of(org, "admin"))
    url = reverse("settings-teams", args=[org.slug])
    assert client.post(url, {"name": "Support", "description": "Tickets"}).status_code == 302
    team = Team.objects.get(org=org, name="Support")
    duplicate = client.post(url, {"name": "support"})
    assert duplicate.status_code == 400 and "already exists" in duplicate.content.decode()
    edit = reverse("settings-team-edit", args=[org.slug, team.pk])
    assert client.post(edit, {"name": "Customer Support"}).status_code == 302
    assert Team.objects.get(pk=team.pk).name == "Customer Support"
    assert client.post(edit, {"delete": "1"}).status_code == 302
    assert not Team.objects.filter(pk=team.pk).exists()


def test_member_role_sees_but_cannot_change(login, org, member_of):
    TeamFactory(org=org, name="Search")
    client = login(member_of(org, "member"))
    page = client.get(reverse("settings-teams", args=[org.slug]))
    assert page.status_code == 200 and "Search" in page.content.decode()
    assert "New team" not in page.content.decode()
    assert client.post(reverse("settings-teams", args=[org.slug]), {"name": "Nope"}).status_code == 403
    assert not Team.objects.filter(name="Nope").exists()
    assert client.get(reverse("settings-tokens", args=[org.slug])).status_code == 403
    assert (
        client.post(
            reverse("settings-members", args=[org.slug]), {"email": "x@example.test", "role": "member"}
        ).status_code
        == 403
    )


def test_another_orgs_team_cannot_be_edited_through_my_org(login, org, other_org, member_of):
    foreign = TeamFactory(org=other_org, name="Theirs")
    client = login(member_of(org, "owner"))
    assert (
        client.post(reverse("settings-team-edit", args=[org.slug, foreign.pk]), {"delete": "1"}).status_code
        == 404
    )
    assert Team.objects.filter(pk=foreign.pk).exists()


def test_invite_change_role_and_remove(login, org, member_of, django_capture_on_commit_callbacks):
    client = login(member_of(org, "owner"))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("settings-members", args=[org.slug]), {"email": "new@example.test", "role": "finance"}
        )
    assert response.status_code == 302 and len(mail.outbox) == 1
    membership = Membership.objects.get(org=org, user__email="new@example.test")
    change = reverse("settings-member-change", args=[org.slug, membership.pk])
    client.post(change, {"role": "admin"})
    assert Membership.objects.get(pk=membership.pk).role == "admin"
    bad = client.post(
        reverse("settings-members", args=[org.slug]), {"email": "not-an-email", "role": "member"}
    )
    assert bad.status_code == 400 and "valid email" in bad.content.decode()
    client.post(change, {"remove": "1"})
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_token_is_shown_once_in_the_ui(login, org, member_of):
    client = login(member_of(org, "admin"))
    url = reverse("settings-tokens", args=[org.slug])
    created = client.post(
        url, {"name": "support-bot", "scopes": ["ingest", "check"], "expires_in_days": "30"}
    )
    html = created.content.decode()
    plaintext = re.search(r'value="(spc_[^"]+)"', html).group(1)
    token = ApiToken.objects.get(org=org, name="support-bot")
    assert token.scopes == ["check", "ingest"] and token.expires_at is not None
    assert plaintext not in client.get(url).content.decode()
    client.post(reverse("settings-token-revoke", args=[org.slug, token.pk]))
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None


def test_login_is_throttled_after_repeated_failures(client, org, member_of, settings):
    user = member_of(org, "member", user__email="target@example.test")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post(reverse("login"), {"username": user.username, "password": "wrong"})
        assert response.status_code == 200 and "did not match" in response.content.decode()
    assert client.post(reverse("login"), {"username": user.username, "password": "wrong"}).status_code == 429
    # now even the right password is refused for this account from this address
    locked = client.post(reverse("login"), {"username": user.username, "password": "correct horse battery"})
    assert locked.status_code == 429
    assert "Too many failed log-ins" in locked.content.decode()
    # another account from the same address is not locked
    other = member_of(org, "member", user__email="other@example.test")
    assert (
        client.post(
            reverse("login"), {"username": other.username, "password": "correct horse battery"}
        ).status_code
        == 302
    )


def test_password_reset_sends_a_link(client, org, member_of):
    member_of(org, "member", user__email="forgetful@example.test")
    response = client.post(reverse("password_reset"), {"email": "forgetful@example.test"})
    assert response.status_code == 302 and len(mail.outbox) == 1
    assert re.search(r"/accounts/password/reset/[^/]+/[^/]+/", mail.outbox[0].body)
