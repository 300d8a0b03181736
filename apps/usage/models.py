"""The ledger: one row per provider bucket or per pushed call, and the daily rollup every screen reads."""

from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from apps.orgs.tenancy import OrgOwnedModel, OrgQuerySet

MONEY = {"max_digits": 24, "decimal_places": 10}

SOURCE_PROVIDER, SOURCE_EVENT = "provider", "event"
SOURCES = [(SOURCE_PROVIDER, "Provider pull"), (SOURCE_EVENT, "Pushed event")]
BASIS_REPORTED, BASIS_COMPUTED, BASIS_UNPRICED = "reported", "computed", "unpriced"
BASES = [
    (BASIS_REPORTED, "Reported by the provider"),
    (BASIS_COMPUTED, "Computed from the catalog"),
    (BASIS_UNPRICED, "Unpriced: model has no price"),
]
TEAM_EXPLICIT, TEAM_TOKEN, TEAM_RULE, TEAM_NONE = "explicit", "token", "rule", "none"
TEAM_SOURCES = [
    (TEAM_EXPLICIT, "Named in the event"),
    (TEAM_TOKEN, "The token's team"),
    (TEAM_RULE, "Attribution rule"),
    (TEAM_NONE, "Unattributed"),
]
SERVICE_TIERS = ["standard", "batch", "flex", "priority"]
TAG_COLUMNS = ("feature", "task_id", "customer", "end_user", "environment")

# Token classes kept apart. `uncached_input_tokens + cache_read_tokens + cache_write_tokens` is all input;
# reasoning is part of output; audio counts are parts of input/output.
TOKEN_FIELDS = (
    "uncached_input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
)


# The ledger and its rollups are the hot write path (COPY, then one INSERT … ON CONFLICT per batch). Their org is
# set by the services from the authenticated org, never from input, and an org's rows go when the org goes (Django's
# cascade), so the database keeps no foreign-key constraint here: PostgreSQL would otherwise run a deferred
# referential-integrity check per inserted row at commit. No single-column org index either: every other index and
# unique key starts with org.
_HOT_ORG = {"on_delete": models.CASCADE, "related_name": "+", "db_constraint": False, "db_index": False}


# No time zone is more than 14 hours from UTC, so a record's day (its start's date in the org's time zone when it was
# written, or the UTC date of a provider's daily bucket) is never further than that from its start's UTC date.
_MAX_UTC_OFFSET = timedelta(hours=14)


class DayQuerySet(OrgQuerySet):
    """Rows with a `day` column (the ledger and its rollups)."""

    def on_days(self, start: date | None = None, end: date | None = None):
        """Rows whose day is in [start, end) (either bound may be None)."""
        qs = self
        if start is not None:
            qs = qs.filter(day__gte=start)
        if end is not None:
            qs = qs.filter(day__lt=end)
        return qs


class UsageRecordQuerySet(DayQuerySet):
    def on_days(self, start: date | None = None, end: date | None = None):
        """The ledger keeps no (org, day) index (one index less to write per row on the ingest path): the day range
        is also given as the start_time range it implies (widened by the largest UTC offset), which the (org,
        start_time) index serves; the day conditions keep the result exact."""
        qs = super().on_days(start, end)
        if start is not None:
            qs = qs.filter(start_time__gte=datetime.combine(start, time(), UTC) - _MAX_UTC_OFFSET)
        if end is not None:
            qs = qs.filter(start_time__lt=datetime.combine(end, time(), UTC) + _MAX_UTC_OFFSET)
        return qs


class UsageRecord(OrgOwnedModel):
    id = models.BigAutoField(primary_key=True)
    org = models.ForeignKey("orgs.Organization", **_HOT_ORG)
    source = models.CharField(max_length=8, choices=SOURCES)
    # Unique per org and source: the event id, or the provider bucket's connection + dimensions + start.
    key = models.CharField(max_length=255)
    connection_id = models.BigIntegerField(null=True, blank=True)
    token_id = models.BigIntegerField(null=True, blank=True, help_text="The API token that pushed the event")
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128, help_text="Normalised model name")
    model_raw = models.CharField(max_length=255, help_text="The model name as received")
    project_id = models.CharField(max_length=128, null=True, blank=True)
    workspace_id = models.CharField(max_length=128, null=True, blank=True)
    api_key_id = models.CharField(max_length=128, null=True, blank=True)
    # The team id is kept when a team is deleted, so recorded usage keeps its numbers and its attribution.
    team = models.ForeignKey(
        "orgs.Team",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # read with the org, through the org's other indexes
        related_name="+",
    )
    team_source = models.CharField(max_length=8, choices=TEAM_SOURCES, default=TEAM_NONE)
    feature = models.CharField(max_length=128, default="", blank=True)
    task_id = models.CharField(max_length=128, default="", blank=True)
    customer = models.CharField(max_length=128, default="", blank=True)
    end_user = models.CharField(max_length=128, default="", blank=True)
    environment = models.CharField(max_length=64, default="", blank=True)
    tags = models.JSONField(default=dict, blank=True, help_text="Free-form key/values beyond the named tags")
    start_time = models.DateTimeField()
    day = models.DateField(help_text="The start's day in the org's time zone")
    bucket_seconds = models.IntegerField(
        default=0, db_default=0, help_text="0 for one call; 3600 or 86400 for provider buckets"
    )
    service_tier = models.CharField(max_length=16, default="standard")
    context_window = models.CharField(max_length=32, default="", db_default="", blank=True)
    requests = models.BigIntegerField(default=1)
    uncached_input_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    cache_write_1h_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    input_audio_tokens = models.BigIntegerField(default=0)
    output_audio_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(**MONEY, help_text="The cost this record counts for")
    currency = models.CharField(max_length=3, default="USD", db_default="USD")
    cost_basis = models.CharField(max_length=8, choices=BASES)
    computed_cost = models.DecimalField(**MONEY, null=True, blank=True, help_text="Catalog price, when known")
    reported_cost = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Provider's or caller's cost"
    )
    price_ref = models.CharField(max_length=160, default="", blank=True, help_text="Which price was applied")
    # the database's defaults (here and above) fill the columns a COPY of the ledger leaves out (ledger.RecordWriter)
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())

    objects = UsageRecordQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "source", "key"], name="usage_record_key_unique"),
            models.CheckConstraint(
                condition=Q(requests__gte=0)
                & Q(uncached_input_tokens__gte=0)
                & Q(cache_read_tokens__gte=0)
                & Q(cache_write_tokens__gte=0)
                & Q(output_tokens__gte=0)
                & Q(reasoning_tokens__gte=0),
                name="usage_record_counts_not_negative",
            ),
            models.CheckConstraint(condition=Q(cost__gte=0), name="usage_record_cost_not_negative"),
        ]
        indexes = [
            # day ranges are read through it too: UsageRecordQuerySet.on_days
            models.Index(fields=["org", "start_time"], name="usage_org_start"),
            # Partial: pushed events (connection_id NULL) and priced rows, the bulk of the ledger, skip these two.
            models.Index(
                fields=["org", "day"], name="usage_org_unpriced_day", condition=Q(cost_basis=BASIS_UNPRICED)
            ),
            models.Index(
                fields=["org", "connection_id", "start_time"],
                name="usage_org_conn_start",
                condition=Q(connection_id__isnull=False),
            ),
        ]

    @property
    def input_tokens(self) -> int:
        """All input, the OpenAI/OpenTelemetry way."""
        return self.uncached_input_tokens + self.cache_read_tokens + self.cache_write_tokens


class RollupSums(models.Model):
    """What every rollup adds up."""

    records = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    uncached_input_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    cache_write_1h_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    input_audio_tokens = models.BigIntegerField(default=0)
    output_audio_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(**MONEY, default=0)
    computed_cost = models.DecimalField(**MONEY, default=0)
    reported_cost = models.DecimalField(**MONEY, default=0)
    unpriced_records = models.BigIntegerField(default=0)
    unpriced_requests = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class DailyRollup(OrgOwnedModel, RollupSums):
    """Spend per org-local day, team, provider, model, feature and customer. Kept current on every write."""

    id = models.BigAutoField(primary_key=True)
    org = models.ForeignKey("orgs.Organization", **_HOT_ORG)
    day = models.DateField()
    team_id = models.BigIntegerField(default=0, help_text="0 = unattributed")
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128)
    feature = models.CharField(max_length=128, default="")
    customer = models.CharField(max_length=128, default="")

    objects = DayQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["org", "day", "team_id", "provider", "model", "feature", "customer"],
                name="usage_rollup_key_unique",
            )
        ]
        # No other index: the unique key (org, day, ...) serves every read by day range, and each index more is
        # one more entry to write per new group. The table is filled to 70 % (migration 0005, PostgreSQL) so that
        # adding a batch to an existing group is an in-page (HOT) update that writes no index entry at all.

    def __str__(self):
        return f"{self.day} {self.provider}/{self.model}: {self.cost}"


class DailyModelRollup(OrgOwnedModel, RollupSums):
    """Spend per org-local day, provider and model: the coarse rollup that answers the most common questions
    (spend per day and model, per provider) in a few thousand rows. Kept current on every write."""

    id = models.BigAutoField(primary_key=True)
    org = models.ForeignKey("orgs.Organization", **_HOT_ORG)
    day = models.DateField()
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128)

    objects = DayQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["org", "day", "provider", "model"], name="usage_model_rollup_key_unique"
            )
        ]

    def __str__(self):
        return f"{self.day} {self.provider}/{self.model}: {self.cost}"


class AttributionRule(OrgOwnedModel):
    """Maps a provider project / workspace / API key id, or a tag value, to a team. First match by priority wins."""

    KINDS = [
        ("project_id", "Provider project id"),
        ("workspace_id", "Provider workspace id"),
        ("api_key_id", "Provider API key id"),
        ("tag", "Tag value"),
    ]
    kind = models.CharField(max_length=16, choices=KINDS)
    tag_key = models.CharField(max_length=64, default="", blank=True)
    value = models.CharField(max_length=128)
    team = models.ForeignKey("orgs.Team", on_delete=models.CASCADE, related_name="attribution_rules")
    priority = models.IntegerField(default=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["priority", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["org", "kind", "tag_key", "value"], name="attribution_rule_unique"
            )
        ]


class RepriceRun(OrgOwnedModel):
    """A re-pricing of a date range: previewed, then applied (recorded), and undoable."""

    PREVIEWED, APPLIED, UNDONE = "previewed", "applied", "undone"
    STATUSES = [(PREVIEWED, "Previewed"), (APPLIED, "Applied"), (UNDONE, "Undone")]
    start = models.DateField()
    end = models.DateField(help_text="exclusive")
    status = models.CharField(max_length=10, choices=STATUSES, default=PREVIEWED)
    reason = models.CharField(max_length=200, default="", blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    applied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    records_changed = models.IntegerField(default=0)
    old_total = models.DecimalField(**MONEY, default=0)
    new_total = models.DecimalField(**MONEY, default=0)
    summary = models.JSONField(default=list, help_text="Changes per model and day: old, new, difference")

    class Meta:
        ordering = ["-created_at"]


class RepriceChange(models.Model):
    """One record's cost before and after an applied re-pricing, so the run can be undone exactly."""

    run = models.ForeignKey(RepriceRun, on_delete=models.CASCADE, related_name="changes")
    record = models.ForeignKey(UsageRecord, on_delete=models.CASCADE, related_name="+")
    old_cost = models.DecimalField(**MONEY)
    old_computed_cost = models.DecimalField(**MONEY, null=True)
    old_basis = models.CharField(max_length=8)
    old_price_ref = models.CharField(max_length=160, default="")
    new_cost = models.DecimalField(**MONEY)
    new_computed_cost = models.DecimalField(**MONEY, null=True)
    new_basis = models.CharField(max_length=8)
    new_price_ref = models.CharField(max_length=160, default="")

    def __str__(self):
        return f"record {self.record_id}: {self.old_cost} -> {self.new_cost}"
