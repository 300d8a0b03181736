from django.contrib import admin

from apps.budgets.models import AlertChannel


@admin.register(AlertChannel)
class AlertChannelAdmin(admin.ModelAdmin):
    """Read-only and never the webhook signing secret (shown once, at creation, in the app)."""

    list_display = ["name", "kind", "org", "url", "is_active"]
    list_filter = ["kind", "org"]
    fields = ["org", "kind", "name", "url", "slack_format", "is_active"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
