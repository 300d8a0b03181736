from django.conf import settings
from django.db import models

from apps.orgs.tenancy import OrgOwnedModel
from apps.usage.models import MONEY
from spendctl.common.models import TimestampedModel


class ProviderConnection(OrgOwnedModel, TimestampedModel):
    """An org's admin key for one provider. The key is Fernet-encrypted and never shown again."""

    ACTIVE, NEEDS_KEY, ERROR = "active", "needs_key", "error"
    STATUSES = [(ACTIVE, "Active"), (NEEDS_KEY, "Needs a new key"), (ERROR, "Last sync failed")]
    provider = models.CharField(max_length=32)
    label = models.CharField(max_length=100)
    key_encrypted = models.TextField()
    key_hint = models.CharField(max_length=8, help_text="Last characters of the key, to recognise it")
    base_url = models.URLField(max_length=300, blank=True, default="")
    status = models.CharField(max_length=12, choices=STATUSES, default=ACTIVE)
    is_active = models.BooleanField(default=True, help_text="Paused connections are not synced nightly")
    trailing_days = models.PositiveSmallIntegerField(default=3, help_text="Days re-read every night")
    synced_through = models.DateField(null=True, blank=True, help_text="Last complete UTC day synced")
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["provider", "label"]
        constraints = [
            models.UniqueConstraint(fields=["org", "label"], name="connection_label_unique_per_org")
        ]

    def __str__(self):
        return f"{self.label} ({self.provider})"


class SyncRun(OrgOwnedModel):
    """One sync of a window, in chunks; the cursor of the last committed page makes it resumable."""

    NIGHTLY, MANUAL, BACKFILL = "nightly", "manual", "backfill"
    KINDS = [(NIGHTLY, "Nightly"), (MANUAL, "Sync now"), (BACKFILL, "Backfill")]
    QUEUED, RUNNING, RETRYING, SUCCEEDED, FAILED = "queued", "running", "retrying", "succeeded", "failed"
    STATUSES = [
        (QUEUED, "Queued"),
        (RUNNING, "Running"),
        (RETRYING, "Retrying"),
        (SUCCEEDED, "Succeeded"),
        (FAILED, "Failed"),
    ]
    connection = models.ForeignKey(ProviderConnection, on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=10, choices=KINDS)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    chunk_start = models.DateTimeField(help_text="Progress: where the next chunk starts")
    phase = models.CharField(max_length=6, default="usage")
    cursor = models.CharField(max_length=500, blank=True, default="")
    status = models.CharField(max_length=10, choices=STATUSES, default=QUEUED)
    pages = models.IntegerField(default=0)
    records_added = models.IntegerField(default=0)
    records_replaced = models.IntegerField(default=0)
    cost_rows = models.IntegerField(default=0)
    attempts = models.IntegerField(default=0)
    retries = models.JSONField(default=list, help_text="What was retried: status and wait per attempt")
    error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.connection_id} {self.kind} {self.window_start:%Y-%m-%d}..{self.window_end:%Y-%m-%d}"

    @property
    def progress(self) -> float:
        total = (self.window_end - self.window_start).total_seconds()
        done = (self.chunk_start - self.window_start).total_seconds()
        return 1.0 if self.status == self.SUCCEEDED else round(max(0.0, min(1.0, done / total)), 3)


class ProviderCostRecord(OrgOwnedModel):
    """A cost line as the provider reports it (OpenAI Costs API, Anthropic cost report), for reconciliation."""

    connection = models.ForeignKey(ProviderConnection, on_delete=models.CASCADE, related_name="cost_records")
    key = models.CharField(max_length=200)
    bucket_start = models.DateTimeField()
    day = models.DateField()
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, default="USD")
    model = models.CharField(max_length=128, blank=True, default="")
    line_item = models.CharField(max_length=300, blank=True, default="")
    project_id = models.CharField(max_length=128, blank=True, default="")
    workspace_id = models.CharField(max_length=128, blank=True, default="")
    cost_type = models.CharField(max_length=64, blank=True, default="")
    token_type = models.CharField(max_length=64, blank=True, default="")
    service_tier = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "key"], name="provider_cost_key_unique")]
        indexes = [models.Index(fields=["org", "connection", "day"], name="provider_cost_org_conn_day")]

    def __str__(self):
        return f"{self.day} {self.line_item or self.model}: {self.amount}"
