from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.orgs.models import Team
from apps.orgs.permissions import SCOPE_ADMIN, SCOPE_INGEST
from apps.orgs.tenancy import OrgScopedAPIView, OrgScopedViewSet
from apps.usage import exports, selectors, services
from apps.usage.models import AttributionRule, RepriceRun, UsageRecord
from apps.usage.queries import parse_spend_query
from apps.usage.serializers import (
    AttributionRuleSerializer,
    EventBatchSerializer,
    IngestResultSerializer,
    RepriceCreateSerializer,
    RepriceRunSerializer,
    SpendSerializer,
    UsageRecordSerializer,
)
from spendctl.common.api import error_body
from spendctl.common.gc import gc_paused

FILTER_PARAMS = [
    OpenApiParameter(
        "start", OpenApiTypes.DATE, description="First day (org time zone); default: 1st of this month"
    ),
    OpenApiParameter(
        "end", OpenApiTypes.DATE, description="Day after the last (exclusive); default: tomorrow"
    ),
    OpenApiParameter("team", str, description="Team names or ids, comma separated; 'none' for unattributed"),
    OpenApiParameter("model", str, description="Models, comma separated"),
    OpenApiParameter("provider", str, description="Providers, comma separated"),
    OpenApiParameter("feature", str),
    OpenApiParameter("customer", str),
]
FORMAT = OpenApiParameter("format", str, enum=["json", "csv"], description="csv streams a download")


class EventsView(OrgScopedAPIView):
    """Push call events. Each event is validated on its own; a repeated id is reported as a duplicate, not counted."""

    scope_map = {"post": SCOPE_INGEST}
    serializer_class = EventBatchSerializer
    throttle_scope = "ingest"  # its own per-token rate, INGEST_RATE_LIMIT

    @extend_schema(request=EventBatchSerializer, responses={200: IngestResultSerializer})
    def post(self, request):
        # Parsing a batch of thousands of events and ingesting it allocate tens of thousands of short-lived objects
        # without reference cycles: with the cyclic collector paused meanwhile (spendctl.common.gc).
        with gc_paused():
            return self._ingest(request)

    def _ingest(self, request):
        body = EventBatchSerializer(data=request.data)
        if (
            not isinstance(request.data, dict)
            or set(request.data) - {"events"}
            or "events" not in request.data
        ):
            body.is_valid(raise_exception=True)
        result = services.usage_events_ingest(
            org=self.org, events=request.data["events"], token=request.api_token
        )
        data = result.as_dict()
        if result.rejected_events and not result.accepted and not result.duplicate_events:
            fields = {"events": {str(e["index"]): e["fields"] for e in result.rejected_events[:100]}}
            message = f"All {len(result.rejected_events)} events were rejected; see fields.events.<index>."
            return Response(error_body("invalid", message, fields), status=status.HTTP_400_BAD_REQUEST)
        return Response(data)


class SpendView(OrgScopedAPIView):
    """Spend grouped by any of day, month, team, provider, model, feature, customer (and raw-only dimensions)."""

    serializer_class = SpendSerializer

    @extend_schema(
        parameters=[
            *FILTER_PARAMS,
            FORMAT,
            OpenApiParameter("group_by", str, description="Comma separated dimensions"),
        ],
        responses={(200, "application/json"): SpendSerializer, (200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request):
        query = parse_spend_query(self.org, request.query_params)
        result = selectors.format_spend(selectors.spend_by(org=self.org, query=query))
        if request.query_params.get("format") == "csv":
            return exports.spend_csv(result, query.group_by, f"spend-{query.start}-{query.end}.csv")
        unpriced = [
            {
                "provider": u["provider"],
                "model": u["model"],
                "records": u["records"],
                "requests": u["requests"],
            }
            for u in selectors.unpriced_summary(org=self.org, start=query.start, end=query.end)
        ]
        return Response(
            {
                "currency": "USD",
                "start": query.start,
                "end": query.end,
                "group_by": list(query.group_by),
                **result,
                "unpriced": unpriced,
            }
        )


class UsageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Raw ledger records, newest first, with the spend filters. ?format=csv or ?format=focus stream everything."""

    queryset = UsageRecord.objects.all()
    serializer_class = UsageRecordSerializer

    def scope_queryset(self, queryset):
        if self.action == "list":
            query = parse_spend_query(self.org, self.request.query_params, allow_group_by=False)
            queryset = queryset.filter(pk__in=selectors.ledger_list(org=self.org, query=query).values("pk"))
        return queryset.order_by("-start_time", "-id")

    @extend_schema(
        parameters=[*FILTER_PARAMS, OpenApiParameter("format", str, enum=["json", "csv", "focus"])],
        responses={
            (200, "application/json"): UsageRecordSerializer(many=True),
            (200, "text/csv"): OpenApiTypes.STR,
        },
    )
    def list(self, request, *args, **kwargs):
        fmt = request.query_params.get("format")
        if fmt in ("csv", "focus"):
            query = parse_spend_query(self.org, request.query_params, allow_group_by=False)
            records = selectors.ledger_list(org=self.org, query=query)
            name = f"usage-{query.start}-{query.end}"
            if fmt == "focus":
                teams = dict(Team.objects.for_org(self.org).values_list("id", "name"))
                return exports.focus_csv(records, self.org, teams, f"{name}-focus.csv")
            return exports.records_csv(records, f"{name}.csv")
        return super().list(request, *args, **kwargs)


class AttributionRuleViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    OrgScopedViewSet,
):
    """Map a provider project / workspace / API key id, or a tag value, to a team."""

    queryset = AttributionRule.objects.all()
    serializer_class = AttributionRuleSerializer

    def perform_create(self, serializer):
        serializer.instance = services.attribution_rule_create(org=self.org, **serializer.validated_data)

    def perform_destroy(self, instance):
        services.attribution_rule_delete(rule=instance)

    @extend_schema(
        request=None,
        responses={200: inline_serializer("Reattributed", {"records_changed": serializers.IntegerField()})},
    )
    @action(detail=False, methods=["post"])
    def apply(self, request):
        """Re-apply the rules to all recorded usage."""
        return Response({"records_changed": services.usage_reattribute(org=self.org)})


class RepriceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Re-pricing: POST previews the change for a date range; apply records it; undo restores the old costs."""

    queryset = RepriceRun.objects.all()
    serializer_class = RepriceRunSerializer
    scope_map = {"create": SCOPE_ADMIN, "apply": SCOPE_ADMIN, "undo": SCOPE_ADMIN}

    def scope_queryset(self, queryset):
        return queryset.select_related("created_by", "applied_by", "undone_by")

    @extend_schema(request=RepriceCreateSerializer, responses={201: RepriceRunSerializer})
    def create(self, request):
        data = RepriceCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.reprice_preview(org=self.org, user=request.api_token.created_by, **data.validated_data)
        return Response(RepriceRunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: RepriceRunSerializer})
    @action(detail=True, methods=["post"])
    def apply(self, request, pk=None):
        run = services.reprice_apply(run=self.get_object(), user=request.api_token.created_by)
        return Response(RepriceRunSerializer(run).data)

    @extend_schema(request=None, responses={200: RepriceRunSerializer})
    @action(detail=True, methods=["post"])
    def undo(self, request, pk=None):
        run = services.reprice_undo(run=self.get_object(), user=request.api_token.created_by)
        return Response(RepriceRunSerializer(run).data)


def register(router):
    router.register("usage", UsageViewSet, basename="usage")
    router.register("attribution-rules", AttributionRuleViewSet, basename="attribution-rule")
    router.register("reprice", RepriceViewSet, basename="reprice")
