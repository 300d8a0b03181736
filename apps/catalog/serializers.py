from rest_framework import serializers

from apps.catalog.models import PriceOverride
from spendctl.common.api import StrictModelSerializer

RATE = {"max_digits": 18, "decimal_places": 8, "required": False, "allow_null": True, "min_value": 0}


class PriceOverrideSerializer(StrictModelSerializer):
    provider = serializers.RegexField(r"^[a-z0-9][a-z0-9._-]{0,63}$", max_length=64)
    model = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    discount_percent = serializers.DecimalField(
        max_digits=6, decimal_places=3, required=False, allow_null=True, min_value=0, max_value=100
    )
    input_mtok = serializers.DecimalField(**RATE)
    cache_read_mtok = serializers.DecimalField(**RATE)
    cache_write_mtok = serializers.DecimalField(**RATE)
    output_mtok = serializers.DecimalField(**RATE)

    class Meta:
        model = PriceOverride
        fields = [
            "id",
            "provider",
            "model",
            "discount_percent",
            "input_mtok",
            "cache_read_mtok",
            "cache_write_mtok",
            "output_mtok",
            "effective_from",
            "effective_to",
            "note",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


class PriceSerializer(serializers.Serializer):
    provider = serializers.CharField()
    model = serializers.CharField()
    known = serializers.BooleanField()
    source = serializers.CharField(allow_null=True)
    ref = serializers.CharField(allow_blank=True)
    rates = serializers.DictField(
        child=serializers.CharField(), help_text="USD per million tokens (per thousand for counts)"
    )
