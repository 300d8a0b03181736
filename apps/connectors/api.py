from datetime import date, timedelta

from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from apps.connectors import selectors, services
from apps.connectors.models import ProviderConnection, SyncRun
from apps.connectors.serializers import (
    ConnectionSerializer,
    ConnectionUpdateSerializer,
    ReconciliationDaySerializer,
    SyncRequestSerializer,
    SyncRunSerializer,
)
from apps.connectors.tasks import connectors_sync_run
from apps.orgs.permissions import SCOPE_ADMIN
from apps.orgs.tenancy import OrgScopedViewSet
from spendctl.common.api import Pagination
from spendctl.common.queue import enqueue


class ConnectorViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    OrgScopedViewSet,
):
    """Provider connections. The admin key is tested with the provider on save, encrypted, and never returned."""

    queryset = ProviderConnection.objects.all()
    serializer_class = ConnectionSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    scope_map = {"sync": SCOPE_ADMIN}

    def perform_create(self, serializer):
        serializer.instance = services.connection_create(
            org=self.org, user=self.request.api_token.created_by, **serializer.validated_data
        )

    @extend_schema(request=ConnectionUpdateSerializer, responses=ConnectionSerializer)
    def partial_update(self, request, pk=None):
        connection = self.get_object()
        data = ConnectionUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        connection = services.connection_update(connection=connection, **data.validated_data)
        return Response(ConnectionSerializer(connection).data)

    def perform_destroy(self, instance):
        services.connection_delete(connection=instance)

    @extend_schema(request=SyncRequestSerializer, responses={202: SyncRunSerializer})
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None):
        """Sync now, or backfill [start, end) (whole UTC days, up to a year) in resumable chunks."""
        connection = self.get_object()
        data = SyncRequestSerializer(data=request.data or {})
        data.is_valid(raise_exception=True)
        start, end = data.validated_data.get("start"), data.validated_data.get("end")
        kind = SyncRun.BACKFILL if start else SyncRun.MANUAL
        with transaction.atomic():
            run = services.run_create(connection=connection, kind=kind, start=start, end=end)
            transaction.on_commit(lambda: enqueue(connectors_sync_run, run.pk))
        run.refresh_from_db()
        return Response(SyncRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=SyncRunSerializer(many=True))
    @action(detail=True, methods=["get"])
    def runs(self, request, pk=None):
        connection = self.get_object()
        paginator = Pagination()
        page = paginator.paginate_queryset(selectors.run_list(connection=connection), request, view=self)
        return paginator.get_paginated_response(SyncRunSerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("start", str), OpenApiParameter("end", str)],
        responses=ReconciliationDaySerializer(many=True),
    )
    @action(detail=True, methods=["get"], pagination_class=None)  # a plain list, one row per day (<= 400)
    def reconciliation(self, request, pk=None):
        """Per UTC day: cost the provider reports vs the ledger's cost for this connection."""
        connection = self.get_object()
        today = timezone.now().date()
        try:
            start = date.fromisoformat(request.query_params.get("start") or str(today - timedelta(days=30)))
            end = date.fromisoformat(request.query_params.get("end") or str(today + timedelta(days=1)))
        except ValueError as exc:
            raise ValidationError({"start": ["Use dates as YYYY-MM-DD."]}) from exc
        if end <= start or (end - start).days > 400:
            raise ValidationError({"end": ["The end must be after the start, at most 400 days later."]})
        rows = selectors.reconciliation(connection=connection, start=start, end=end)
        return Response(ReconciliationDaySerializer(rows, many=True).data)


def register(router):
    router.register("connectors", ConnectorViewSet, basename="connector")
