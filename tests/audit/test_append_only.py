"""Nobody can change or delete an audit event through the app: model, queryset, admin, API; on PostgreSQL not even
raw SQL (a trigger)."""

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from apps.audit import services as audit
from apps.audit.context import SYSTEM
from apps.audit.models import AppendOnlyError, AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def event(org):
    return audit.record(
        org=org,
        action="budget.updated",
        target_type="budget",
        target_id=1,
        changes={"amount": [1, 2]},
        actor=SYSTEM,
    )


def _unchanged(event):
    row = AuditEvent.objects.get(pk=event.pk)
    assert row.action == "budget.updated" and row.changes == {"amount": [1, 2]}


def test_the_model_refuses_to_save_an_existing_event_or_delete_it(event):
    event.action = "budget.deleted"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    _unchanged(event)


def test_the_queryset_refuses_update_delete_and_bulk_update(event):
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action="x")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.for_org(event.org).delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.bulk_update([event], ["action"])
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.update_or_create(pk=event.pk, defaults={"action": "x"})
    _unchanged(event)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger exists on PostgreSQL only")
def test_on_postgresql_a_trigger_refuses_raw_update_and_delete(event):
    for sql in (
        "UPDATE audit_auditevent SET action = 'forged' WHERE id = %s",
        "DELETE FROM audit_auditevent WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cur,
        ):
            cur.execute(sql, [event.pk])
    _unchanged(event)
    with connection.cursor() as cur:  # inserting stays possible
        cur.execute(
            "INSERT INTO audit_auditevent (org_id, actor_type, actor_token_prefix, actor_label, user_agent, action,"
            " target_type, target_id, target_label, changes, created_at)"
            " VALUES (%s, 'system', '', 'system', '', 'x.y', 'x', '', '', '{}', now())",
            [event.org_id],
        )
    assert AuditEvent.objects.filter(action="x.y").count() == 1


def test_the_trigger_is_installed_on_postgresql_only():
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_auditevent'::regclass")
            assert ("audit_event_append_only",) in cur.fetchall()
        else:
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            assert cur.fetchall() == []


def test_the_admin_can_look_but_not_add_change_or_delete(event, admin_client):
    listing = admin_client.get("/admin/audit/auditevent/")
    assert listing.status_code == 200 and b"budget.updated" in listing.content
    page = admin_client.get(f"/admin/audit/auditevent/{event.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert (
        admin_client.post(f"/admin/audit/auditevent/{event.pk}/change/", {"action": "x"}).status_code == 403
    )
    assert admin_client.get("/admin/audit/auditevent/add/").status_code == 403
    assert (
        admin_client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    _unchanged(event)


def test_the_api_has_no_write_routes(api, event):
    client = api(event.org)
    assert client.post("/api/v1/audit", {"action": "x"}, format="json").status_code == 405
    for method in ("put", "patch", "delete"):
        assert getattr(client, method)(f"/api/v1/audit/{event.pk}", {}, format="json").status_code == 405
    _unchanged(event)
