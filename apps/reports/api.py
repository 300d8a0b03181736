import csv
import io

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins

from apps.orgs.tenancy import OrgScopedViewSet
from apps.reports import rendering
from apps.reports.models import MonthlyReport
from apps.reports.serializers import ReportListSerializer, ReportSerializer
from spendctl.common.api import Pagination

FORMAT = OpenApiParameter("format", str, enum=["json", "csv"], description="csv downloads the same rows")


class ReportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Monthly reports, newest first. `GET /reports/{YYYY-MM}` is one report's sections as sent;
    `?format=csv` is the list as CSV, or for one report the CSV that was attached to the e-mail."""

    queryset = MonthlyReport.objects.all()
    serializer_class = ReportSerializer
    pagination_class = Pagination
    lookup_field = "period"
    lookup_url_kwarg = "month"
    lookup_value_regex = r"[0-9]{4}-[0-9]{2}"

    def get_serializer_class(self):
        return ReportListSerializer if self.action == "list" else ReportSerializer

    def scope_queryset(self, queryset):
        return queryset.order_by("-month")

    @extend_schema(
        parameters=[FORMAT],
        responses={
            (200, "application/json"): ReportListSerializer(many=True),
            (200, "text/csv"): OpenApiTypes.STR,
        },
    )
    def list(self, request, *args, **kwargs):
        if request.query_params.get("format") == "csv":
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(["month", "total", "previous", "currency", "generated_at"])
            for report in self.get_queryset():
                summary = report.data.get("sections", {}).get("summary", {})
                writer.writerow(
                    [
                        report.period,
                        summary.get("current", ""),
                        summary.get("previous") or "",
                        report.currency,
                        report.generated_at.isoformat(),
                    ]
                )
            response = HttpResponse(buf.getvalue(), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = 'attachment; filename="reports.csv"'
            return response
        return super().list(request, *args, **kwargs)

    @extend_schema(
        parameters=[FORMAT],
        responses={(200, "application/json"): ReportSerializer, (200, "text/csv"): OpenApiTypes.STR},
    )
    def retrieve(self, request, *args, **kwargs):
        if request.query_params.get("format") == "csv":
            report = self.get_object()
            response = HttpResponse(report.detail_csv, content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{rendering.csv_name(report)}"'
            return response
        return super().retrieve(request, *args, **kwargs)


def register(router):
    router.register("reports", ReportViewSet, basename="report")
