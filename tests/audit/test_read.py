"""Owners and admins read the trail (web: Settings → Audit log; API: GET /api/v1/audit with an admin token)."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apps.audit import services as audit
from apps.audit.context import SYSTEM, Actor
from apps.audit.models import AuditEvent
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db


def _event(org, action, *, actor=SYSTEM, **kwargs):
    return audit.record(org=org, action=action, actor=actor, **kwargs)


@pytest.fixture
def reader(api, org):
    """An admin token of org. Making it is itself an audited change: the first event after the back-dated one."""
    return api(org, scopes=["admin"])


@pytest.fixture
def trail(org, other_org, reader):
    alice = Actor(type="user", label="alice@example.test", user_id=None, ip_address="198.51.100.4")
    token = Actor(
        type="token", label="token spc_abcdefgh… “CI”", token_prefix="spc_abcdefgh", ip_address="::1"
    )
    # created_at is set once, at insert: an old event is inserted back-dated (the trail is never updated)
    old = AuditEvent(
        org=org,
        actor_type="user",
        actor_label="alice@example.test",
        action="budget.created",
        target_type="budget",
        target_id="7",
        target_label="Old budget",
        changes={"amount": [None, "5.00"]},
        created_at=timezone.now() - timedelta(days=40),
    )
    old.save()
    events = [
        old,
        _event(org, "token.created", actor=alice, target_type="token", target_id=3, target_label="CI"),
        _event(
            org,
            "member.role_changed",
            actor=alice,
            target_label="bob@example.test",
            changes={"role": ["member", "admin"]},
        ),
        _event(
            org, "budget.updated", actor=token, target_type="budget", target_id=7, target_label="Old budget"
        ),
        _event(org, "connector.key_rotated", target_label="OpenAI prod", changes={"api_key": ["k", "k2"]}),
    ]
    _event(other_org, "token.created", target_label="OTHER-ORG-SECRET")
    return events


def test_api_lists_newest_first_with_filters(reader, org, trail):
    client = reader
    body = client.get("/api/v1/audit").json()
    assert body["count"] == 6
    assert [(r["action"], r["target"]["label"]) for r in body["results"]] == [
        ("connector.key_rotated", "OpenAI prod"),
        ("budget.updated", "Old budget"),
        ("member.role_changed", "bob@example.test"),
        ("token.created", "CI"),
        ("token.created", f"test token ({reader.token.prefix}…)"),
        ("budget.created", "Old budget"),
    ]
    first = body["results"][0]
    assert first["changes"] == {"api_key": ["[secret]", "[secret]"]}
    assert first["actor"] == {
        "type": "system",
        "label": "system",
        "user_id": None,
        "token_id": None,
        "token_prefix": "",
    }
    assert first["target"] == {"type": "connector", "id": "", "label": "OpenAI prod"}
    assert "OTHER-ORG-SECRET" not in str(body)

    def actions(query):
        response = client.get(f"/api/v1/audit?{query}")
        assert response.status_code == 200, response.content
        return [r["action"] for r in response.json()["results"]]

    assert actions("action=token.created") == ["token.created", "token.created"]
    assert actions("action=budget.") == ["budget.updated", "budget.created"]
    assert actions("actor=alice@example") == ["member.role_changed", "token.created", "budget.created"]
    assert actions("actor=spc_abcdefgh") == ["budget.updated"]
    assert actions("actor_type=token") == ["budget.updated"]
    assert actions("target_type=budget&target_id=7") == ["budget.updated", "budget.created"]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert len(actions(f"created_after={since.replace('+', '%2B')}")) == 5
    assert actions(f"created_before={since.replace('+', '%2B')}") == ["budget.created"]
    detail = client.get(f"/api/v1/audit/{trail[2].pk}").json()
    assert detail["changes"] == {"role": ["member", "admin"]} and detail["ip_address"] == "198.51.100.4"
    assert_error(client.get("/api/v1/audit?created_after=yesterday"), 400, fields=["created_after"])
    assert_error(client.get("/api/v1/audit?actor_type=robot"), 400, fields=["actor_type"])


def test_api_needs_the_admin_scope_and_hides_other_orgs(api, org, other_org, trail):
    for scopes in (["read"], ["read", "ingest", "check"]):
        assert_error(api(org, scopes=scopes).get("/api/v1/audit"), 403, code="permission_denied")
        assert_error(api(org, scopes=scopes).get(f"/api/v1/audit/{trail[1].pk}"), 403)
    assert api(other_org).get(f"/api/v1/audit/{trail[1].pk}").status_code == 404
    assert_error(Client().get("/api/v1/audit"), 401)


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owners_and_admins_read_the_audit_page(org, member_of, trail, role):
    web = Client()
    web.force_login(member_of(org, role))
    url = f"/o/{org.slug}/settings/audit/"
    page = web.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "connector.key_rotated" in html and "bob@example.test" in html and "OTHER-ORG-SECRET" not in html
    assert 'href="/o/acme-test/settings/audit/" aria-current="page"' in html
    assert "[secret]" in html

    def shown(**query):
        return [e.action for e in web.get(url, query).context["page"].object_list]

    assert shown(action="token.created") == ["token.created", "token.created"]
    assert shown(actor="alice") == ["member.role_changed", "token.created", "budget.created"]
    by_target = web.get(url, {"target_type": "budget"}).context["page"].object_list
    assert [e.action for e in by_target] == ["budget.updated", "budget.created"]
    today = timezone.now().date()
    recent = web.get(url, {"start": str(today - timedelta(days=2)), "end": str(today)}).context["page"]
    assert "budget.created" not in [e.action for e in recent.object_list] and len(recent.object_list) == 5
    old = web.get(url, {"end": str(today - timedelta(days=30))}).context["page"]
    assert [e.action for e in old.object_list] == ["budget.created"]
    bad = web.get(url, {"start": str(today), "end": str(today - timedelta(days=3))})
    assert bad.status_code == 200 and "must not be before" in bad.content.decode()


@pytest.mark.parametrize("role", ["finance", "member"])
def test_finance_and_members_neither_see_nor_open_the_audit_log(org, member_of, trail, role):
    web = Client()
    web.force_login(member_of(org, role))
    assert web.get(f"/o/{org.slug}/settings/audit/").status_code == 403
    teams = web.get(f"/o/{org.slug}/settings/teams/").content.decode()
    assert "Audit log" not in teams and "/settings/audit/" not in teams


def test_a_non_member_gets_a_404(org, other_org, member_of, trail):
    web = Client()
    web.force_login(member_of(other_org, "owner"))
    assert web.get(f"/o/{org.slug}/settings/audit/").status_code == 404


def test_the_page_is_paginated(org, member_of):
    for n in range(55):
        audit.record(
            org=org, action="team.created", target_type="team", target_label=f"T{n:02d}", actor=SYSTEM
        )
    web = Client()
    web.force_login(member_of(org, "owner"))
    url = f"/o/{org.slug}/settings/audit/"
    first = web.get(url, {"action": "team.created"})
    assert len(first.context["page"].object_list) == 50 and "T54" in first.content.decode()
    assert "page=2" in first.content.decode() and "action=team.created" in first.content.decode()
    second = web.get(url, {"action": "team.created", "page": 2})
    labels = [e.target_label for e in second.context["page"].object_list]
    assert len(labels) == 5 and "T00" in labels


def test_times_and_date_filters_follow_the_orgs_time_zone(org, member_of):
    from datetime import UTC, datetime

    org.timezone = "Asia/Tokyo"
    org.save()
    # 23:30 UTC on 1 March is 08:30 on 2 March in Tokyo
    AuditEvent(
        org=org,
        actor_type="system",
        actor_label="system",
        action="team.created",
        target_type="team",
        created_at=datetime(2026, 3, 1, 23, 30, tzinfo=UTC),
    ).save()
    web = Client()
    web.force_login(member_of(org, "owner"))
    url = f"/o/{org.slug}/settings/audit/"
    html = web.get(url, {"action": "team.created"}).content.decode()
    assert "2 Mar 2026<br>08:30:00" in html
    assert (
        len(
            web.get(url, {"action": "team.created", "start": "2026-03-02", "end": "2026-03-02"}).context[
                "events"
            ]
        )
        == 1
    )
    assert len(web.get(url, {"action": "team.created", "end": "2026-03-01"}).context["events"]) == 0


def test_time_filters_take_any_iso_offset_and_extreme_years(reader, trail):
    """ISO 8601 allows offsets PostgreSQL refuses (beyond ±15:59) and years that leave the calendar in UTC: both
    are compared in UTC, never a 500 (found by the API fuzzing run: `created_before=0461-04-21T16:30:29-20:14`)."""

    def count(query):
        response = reader.get("/api/v1/audit?" + query.replace("+", "%2B"))
        assert response.status_code == 200, response.content
        return response.json()["count"]

    assert count("created_before=0461-04-21T16:30:29.410-20:14") == 0
    assert count("created_after=0461-04-21T16:30:29.410-20:14") == 6
    assert count("created_after=0001-01-01T00:00:00+05:00") == 6
    assert count("created_before=9999-12-31T23:00:00-05:00") == 6
