"""The audit trail: append-only. A row is written once and never changed or deleted through the app.

Enforced at three levels: the model refuses save() of an existing row and delete(); the queryset refuses update()
and delete() (and bulk_update); on PostgreSQL a trigger raises on any UPDATE or DELETE (migration 0002).

Deletion rule: the trail outlives what it talks about. Its foreign keys (org, acting user, acting token) are
DO_NOTHING without a database constraint, so deleting an organisation, a user or a token leaves the events as they
were (the cascade never reaches them, and the trigger never has to make an exception for it). Purging an org's trail
is an operator's decision taken in SQL (see README, Security).
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.orgs.tenancy import OrgOwnedModel, OrgQuerySet


class AppendOnlyError(Exception):
    """Raised when anything tries to change or delete an audit event."""


class AuditEventQuerySet(OrgQuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Audit events are append-only: they cannot be updated.")

    def delete(self):
        raise AppendOnlyError("Audit events are append-only: they cannot be deleted.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AppendOnlyError("Audit events are append-only: they cannot be updated.")

    def update_or_create(self, defaults=None, **kwargs):
        raise AppendOnlyError("Audit events are append-only: they cannot be updated.")

    delete.queryset_only = True


def _kept(**kwargs):
    """A foreign key that deletion of its target never touches (no cascade, no SET NULL, no DB constraint)."""
    return models.ForeignKey(on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", **kwargs)


class AuditEvent(OrgOwnedModel):
    USER, TOKEN, SYSTEM = "user", "token", "system"
    ACTOR_TYPES = [(USER, "Person"), (TOKEN, "API token"), (SYSTEM, "System")]

    org = _kept(to="orgs.Organization")
    actor_type = models.CharField(max_length=8, choices=ACTOR_TYPES)
    actor_user = _kept(to=settings.AUTH_USER_MODEL, null=True, blank=True)
    actor_token = _kept(to="orgs.ApiToken", null=True, blank=True)
    # The token's visible prefix (spc_xxxxxxxx), never the token itself.
    actor_token_prefix = models.CharField(max_length=16, blank=True, default="")
    actor_label = models.CharField(max_length=200, help_text="Who, as it read when it happened")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True, default="")
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=32)
    target_id = models.CharField(max_length=64, blank=True, default="")
    target_label = models.CharField(max_length=200, blank=True, default="")
    changes = models.JSONField(default=dict, blank=True, help_text="{field: [before, after]}, secrets masked")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["org", "-created_at", "-id"], name="audit_org_created"),
            models.Index(fields=["org", "action"], name="audit_org_action"),
            models.Index(fields=["org", "target_type", "target_id"], name="audit_org_target"),
        ]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.target_label}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("Audit events are append-only: an existing event cannot be saved again.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit events are append-only: they cannot be deleted.")
