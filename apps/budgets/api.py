import json
import time

from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response

from apps.budgets import counters, selectors, services
from apps.budgets.check import Gate, OrgChanged, RateLimited, preflight_check, preflight_gate, result_data
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
    check_body_fast,
)
from apps.orgs import versions
from apps.orgs.authentication import (
    UNUSABLE,
    CheckTokenAuthentication,
    cached_token,
    forget_token,
    usable_token,
)
from apps.orgs.permissions import SCOPE_ADMIN, SCOPE_CHECK, SCOPE_READ
from apps.orgs.services import api_token_mark_used
from apps.orgs.tenancy import OrgScopedAPIView, OrgScopedViewSet
from apps.orgs.throttling import CheckRateThrottle
from spendctl.common.api import Pagination

JSON_TYPES = ("application/json", "application/json; charset=utf-8")


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
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    OrgScopedViewSet,
):
    """Where alerts go: e-mail to chosen members, or a signed webhook (optionally Slack-compatible)."""

    queryset = AlertChannel.objects.all()
    serializer_class = AlertChannelSerializer
    scope_map = {"test": SCOPE_ADMIN}
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        channel, secret = services.channel_create(org=self.org, **serializer.validated_data)
        return Response(
            {**AlertChannelSerializer(channel).data, "secret": secret}, status=status.HTTP_201_CREATED
        )

    def perform_update(self, serializer):
        serializer.instance = services.channel_update(
            channel=serializer.instance, **serializer.validated_data
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


class JsonOnly(BaseContentNegotiation):
    """The check answers JSON whatever the Accept header says (DRF's negotiation parses it on every request)."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class CheckView(OrgScopedAPIView):
    """May I spend this? allow / warn (a soft cap would be crossed) / deny (a hard cap would be crossed).

    The hot path runs no SQL and one Redis round trip: the token comes from the worker's cache
    (CheckTokenAuthentication), the body is validated by check_body_fast (CheckSerializer for anything else, so
    errors are its own), and the check's round trip also counts the throttle, confirms the cached token against
    the org version and says when last_used_at is due. The answer is written by check.result_data."""

    scope_map = {"post": SCOPE_CHECK}
    serializer_class = CheckSerializer
    throttle_scope = "check"
    authentication_classes = [CheckTokenAuthentication]
    throttle_classes = [CheckRateThrottle]
    content_negotiation_class = JsonOnly

    @extend_schema(request=CheckSerializer, responses=CheckResultSerializer)
    def post(self, request):
        gate = self._gate(request)
        v = None
        if request.content_type in JSON_TYPES:
            try:
                v = check_body_fast(json.loads(request._request.body))
            except ValueError:
                v = None
        if v is None:
            if gate is not None:  # auth, then throttling, then bad input: as for any other endpoint
                self._confirm(request, gate)
                gate = None
            data = CheckSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            v = data.validated_data
        for _attempt in range(3):
            try:
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
                    gate=gate,
                )
                break
            except OrgChanged as exc:  # the configuration is reloaded by the check itself
                if gate is not None and (exc.version is None or exc.version != gate.token_version):
                    gate = self._reauthenticate(request, gate)
            except RateLimited as exc:
                raise exceptions.Throttled(wait=max(1.0, exc.wait)) from None
        else:  # the org kept changing under us: this worker answers from the database for a moment
            counters.failed(force=True)
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
        if gate is not None and gate.last_used_due:
            api_token_mark_used(token=request.api_token, at=timezone.now())
        return HttpResponse(
            json.dumps(result_data(result), separators=(",", ":")), content_type="application/json"
        )

    def _gate(self, request) -> Gate | None:
        """The round trip's share of the API's work, when the token came from the cache (else None: the token
        was read from the database and CheckRateThrottle counted the request as any other throttle)."""
        version = getattr(request, "token_version", None)
        if version is None:
            return None
        throttle = CheckRateThrottle()
        gate = Gate(
            token_version=version, last_used_key=f"{versions.key(self.org.pk)}:used:{request.api_token.pk}"
        )
        if throttle.num_requests is not None:
            gate.throttle_key, gate.window_end = throttle.rate_key(request.api_token, self, time.time())
            gate.throttle_limit, gate.throttle_seconds = throttle.num_requests, throttle.duration
        return gate

    def _reauthenticate(self, request, gate: Gate) -> Gate | None:
        """The org version moved (or Redis failed): read the token again, answer 401/403 as authentication and
        permissions would, and go on without counting the throttle a second time. None: go on without the gate
        (Redis is unavailable; the token was read from the database)."""
        forget_token(request.token_hash)
        found = None
        if counters.available():
            try:
                found = cached_token(request.token_hash)
                if found is None:
                    raise exceptions.AuthenticationFailed(UNUSABLE)
            except exceptions.AuthenticationFailed:
                raise
            except Exception:  # noqa: BLE001 - Redis failed: the database decides
                counters.failed()
        if found is None:
            token, version = usable_token(request.token_hash), None
            if token is None:
                raise exceptions.AuthenticationFailed(UNUSABLE)
        else:
            token, version = found
        request._request.org = token.org
        request._request.api_token = token
        request.user, request.auth = token.created_by, token
        self.check_permissions(request)
        if version is None:
            return None
        gate.token_version = version
        gate.throttle_key = None
        return gate

    def _confirm(self, request, gate: Gate) -> None:
        """Before a 400: the cached token confirmed and the request counted, as for any other endpoint."""
        for _attempt in range(3):
            try:
                preflight_gate(org=self.org, gate=gate)
                if gate.last_used_due:
                    api_token_mark_used(token=request.api_token, at=timezone.now())
                return
            except OrgChanged:
                gate = self._reauthenticate(request, gate)
                if gate is None:
                    return
            except RateLimited as exc:
                raise exceptions.Throttled(wait=max(1.0, exc.wait)) from None


def register(router):
    router.register("budgets", BudgetViewSet, basename="budget")
    router.register("alerts", AlertViewSet, basename="alert")
    router.register("alert-channels", AlertChannelViewSet, basename="alert-channel")
