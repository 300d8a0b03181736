from django.db import transaction
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.budgets import selectors, services
from apps.budgets.check import preflight_check
from apps.budgets.models import Alert, AlertChannel, Budget
from apps.budgets.serializers import (
    AlertChannelSerializer,
    AlertSerializer,
    BudgetSerializer,
    BudgetStatusSerializer,
    CheckResultSerializer,
    CheckSerializer,
    DeliverySerializer,
    EmailTestSentSerializer,
)
from apps.orgs.permissions import SCOPE_ADMIN, SCOPE_CHECK, SCOPE_READ
from apps.orgs.tenancy import OrgScopedAPIView, OrgScopedViewSet
from spendctl.common.api import Pagination


def status_data(st) -> dict:
    fc = st.forecast
    return {
        "budget": st.budget.pk,
        "period_start": st.period_start,
        "period_end": st.period_end,
        "amount": st.budget.amount,
        "spent": st.spent,
        "percent": st.percent,
        "remaining": st.remaining,
        "days_left": st.days_left,
        "forecast_total": fc.expected_total,
        "forecast_low": fc.low,
        "forecast_high": fc.high,
        "forecast_crossing_date": fc.crossing_date,
        "forecast_method": fc.method,
        "thresholds_crossed": st.thresholds_crossed,
        "projection": [{"day": d, "expected": e, "low": lo, "high": hi} for d, e, lo, hi in fc.projection],
    }


class BudgetViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    OrgScopedViewSet,
):
    """Budgets: a scope, a period, an amount, soft thresholds and an optional hard cap."""

    queryset = Budget.objects.all()
    serializer_class = BudgetSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer):
        serializer.instance = services.budget_create(org=self.org, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.budget_update(budget=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        services.budget_delete(budget=instance)

    @extend_schema(responses=BudgetStatusSerializer)
    @action(detail=True, methods=["get"])
    def status(self, request, pk=None):
        """Spend to date, percent used, remaining, days left, and the forecast at period end with its range."""
        budget = self.get_object()
        return Response(BudgetStatusSerializer(status_data(selectors.budget_status(budget))).data)


class AlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Alerts: thresholds crossed, forecasts to exceed, anomalies. POST …/acknowledge marks one as seen."""

    queryset = Alert.objects.all()
    serializer_class = AlertSerializer
    scope_map = {"acknowledge": SCOPE_READ}

    def scope_queryset(self, queryset):
        kind = self.request.query_params.get("kind")
        if kind in {k for k, _ in Alert.KINDS}:
            queryset = queryset.filter(kind=kind)
        if self.request.query_params.get("open") == "true":
            queryset = queryset.filter(acknowledged_at__isnull=True)
        return queryset.select_related("acknowledged_by")

    @extend_schema(request=None, responses=AlertSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        alert = services.alert_acknowledge(alert=self.get_object(), user=request.api_token.created_by)
        return Response(AlertSerializer(alert).data)


class AlertChannelViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    OrgScopedViewSet,
):
    """Where alerts go: e-mail to chosen members, or a signed webhook (optionally Slack-compatible)."""

    queryset = AlertChannel.objects.all()
    serializer_class = AlertChannelSerializer
    scope_map = {"test": SCOPE_ADMIN}

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        channel, secret = services.channel_create(org=self.org, **serializer.validated_data)
        return Response(
            {**AlertChannelSerializer(channel).data, "secret": secret}, status=status.HTTP_201_CREATED
        )

    def perform_destroy(self, instance):
        services.channel_delete(channel=instance)

    @extend_schema(
        request=None,
        responses=PolymorphicProxySerializer(
            component_name="ChannelTestResult",
            serializers=[DeliverySerializer, EmailTestSentSerializer],
            resource_type_field_name=None,
        ),
    )
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send a test message now: for a webhook the answer is the delivery as logged, for e-mail `{"sent"}`."""
        with transaction.atomic():
            delivery = services.channel_send_test(channel=self.get_object())
        return Response(DeliverySerializer(delivery).data if delivery else {"sent": "e-mail"})

    @extend_schema(responses=DeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        channel = self.get_object()
        paginator = Pagination()
        page = paginator.paginate_queryset(channel.deliveries.all(), request, view=self)
        return paginator.get_paginated_response(DeliverySerializer(page, many=True).data)


class CheckView(OrgScopedAPIView):
    """May I spend this? allow / warn (a soft cap would be crossed) / deny (a hard cap would be crossed)."""

    scope_map = {"post": SCOPE_CHECK}
    serializer_class = CheckSerializer
    throttle_scope = "check"

    @extend_schema(request=CheckSerializer, responses=CheckResultSerializer)
    def post(self, request):
        data = CheckSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        result = preflight_check(
            org=self.org,
            token=request.api_token,
            provider=v["provider"],
            model=v["model"],
            team=v.get("team"),
            input_tokens=v["estimated_input_tokens"],
            output_tokens=v["estimated_output_tokens"],
            cache_read_tokens=v["estimated_cache_read_tokens"],
            estimated_cost=v.get("estimated_cost"),
            tags=v["tags"],
        )
        return Response(
            CheckResultSerializer(
                {
                    "decision": result.decision,
                    "estimated_cost": result.estimated_cost,
                    "currency": "USD",
                    "priced": result.priced,
                    "budgets": result.budgets,
                    "recommended_model": result.recommended_model,
                    "source": result.source,
                }
            ).data
        )


def register(router):
    router.register("budgets", BudgetViewSet, basename="budget")
    router.register("alerts", AlertViewSet, basename="alert")
    router.register("alert-channels", AlertChannelViewSet, basename="alert-channel")
