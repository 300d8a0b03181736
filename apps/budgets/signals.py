"""Budgets and price overrides change a check's answer: bump the org version so every process reloads them.

(Teams, tokens, memberships and users are connected in apps.orgs.versions.)"""

from django.db.models.signals import post_delete, post_save


def _changed(sender, instance, **kwargs):
    from apps.orgs.versions import org_changed

    org_changed(instance.org_id)


def connect():
    from apps.budgets.models import Budget
    from apps.catalog.models import PriceOverride

    for model in (Budget, PriceOverride):
        post_save.connect(_changed, sender=model, dispatch_uid=f"check-config-{model.__name__}-save")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"check-config-{model.__name__}-delete")
