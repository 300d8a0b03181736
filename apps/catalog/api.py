from datetime import UTC, datetime

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from apps.catalog import services
from apps.catalog.models import PriceOverride
from apps.catalog.selectors import PriceBook, normalise_model
from apps.catalog.serializers import PriceOverrideSerializer, PriceSerializer
from apps.orgs.tenancy import OrgScopedAPIView, OrgScopedViewSet


class PriceOverrideViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    OrgScopedViewSet,
):
    """Negotiated prices: a discount per provider (or model), or explicit per-million-token prices with dates."""

    queryset = PriceOverride.objects.all()
    serializer_class = PriceOverrideSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer):
        serializer.instance = services.override_create(org=self.org, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.override_update(
            override=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.override_delete(override=instance)


class PriceView(OrgScopedAPIView):
    """The price spendctl applies to a model at a time: list price from genai-prices, after this org's overrides."""

    serializer_class = PriceSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("provider", str, required=True),
            OpenApiParameter("model", str, required=True),
            OpenApiParameter("at", str, description="ISO time; default now"),
            OpenApiParameter("service_tier", str, enum=["standard", "batch", "flex", "priority"]),
        ],
        responses={200: PriceSerializer},
    )
    def get(self, request):
        params = request.query_params
        errors = {}
        provider, model = params.get("provider", "").strip().lower(), params.get("model", "").strip()
        if not provider:
            errors["provider"] = ["This parameter is required."]
        if not model:
            errors["model"] = ["This parameter is required."]
        tier = params.get("service_tier", "standard")
        if tier not in ("standard", "batch", "flex", "priority"):
            errors["service_tier"] = ["Use standard, batch, flex or priority."]
        at = datetime.now(UTC)
        if params.get("at"):
            try:
                at = datetime.fromisoformat(params["at"])
                at = at if at.tzinfo else at.replace(tzinfo=UTC)
            except ValueError:
                errors["at"] = ["Use an ISO 8601 time."]
        if errors:
            raise ValidationError(errors)
        model = normalise_model(provider, model)
        price = PriceBook(self.org).price(provider=provider, model=model, at=at, service_tier=tier)
        rates = {}
        if price is not None:
            mp = price.resolved.model_price
            for name in (
                "input_mtok",
                "cache_read_mtok",
                "cache_write_mtok",
                "cache_write_1h_mtok",
                "output_mtok",
                "input_audio_mtok",
                "output_audio_mtok",
                "web_searches_kcount",
                "requests_kcount",
            ):
                value = getattr(mp, name, None)
                if value is not None:
                    rates[name] = str(getattr(value, "base", value))
        return Response(
            {
                "provider": provider,
                "model": model,
                "known": price is not None,
                "source": price.resolved.source if price else None,
                "ref": price.ref if price else "",
                "rates": rates,
            }
        )


def register(router):
    router.register("price-overrides", PriceOverrideViewSet, basename="price-override")
