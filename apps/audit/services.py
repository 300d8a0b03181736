"""Writing the audit trail. Services call record() in the same transaction as the change they describe, so a change
that rolls back leaves no event and an event never describes a change that did not happen."""

import datetime
import decimal
import uuid

from django.db import models

from apps.audit.context import Actor, current_actor
from apps.audit.models import AuditEvent

MASK = "[secret]"
# Field names whose values never enter the trail: only the fact that they changed does.
SECRET_FIELDS = frozenset(
    {
        "api_key",
        "key",
        "key_encrypted",
        "token",
        "token_hash",
        "plaintext",
        "secret",
        "secret_encrypted",
        "password",
    }
)


def _plain(value):
    """A JSON-safe, stable rendering of a field value."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float | decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return str(value)


def mask(changes: dict) -> dict:
    """{field: [before, after]} with secret fields masked: a secret shows as set/changed, never as its value."""
    out = {}
    for field, (before, after) in changes.items():
        if field in SECRET_FIELDS:
            out[field] = [MASK if before else None, MASK if after else None]
        else:
            out[field] = [_plain(before), _plain(after)]
    return out


def snapshot(obj, fields) -> dict:
    """The values of `fields` on obj (foreign keys as ids), for diff()."""
    values = {}
    for name in fields:
        field = obj._meta.get_field(name)
        if field.many_to_many:
            values[name] = sorted(getattr(obj, name).values_list("pk", flat=True)) if obj.pk else []
        elif field.is_relation:
            values[name] = getattr(obj, field.attname)
        else:
            values[name] = getattr(obj, name)
    return values


def diff(before: dict, after: dict) -> dict:
    """Only what changed: {field: [before, after]}. Equal values of different spelling (Decimal 5 and 5.00) are
    not a change."""
    return {
        k: [before.get(k), after.get(k)]
        for k in sorted(set(before) | set(after))
        if before.get(k) != after.get(k) and _plain(before.get(k)) != _plain(after.get(k))
    }


def created(after: dict) -> dict:
    return {k: [None, v] for k, v in after.items() if v not in (None, "", [], {})}


def deleted(before: dict) -> dict:
    return {k: [v, None] for k, v in before.items() if v not in (None, "", [], {})}


def record(
    *,
    org,
    action: str,
    target=None,
    target_type: str | None = None,
    target_id=None,
    target_label: str | None = None,
    changes: dict | None = None,
    actor: Actor | None = None,
) -> AuditEvent:
    """Appends one event. Who and from where come from the current request (user or API token, address), or
    `system` outside one. `action` is `<target type>.<verb>` (token.created, member.role_changed…)."""
    actor = actor or current_actor()
    if target is not None:
        target_id = target.pk if target_id is None else target_id
        target_label = str(target) if target_label is None else target_label
    event = AuditEvent(
        org_id=org.pk if hasattr(org, "pk") else org,
        actor_type=actor.type,
        actor_user_id=actor.user_id,
        actor_token_id=actor.token_id,
        actor_token_prefix=actor.token_prefix,
        actor_label=actor.label[:200],
        ip_address=actor.ip_address,
        user_agent=actor.user_agent[:300],
        action=action,
        target_type=target_type or action.split(".", 1)[0],
        target_id="" if target_id is None else str(target_id),
        target_label=(target_label or "")[:200],
        changes=mask(changes or {}),
    )
    event.save()
    return event
