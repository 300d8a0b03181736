from rest_framework import serializers

from apps.orgs.models import Team
from apps.orgs.tenancy import OrgScopedRelatedField
from apps.usage.models import AttributionRule, RepriceRun, UsageRecord
from spendctl.common.api import StrictModelSerializer, StrictSerializer


class EventBatchSerializer(StrictSerializer):
    """Documents the body; each event is validated on its own by apps.usage.events (one fast pass, per-event errors)."""

    events = serializers.ListField(child=serializers.DictField(), help_text="Up to 5,000 call events.")


class EventInSchema(serializers.Serializer):
    id = serializers.CharField(
        max_length=200, help_text="Your unique id of the call: a repeated id is not counted again"
    )
    timestamp = serializers.DateTimeField(help_text="ISO 8601 with an offset")
    provider = serializers.CharField(max_length=64)
    model = serializers.CharField(max_length=200)
    input_tokens = serializers.IntegerField(
        min_value=0, help_text="All input, including cache reads and writes"
    )
    cache_read_tokens = serializers.IntegerField(min_value=0, required=False)
    cache_write_tokens = serializers.IntegerField(min_value=0, required=False)
    output_tokens = serializers.IntegerField(min_value=0, help_text="All output, including reasoning")
    reasoning_tokens = serializers.IntegerField(min_value=0, required=False)
    cost = serializers.DecimalField(
        max_digits=20, decimal_places=10, required=False, help_text="USD, if you know it"
    )
    team = serializers.CharField(required=False, help_text="Team name or id")
    tags = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="feature, task_id, customer, end_user, environment, or your own keys",
    )
    service_tier = serializers.ChoiceField(choices=["standard", "batch", "flex", "priority"], required=False)


class EventErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.CharField(allow_null=True)
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    duplicate_events = EventErrorSerializer(many=True)
    rejected_events = EventErrorSerializer(many=True)


class SpendGroupSerializer(serializers.Serializer):
    day = serializers.CharField(required=False)
    month = serializers.CharField(required=False)
    team = serializers.CharField(required=False, allow_null=True)
    team_id = serializers.IntegerField(required=False, allow_null=True)
    provider = serializers.CharField(required=False)
    model = serializers.CharField(required=False)
    feature = serializers.CharField(required=False)
    customer = serializers.CharField(required=False)
    cost = serializers.CharField(help_text="Decimal string, 4 places")
    requests = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    uncached_input_tokens = serializers.IntegerField()
    cache_read_tokens = serializers.IntegerField()
    cache_write_tokens = serializers.IntegerField()
    cache_write_1h_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    reasoning_tokens = serializers.IntegerField()
    input_audio_tokens = serializers.IntegerField()
    output_audio_tokens = serializers.IntegerField()
    unpriced_requests = serializers.IntegerField()


class SpendSerializer(serializers.Serializer):
    currency = serializers.CharField()
    start = serializers.DateField()
    end = serializers.DateField()
    group_by = serializers.ListField(child=serializers.CharField())
    groups = SpendGroupSerializer(many=True)
    totals = SpendGroupSerializer()
    unpriced = serializers.ListField(child=serializers.DictField())


class UsageRecordSerializer(serializers.ModelSerializer):
    input_tokens = serializers.IntegerField(read_only=True)
    event_id = serializers.SerializerMethodField()

    class Meta:
        model = UsageRecord
        fields = [
            "id",
            "source",
            "event_id",
            "start_time",
            "day",
            "bucket_seconds",
            "provider",
            "model",
            "model_raw",
            "team",
            "team_source",
            "project_id",
            "workspace_id",
            "api_key_id",
            "feature",
            "task_id",
            "customer",
            "end_user",
            "environment",
            "tags",
            "service_tier",
            "context_window",
            "requests",
            "input_tokens",
            "uncached_input_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "cache_write_1h_tokens",
            "output_tokens",
            "reasoning_tokens",
            "input_audio_tokens",
            "output_audio_tokens",
            "cost",
            "currency",
            "cost_basis",
            "computed_cost",
            "reported_cost",
            "price_ref",
        ]
        read_only_fields = fields

    def get_event_id(self, obj) -> str | None:
        return obj.key if obj.source == "event" else None


class AttributionRuleSerializer(StrictModelSerializer):
    team = OrgScopedRelatedField(model=Team)

    class Meta:
        model = AttributionRule
        fields = ["id", "kind", "tag_key", "value", "team", "priority", "created_at"]
        read_only_fields = ["id", "created_at"]
        validators = []  # uniqueness is checked by the service with an org-scoped message


class RepriceCreateSerializer(StrictSerializer):
    start = serializers.DateField()
    end = serializers.DateField(help_text="exclusive")
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class RepriceRunSerializer(serializers.ModelSerializer):
    created_by = serializers.EmailField(
        source="created_by.email", read_only=True, allow_null=True, default=None
    )
    applied_by = serializers.EmailField(
        source="applied_by.email", read_only=True, allow_null=True, default=None
    )
    undone_by = serializers.EmailField(
        source="undone_by.email", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = RepriceRun
        fields = [
            "id",
            "start",
            "end",
            "status",
            "reason",
            "records_changed",
            "old_total",
            "new_total",
            "summary",
            "created_at",
            "created_by",
            "applied_at",
            "applied_by",
            "undone_at",
            "undone_by",
        ]
        read_only_fields = fields
