from rest_framework import serializers

from apps.connectors import services
from apps.connectors.models import ProviderConnection, SyncRun
from apps.connectors.providers import registry
from spendctl.common.api import StrictModelSerializer, StrictSerializer


def provider_choices():
    return [(c.key, c.label) for c in registry.all_providers()]


class ConnectionSerializer(StrictModelSerializer):
    provider = serializers.ChoiceField(choices=provider_choices())
    api_key = serializers.CharField(
        write_only=True,
        max_length=500,
        trim_whitespace=True,
        help_text="The provider's admin key. Write-only: never returned.",
    )
    base_url = serializers.URLField(required=False, allow_blank=True, max_length=300, default="")
    next_sync_at = serializers.SerializerMethodField()

    class Meta:
        model = ProviderConnection
        fields = [
            "id",
            "provider",
            "label",
            "api_key",
            "key_hint",
            "base_url",
            "status",
            "is_active",
            "trailing_days",
            "synced_through",
            "last_sync_at",
            "next_sync_at",
            "last_error",
            "created_at",
        ]
        read_only_fields = [
            "id",
            "key_hint",
            "status",
            "synced_through",
            "last_sync_at",
            "last_error",
            "created_at",
        ]
        extra_kwargs = {"trailing_days": {"min_value": 1, "max_value": 31}}

    def get_next_sync_at(self, obj) -> str | None:
        return services.next_nightly(obj).isoformat() if obj.is_active else None


class ConnectionUpdateSerializer(StrictSerializer):
    label = serializers.CharField(max_length=100, required=False)
    api_key = serializers.CharField(write_only=True, max_length=500, required=False)
    base_url = serializers.URLField(required=False, allow_blank=True, max_length=300)
    is_active = serializers.BooleanField(required=False)
    trailing_days = serializers.IntegerField(min_value=1, max_value=31, required=False)


class SyncRequestSerializer(StrictSerializer):
    start = serializers.DateField(
        required=False, help_text="First UTC day; default: last synced day minus the trailing window"
    )
    end = serializers.DateField(required=False, help_text="Day after the last (exclusive); default: tomorrow")


class SyncRunSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True)

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "kind",
            "status",
            "window_start",
            "window_end",
            "chunk_start",
            "progress",
            "phase",
            "pages",
            "records_added",
            "records_replaced",
            "cost_rows",
            "attempts",
            "retries",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class ReconciliationDaySerializer(serializers.Serializer):
    day = serializers.DateField()
    reported_cost = serializers.DecimalField(max_digits=24, decimal_places=10, allow_null=True)
    computed_cost = serializers.DecimalField(max_digits=24, decimal_places=10)
    ledger_cost = serializers.DecimalField(max_digits=24, decimal_places=10)
    difference = serializers.DecimalField(max_digits=24, decimal_places=10, allow_null=True)
