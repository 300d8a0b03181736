"""The audit trail: every audited change writes exactly one event, with who (user or token), from where, and the
fields before and after, secrets masked."""

import json

import pytest
from django.test import Client

from apps.audit import services as audit
from apps.audit.context import SYSTEM
from apps.audit.models import AuditEvent
from apps.budgets.models import AlertChannel
from apps.orgs.models import Membership
from tests.factories import MembershipFactory, TeamFactory

pytestmark = pytest.mark.django_db
IP = "203.0.113.7"


class Trail:
    """Remembers the newest event id; `one()` asserts exactly one event was written since, and returns it."""

    def __init__(self, org):
        self.org = org
        self.mark = self._last()

    def _last(self):
        last = AuditEvent.objects.order_by("-id").first()
        return last.pk if last else 0

    def one(self, action) -> AuditEvent:
        new = list(AuditEvent.objects.filter(pk__gt=self.mark).order_by("id"))
        assert [e.action for e in new] == [action], [(e.action, e.changes) for e in new]
        self.mark = new[-1].pk
        assert new[0].org_id == self.org.pk
        return new[0]

    def none(self):
        assert not AuditEvent.objects.filter(pk__gt=self.mark).exists()


def _by_token(event, client):
    assert event.actor_type == "token"
    assert event.actor_token_id == client.token.pk
    assert event.actor_token_prefix == client.token.prefix == client.plaintext[:12]
    assert event.actor_user_id == client.token.created_by_id
    assert event.ip_address == IP
    assert client.token.prefix in event.actor_label


def test_every_api_change_writes_one_event_by_the_token(api, org):
    client = api(org)
    trail = Trail(org)

    def call(method, url, data=None):
        response = getattr(client, method)(url, data or {}, format="json", REMOTE_ADDR=IP)
        assert response.status_code < 300, response.content
        return response.json() if response.content else None

    def check(action, **changes):
        event = trail.one(action)
        _by_token(event, client)
        for field, pair in changes.items():
            assert event.changes[field] == pair, (field, event.changes)
        return event

    # API tokens
    made = call("post", "/api/v1/tokens", {"name": "CI", "scopes": ["ingest"]})
    event = check(
        "token.created", name=[None, "CI"], scopes=[None, ["ingest"]], prefix=[None, made["token"][:12]]
    )
    assert made["token"] not in json.dumps(event.changes) and event.target_id == str(made["id"])
    call("patch", f"/api/v1/tokens/{made['id']}", {"name": "CI pipeline"})
    check("token.renamed", name=["CI", "CI pipeline"])
    call("delete", f"/api/v1/tokens/{made['id']}")
    assert check("token.revoked").changes["revoked_at"][0] is None
    call("delete", f"/api/v1/tokens/{made['id']}")  # already revoked: nothing changed, nothing recorded
    trail.none()

    # teams
    team = call("post", "/api/v1/teams", {"name": "Support"})
    check("team.created", name=[None, "Support"])
    call("patch", f"/api/v1/teams/{team['id']}", {"description": "Tier 1"})
    check("team.updated", description=["", "Tier 1"])

    # connectors
    conn = call(
        "post", "/api/v1/connectors", {"provider": "sandbox", "label": "Demo", "api_key": "sk-first-1111"}
    )
    event = check(
        "connector.created", label=[None, "Demo"], api_key=[None, "[secret]"], key_hint=[None, "1111"]
    )
    call("patch", f"/api/v1/connectors/{conn['id']}", {"label": "Demo 2", "trailing_days": 5})
    check("connector.updated", label=["Demo", "Demo 2"], trailing_days=[3, 5])
    call("patch", f"/api/v1/connectors/{conn['id']}", {"api_key": "sk-second-2222"})
    check("connector.key_rotated", api_key=["[secret]", "[secret]"], key_hint=["1111", "2222"])
    call("patch", f"/api/v1/connectors/{conn['id']}", {"is_active": False})
    check("connector.disabled", is_active=[True, False])
    call("patch", f"/api/v1/connectors/{conn['id']}", {"is_active": True})
    check("connector.enabled", is_active=[False, True])

    # budgets
    budget = call("post", "/api/v1/budgets", {"name": "Org", "amount": "1000.00"})
    check("budget.created", name=[None, "Org"], amount=[None, "1000.00"], thresholds=[None, [50, 80, 100]])
    call("patch", f"/api/v1/budgets/{budget['id']}", {"amount": "1500.00", "hard_cap": "2000.00"})
    check("budget.updated", amount=["1000.00", "1500.00"], hard_cap=[None, "2000.00"])
    call("delete", f"/api/v1/budgets/{budget['id']}")
    check("budget.deleted", name=["Org", None])

    # alert channels
    me = Membership.objects.get(org=org, user=client.token.created_by)
    channel = call(
        "post", "/api/v1/alert-channels", {"kind": "email", "name": "Finance", "recipients": [me.pk]}
    )
    check("alert_channel.created", name=[None, "Finance"], recipients=[None, [me.pk]])
    call("patch", f"/api/v1/alert-channels/{channel['id']}", {"name": "Finance team", "is_active": False})
    check("alert_channel.updated", name=["Finance", "Finance team"], is_active=[True, False])
    call("post", f"/api/v1/alert-channels/{channel['id']}/test")
    check("alert_channel.tested")
    call("delete", f"/api/v1/alert-channels/{channel['id']}")
    check("alert_channel.deleted", name=["Finance team", None])

    # price overrides
    override = call(
        "post",
        "/api/v1/price-overrides",
        {"provider": "openai", "model": "gpt-4o", "discount_percent": "10", "effective_from": "2026-01-01"},
    )
    check("price_override.created", discount_percent=[None, "10.000"], model=[None, "gpt-4o"])
    call("patch", f"/api/v1/price-overrides/{override['id']}", {"discount_percent": "12.5"})
    check("price_override.updated", discount_percent=["10.000", "12.500"])
    call("delete", f"/api/v1/price-overrides/{override['id']}")
    check("price_override.deleted", provider=["openai", None])

    # attribution rules
    rule = call(
        "post", "/api/v1/attribution-rules", {"kind": "project_id", "value": "proj_1", "team": team["id"]}
    )
    check("attribution_rule.created", value=[None, "proj_1"], team=[None, team["id"]])
    call("delete", f"/api/v1/attribution-rules/{rule['id']}")
    check("attribution_rule.deleted", value=["proj_1", None])

    call("delete", f"/api/v1/connectors/{conn['id']}")
    check("connector.deleted", label=["Demo 2", None])
    call("delete", f"/api/v1/teams/{team['id']}")
    check("team.deleted", name=["Support", None])

    # reads write nothing; a refused write writes nothing
    call("get", "/api/v1/budgets")
    assert client.post("/api/v1/budgets", {"name": "x", "amount": "-1"}, format="json").status_code == 400
    trail.none()


def _login(user) -> Client:
    web = Client(REMOTE_ADDR=IP, HTTP_USER_AGENT="pytest-browser/1")
    web.force_login(user)
    return web


def test_web_changes_to_members_roles_and_settings_are_recorded_with_the_person(org, member_of):
    owner = member_of(org, "owner", user__email="owner@example.test")
    web = _login(owner)
    trail = Trail(org)
    base = f"/o/{org.slug}/settings"

    def by_owner(event):
        assert event.actor_type == "user" and event.actor_user_id == owner.pk
        assert event.actor_label == "owner@example.test" and event.actor_token_id is None
        assert event.ip_address == IP and event.user_agent == "pytest-browser/1"
        return event

    assert web.post(f"{base}/members/", {"email": "new@example.test", "role": "finance"}).status_code == 302
    event = by_owner(trail.one("member.invited"))
    assert event.changes == {"email": [None, "new@example.test"], "role": [None, "finance"]}
    assert event.target_label == "new@example.test"
    membership = Membership.objects.get(org=org, user__email="new@example.test")
    assert str(membership.pk) == event.target_id

    web.post(f"{base}/members/{membership.pk}/", {"role": "admin"})
    assert by_owner(trail.one("member.role_changed")).changes == {"role": ["finance", "admin"]}
    web.post(f"{base}/members/{membership.pk}/", {"role": "admin"})  # same role: no change, no event
    trail.none()
    web.post(f"{base}/members/{membership.pk}/", {"remove": "1"})
    assert by_owner(trail.one("member.removed")).changes == {
        "email": ["new@example.test", None],
        "role": ["admin", None],
    }

    web.post(f"{base}/organisation/", {"name": "Acme Renamed", "currency": "EUR", "timezone": org.timezone})
    assert by_owner(trail.one("org.updated")).changes == {
        "currency": ["USD", "EUR"],
        "name": ["Acme Test", "Acme Renamed"],
    }

    response = web.post(f"{base}/tokens/", {"name": "web token", "scopes": ["read"], "expires_in_days": ""})
    assert response.status_code == 200
    event = by_owner(trail.one("token.created"))
    plaintext = response.context["plaintext"]
    assert plaintext not in json.dumps(event.changes) and event.changes["prefix"] == [None, plaintext[:12]]
    web.post(f"{base}/tokens/{event.target_id}/revoke/")
    by_owner(trail.one("token.revoked"))


def test_web_connector_key_rotation_and_pause_are_recorded(org, member_of):
    from apps.connectors.services import connection_create

    admin = member_of(org, "admin", user__email="admin@example.test")
    connection = connection_create(org=org, provider="sandbox", label="S", api_key="sandbox-key-0001")
    trail = Trail(org)
    web = _login(admin)
    url = f"/o/{org.slug}/connectors/{connection.pk}/"
    assert web.post(url, {"action": "key", "api_key": "sandbox-key-0002"}).status_code == 302
    event = trail.one("connector.key_rotated")
    assert event.actor_label == "admin@example.test" and event.ip_address == IP
    assert event.changes == {"api_key": ["[secret]", "[secret]"], "key_hint": ["0001", "0002"]}
    assert "sandbox-key" not in json.dumps(event.changes)
    web.post(url, {"action": "pause"})
    assert trail.one("connector.disabled").changes == {"is_active": [True, False]}
    web.post(url, {"action": "delete"})
    trail.one("connector.deleted")


def test_outside_a_request_the_actor_is_system(org):
    from apps.orgs.services import team_create

    team_create(org=org, name="Batch")
    event = AuditEvent.objects.get(action="team.created")
    assert (event.actor_type, event.actor_label, event.ip_address) == ("system", "system", None)
    assert event.actor_user_id is None and event.actor_token_id is None


def test_a_change_that_rolls_back_leaves_no_event(org):
    from django.core.exceptions import ValidationError

    from apps.orgs.services import team_create

    TeamFactory(org=org, name="Dup")
    trail = Trail(org)
    with pytest.raises(ValidationError):
        team_create(org=org, name="dup")
    trail.none()


def test_x_forwarded_for_counts_only_behind_a_trusted_proxy(api, org, settings):
    client = api(org)
    headers = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "198.51.100.1, 192.0.2.9"}
    client.post("/api/v1/teams", {"name": "A"}, format="json", **headers)
    assert AuditEvent.objects.get(target_label="A").ip_address == "10.0.0.5"  # header ignored
    settings.TRUSTED_PROXY_COUNT = 1
    client.post("/api/v1/teams", {"name": "B"}, format="json", **headers)
    # one proxy: the address it saw is the right-most entry; the left one could be forged by the client
    assert AuditEvent.objects.get(target_label="B").ip_address == "192.0.2.9"
    settings.TRUSTED_PROXY_COUNT = 2
    client.post("/api/v1/teams", {"name": "C"}, format="json", **headers)
    assert AuditEvent.objects.get(target_label="C").ip_address == "198.51.100.1"
    client.post(
        "/api/v1/teams", {"name": "D"}, format="json", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="junk"
    )
    assert AuditEvent.objects.get(target_label="D").ip_address == "10.0.0.5"


def test_secret_fields_are_masked_whatever_the_caller_passes(org):
    event = audit.record(
        org=org,
        action="connector.updated",
        target_type="connector",
        changes={
            "api_key": ["sk-old-value", "sk-new-value"],
            "secret": [None, "whsec_x"],
            "label": ["a", "b"],
        },
        actor=SYSTEM,
    )
    event.refresh_from_db()
    assert event.changes == {
        "api_key": ["[secret]", "[secret]"],
        "secret": [None, "[secret]"],
        "label": ["a", "b"],
    }


def test_webhook_channel_secret_never_enters_the_trail(api, org):
    client = api(org)
    made = client.post(
        "/api/v1/alert-channels",
        {"kind": "webhook", "name": "Hook", "url": "https://example.test/h"},
        format="json",
    ).json()
    event = AuditEvent.objects.get(action="alert_channel.created")
    assert made["secret"].startswith("whsec_") and made["secret"] not in json.dumps(event.changes)
    assert event.changes["secret"] == [None, "[secret]"]
    channel = AlertChannel.objects.get(pk=made["id"])
    assert channel.secret_encrypted not in json.dumps(event.changes)


def test_org_created_by_the_service_is_recorded(db):
    from apps.orgs.services import org_create
    from tests.factories import UserFactory

    user = UserFactory(email="founder@example.test")
    org = org_create(name="Fresh Co", owner=user)
    event = AuditEvent.objects.get(org=org)
    assert event.action == "org.created" and event.changes["owner"] == [None, "founder@example.test"]


def test_deleting_an_org_or_a_user_leaves_its_trail(org, member_of):
    from apps.orgs.services import team_create

    admin = member_of(org, "admin")
    MembershipFactory(org=org, role="owner")
    team_create(org=org, name="Kept")
    audit.record(org=org, action="team.updated", target_type="team", actor=SYSTEM)
    ids = set(AuditEvent.objects.for_org(org).values_list("pk", flat=True))
    org_id = org.pk
    admin.delete()
    org.delete()
    assert set(AuditEvent.objects.filter(org_id=org_id).values_list("pk", flat=True)) == ids


def test_diff_keeps_only_real_changes():
    from decimal import Decimal

    assert audit.diff({"amount": Decimal("5.00"), "name": "a"}, {"amount": Decimal("5"), "name": "a"}) == {}
    assert audit.diff({"amount": Decimal("5.00"), "tags": [1]}, {"amount": Decimal("6"), "tags": [1, 2]}) == {
        "amount": [Decimal("5.00"), Decimal("6")],
        "tags": [[1], [1, 2]],
    }


def test_patching_a_channel_validates_like_creating_one(api, org):
    from tests.helpers import assert_error

    client = api(org)
    hook = client.post(
        "/api/v1/alert-channels",
        {"kind": "webhook", "name": "Hook", "url": "https://example.test/h"},
        format="json",
    ).json()
    url = f"/api/v1/alert-channels/{hook['id']}"
    trail = Trail(org)
    assert_error(client.patch(url, {"kind": "email"}, format="json"), 400, fields=["kind"])
    assert_error(client.patch(url, {"url": ""}, format="json"), 400, fields=["url"])
    assert_error(client.patch(url, {"nope": 1}, format="json"), 400, fields=["nope"])
    trail.none()
    assert client.put(url, {"name": "x"}, format="json").status_code == 405
    answer = client.patch(url, {"url": "https://example.test/new", "slack_format": True}, format="json")
    assert answer.status_code == 200 and answer.json()["secret"] is None
    assert trail.one("alert_channel.updated").changes == {
        "slack_format": [False, True],
        "url": ["https://example.test/h", "https://example.test/new"],
    }


def test_an_invited_person_choosing_a_password_accepts_the_invitation(
    org, member_of, django_capture_on_commit_callbacks
):
    import re

    from django.core import mail

    from apps.orgs.services import membership_invite

    owner = member_of(org, "owner", user__email="owner@example.test")
    with django_capture_on_commit_callbacks(execute=True):
        membership_invite(org=org, email="newbie@example.test", role="member", invited_by=owner)
    trail = Trail(org)
    link = re.search(r"http://[^/]+(/accounts/password/reset/\S+/)", mail.outbox[-1].body).group(1)
    web = Client(REMOTE_ADDR=IP)
    form_url = web.get(link)["Location"]  # Django swaps the token for a session marker first
    response = web.post(
        form_url, {"new_password1": "a long new passphrase", "new_password2": "a long new passphrase"}
    )
    assert response.status_code == 302
    event = trail.one("member.invite_accepted")
    assert event.target_label == "newbie@example.test" and event.ip_address == IP
    assert event.changes == {"password": [None, "[secret]"]}

    # a later reset by someone who already has a password is not an acceptance
    mail.outbox.clear()
    web.post("/accounts/password/reset/", {"email": "newbie@example.test"})
    link = re.search(r"http://[^/]+(/accounts/password/reset/\S+/)", mail.outbox[-1].body).group(1)
    form_url = web.get(link)["Location"]
    again = web.post(
        form_url, {"new_password1": "another long passphrase", "new_password2": "another long passphrase"}
    )
    assert again.status_code == 302
    trail.none()
