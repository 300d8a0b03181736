from rest_framework import serializers

from apps.reports.models import MonthlyReport


class ReportListSerializer(serializers.ModelSerializer):
    month = serializers.CharField(source="period")
    total = serializers.SerializerMethodField()
    previous = serializers.SerializerMethodField()

    class Meta:
        model = MonthlyReport
        fields = ["month", "currency", "generated_at", "dispatched_at", "total", "previous"]

    def _summary(self, obj) -> dict:
        return obj.data.get("sections", {}).get("summary", {})

    def get_total(self, obj) -> str | None:
        return self._summary(obj).get("current")

    def get_previous(self, obj) -> str | None:
        return self._summary(obj).get("previous")


class ReportSerializer(ReportListSerializer):
    sections = serializers.SerializerMethodField()
    order = serializers.SerializerMethodField()

    class Meta(ReportListSerializer.Meta):
        fields = [*ReportListSerializer.Meta.fields, "order", "sections"]

    def get_order(self, obj) -> list[str]:
        return obj.data.get("order", [])

    def get_sections(self, obj) -> dict:
        return obj.data.get("sections", {})
