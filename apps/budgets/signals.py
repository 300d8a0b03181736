"""Invalidates the pre-flight check's per-process configuration when budgets, teams or price overrides change."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save


def _changed(sender, instance, **kwargs):
    from apps.budgets.check import config_changed

    org_id = instance.org_id
    config_changed(org_id)
    transaction.on_commit(lambda: config_changed(org_id))  # and again once committed, for concurrent readers


def connect():
    from apps.budgets.models import Budget
    from apps.catalog.models import PriceOverride
    from apps.orgs.models import Team

    for model in (Budget, PriceOverride, Team):
        post_save.connect(_changed, sender=model, dispatch_uid=f"check-config-{model.__name__}-save")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"check-config-{model.__name__}-delete")
