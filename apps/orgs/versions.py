"""The org version: one Redis key per org that processes compare their cached copies against.

The pre-flight check keeps API tokens and the org's check configuration (budgets, teams, price overrides) in each
worker's memory and confirms them on every request by reading this key in the same Redis round trip as the spend
counters. Every change that could alter a check's answer or a token's validity (token revoked or edited, membership
changed or removed, user deactivated, budget / team / price override saved or deleted) sets a new random value, at
the change and again after its transaction commits, so the next check in any process reloads from the database.

A copy is reloaded at least every CACHE_SECONDS anyway, which bounds staleness for changes that bypass model signals
(queryset.update(), raw SQL) or whose bump could not reach Redis.
"""

import logging
import uuid

from django.conf import settings
from django.db import transaction

from spendctl.common import redis_client

logger = logging.getLogger(__name__)
CACHE_SECONDS = 5.0

# GET the version, creating it if missing (ARGV[1] is a fresh candidate), so a lost key never matches a cached copy.
CURRENT = """
local v = redis.call('GET', KEYS[1])
if not v then redis.call('SET', KEYS[1], ARGV[1]) v = ARGV[1] end
return v
"""
_script = None


def key(org_id: int) -> str:
    return f"{settings.SPEND_COUNTER_PREFIX}:ver:{org_id}"


def candidate() -> str:
    return uuid.uuid4().hex


def current(org_id: int) -> str:
    """The org's version now (raises if Redis is unreachable)."""
    global _script
    client = redis_client.client()
    if _script is None or _script.registered_client is not client:
        _script = client.register_script(CURRENT)
    value = _script(keys=[key(org_id)], args=[candidate()])
    return value.decode() if isinstance(value, bytes) else str(value)


def _bump(org_ids) -> None:
    if not redis_client.enabled() or not org_ids:
        return
    try:
        pipe = redis_client.client().pipeline(transaction=False)
        for org_id in org_ids:
            pipe.set(key(org_id), candidate())
        pipe.execute()
    except Exception as exc:  # noqa: BLE001 - caches expire within CACHE_SECONDS anyway
        logger.warning("org version not bumped (%s); cached copies expire within %ss", exc, CACHE_SECONDS)
        redis_client.mark_down()


def org_changed(*org_ids: int) -> None:
    """Something a check or a token depends on changed: bump now and again once the transaction commits (a reader
    that loaded between the two still sees the old rows, and the second bump makes it reload)."""
    ids = sorted({i for i in org_ids if i})
    _bump(ids)
    transaction.on_commit(lambda: _bump(ids))


def connect_signals() -> None:
    from django.contrib.auth import get_user_model
    from django.db.models.signals import post_delete, post_save

    from apps.orgs.models import ApiToken, Membership, Team

    def org_row_changed(sender, instance, **kwargs):
        org_changed(instance.org_id)

    def token_changed(sender, instance, update_fields=None, **kwargs):
        if update_fields is not None and set(update_fields) <= {"last_used_at"}:
            return
        org_changed(instance.org_id)

    def user_changed(sender, instance, update_fields=None, **kwargs):
        if not redis_client.enabled():
            return  # nothing is cached across requests without Redis
        if update_fields is not None and set(update_fields) <= {"last_login", "password"}:
            return  # a log-in: nothing a token depends on
        org_ids = set(Membership.objects.filter(user_id=instance.pk).values_list("org_id", flat=True))
        org_ids |= set(ApiToken.objects.filter(created_by_id=instance.pk).values_list("org_id", flat=True))
        org_changed(*org_ids)

    User = get_user_model()
    post_save.connect(token_changed, sender=ApiToken, dispatch_uid="org-version-token-save")
    post_delete.connect(org_row_changed, sender=ApiToken, dispatch_uid="org-version-token-delete")
    for model in (Membership, Team):
        name = model.__name__
        post_save.connect(org_row_changed, sender=model, dispatch_uid=f"org-version-{name}-save")
        post_delete.connect(org_row_changed, sender=model, dispatch_uid=f"org-version-{name}-delete")
    post_save.connect(user_changed, sender=User, dispatch_uid="org-version-user-save")
