import decimal
import re

from rest_framework import serializers

from apps.budgets.models import Alert, AlertChannel, Budget, WebhookDelivery
from apps.orgs.models import ApiToken, Membership, Team
from apps.orgs.tenancy import OrgScopedRelatedField
from spendctl.common.api import StrictModelSerializer, StrictSerializer


class BudgetSerializer(StrictModelSerializer):
    team = OrgScopedRelatedField(model=Team, required=False, allow_null=True)
    token = OrgScopedRelatedField(model=ApiToken, required=False, allow_null=True)
    amount = serializers.DecimalField(max_digits=18, decimal_places=2)
    hard_cap = serializers.DecimalField(max_digits=18, decimal_places=2, required=False, allow_null=True)
    thresholds = serializers.ListField(child=serializers.IntegerField(), required=False, max_length=20)

    class Meta:
        model = Budget
        fields = [
            "id",
            "name",
            "scope",
            "team",
            "token",
            "provider",
            "model",
            "tag_key",
            "tag_value",
            "period",
            "custom_start",
            "custom_end",
            "amount",
            "currency",
            "thresholds",
            "hard_cap",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "currency", "created_at", "updated_at"]


class ProjectionSerializer(serializers.Serializer):
    day = serializers.DateField()
    expected = serializers.DecimalField(max_digits=18, decimal_places=2)
    low = serializers.DecimalField(max_digits=18, decimal_places=2)
    high = serializers.DecimalField(max_digits=18, decimal_places=2)


class BudgetStatusSerializer(serializers.Serializer):
    budget = serializers.IntegerField()
    period_start = serializers.DateField()
    period_end = serializers.DateField(help_text="exclusive")
    amount = serializers.DecimalField(max_digits=18, decimal_places=2)
    spent = serializers.DecimalField(max_digits=24, decimal_places=4)
    percent = serializers.DecimalField(max_digits=12, decimal_places=1)
    remaining = serializers.DecimalField(max_digits=24, decimal_places=4)
    days_left = serializers.IntegerField()
    forecast_total = serializers.DecimalField(max_digits=24, decimal_places=2)
    forecast_low = serializers.DecimalField(max_digits=24, decimal_places=2)
    forecast_high = serializers.DecimalField(max_digits=24, decimal_places=2)
    forecast_crossing_date = serializers.DateField(allow_null=True)
    forecast_method = serializers.CharField()
    thresholds_crossed = serializers.ListField(child=serializers.IntegerField())
    projection = ProjectionSerializer(many=True)


class AlertSerializer(serializers.ModelSerializer):
    acknowledged_by = serializers.EmailField(
        source="acknowledged_by.email", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = Alert
        fields = [
            "id",
            "kind",
            "budget",
            "period_start",
            "threshold",
            "series",
            "day",
            "title",
            "message",
            "details",
            "created_at",
            "acknowledged_at",
            "acknowledged_by",
        ]
        read_only_fields = fields


class AlertChannelSerializer(StrictModelSerializer):
    recipients = OrgScopedRelatedField(model=Membership, many=True, required=False)
    secret = serializers.SerializerMethodField(help_text="Webhook signing secret: only in the create answer")

    class Meta:
        model = AlertChannel
        fields = [
            "id",
            "kind",
            "name",
            "recipients",
            "url",
            "slack_format",
            "is_active",
            "secret",
            "created_at",
        ]
        read_only_fields = ["id", "secret", "created_at"]

    def get_secret(self, obj) -> str | None:
        return None  # shown once, in the create answer (the view fills it in)


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "alert",
            "is_test",
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields


class EmailTestSentSerializer(serializers.Serializer):
    """The answer of a test on an e-mail channel: the message went to the channel's recipients."""

    sent = serializers.ChoiceField(choices=["e-mail"])


class CheckSerializer(StrictSerializer):
    provider = serializers.RegexField(r"^[a-z0-9][a-z0-9._-]{0,63}$", max_length=64)
    model = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$", max_length=200)
    team = serializers.CharField(required=False, max_length=100, help_text="Team name or id")
    estimated_input_tokens = serializers.IntegerField(min_value=0, max_value=10**9, required=False, default=0)
    estimated_cache_read_tokens = serializers.IntegerField(
        min_value=0, max_value=10**9, required=False, default=0
    )
    estimated_output_tokens = serializers.IntegerField(
        min_value=0, max_value=10**9, required=False, default=0
    )
    estimated_cost = serializers.DecimalField(
        max_digits=18, decimal_places=10, min_value=0, required=False, allow_null=True
    )
    tags = serializers.DictField(child=serializers.CharField(max_length=128), required=False, default=dict)

    def validate(self, attrs):
        if attrs.get("estimated_cost") is None and not (
            attrs["estimated_input_tokens"] or attrs["estimated_output_tokens"]
        ):
            raise serializers.ValidationError(
                {"estimated_input_tokens": ["Give estimated tokens or an estimated_cost."]}
            )
        if attrs["estimated_cache_read_tokens"] > attrs["estimated_input_tokens"]:
            raise serializers.ValidationError(
                {
                    "estimated_cache_read_tokens": [
                        "Cannot exceed estimated_input_tokens (which counts all input)."
                    ]
                }
            )
        return attrs


_PROVIDER = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}")
_COST = re.compile(r"(?:0|[1-9][0-9]{0,7})(?:\.[0-9]{1,10})?")
_CHECK_FIELDS = frozenset(CheckSerializer._declared_fields)
_TOKEN_FIELDS = ("estimated_input_tokens", "estimated_cache_read_tokens", "estimated_output_tokens")
_CTX18 = decimal.Context(prec=18)
_E10 = decimal.Decimal("1e-10")


def _plain(value, max_length: int) -> bool:
    """A string CharField would keep unchanged: not blank, no surrounding space, ASCII, no NUL, short enough."""
    return (
        type(value) is str
        and 0 < len(value) <= max_length
        and value.isascii()
        and value == value.strip()
        and "\x00" not in value
    )


def check_body_fast(data) -> dict | None:
    """CheckSerializer's validated_data for a plainly valid body, without building the serializer (its fields are
    deep-copied per instance: most of its cost). None for anything else: the caller runs CheckSerializer, so
    every error, and every input that needs coercion (numbers as strings, floats, spaces…), is its answer.
    Tested equal to CheckSerializer on every body it accepts."""
    if type(data) is not dict or not data.keys() <= _CHECK_FIELDS:
        return None
    provider, model = data.get("provider"), data.get("model")
    if not _plain(provider, 64) or not _PROVIDER.fullmatch(provider):
        return None
    if not _plain(model, 200) or not _MODEL.fullmatch(model):
        return None
    out = {"provider": provider, "model": model}
    if "team" in data:
        if not _plain(data["team"], 100):
            return None
        out["team"] = data["team"]
    for name in _TOKEN_FIELDS:
        value = data.get(name, 0)
        if type(value) is not int or not 0 <= value <= 10**9:
            return None
        out[name] = value
    cost = data.get("estimated_cost")
    if cost is not None:
        if type(cost) is int and 0 <= cost < 10**8:
            cost = str(cost)
        if type(cost) is not str or not _COST.fullmatch(cost):
            return None
        out["estimated_cost"] = decimal.Decimal(cost).quantize(_E10, context=_CTX18)
    elif "estimated_cost" in data:
        out["estimated_cost"] = None
    tags = data.get("tags", {})
    if type(tags) is not dict:
        return None
    for value in tags.values():
        if not _plain(value, 128):
            return None
    out["tags"] = tags
    if cost is None and not (out["estimated_input_tokens"] or out["estimated_output_tokens"]):
        return None
    if out["estimated_cache_read_tokens"] > out["estimated_input_tokens"]:
        return None
    return out


class CheckBudgetSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    scope = serializers.CharField()
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    amount = serializers.DecimalField(max_digits=18, decimal_places=2)
    hard_cap = serializers.DecimalField(max_digits=18, decimal_places=2, allow_null=True)
    spent = serializers.DecimalField(max_digits=24, decimal_places=4)
    remaining = serializers.DecimalField(max_digits=24, decimal_places=4)
    projected = serializers.DecimalField(max_digits=24, decimal_places=4)
    decision = serializers.ChoiceField(choices=["allow", "warn", "deny"])


class CheckResultSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["allow", "warn", "deny"])
    estimated_cost = serializers.DecimalField(max_digits=24, decimal_places=10)
    currency = serializers.CharField()
    priced = serializers.BooleanField(help_text="False when the model has no price: the estimate is 0")
    budgets = CheckBudgetSerializer(many=True)
    recommended_model = serializers.CharField(allow_null=True)
    source = serializers.CharField(help_text="redis, or database when the counters are unavailable")
