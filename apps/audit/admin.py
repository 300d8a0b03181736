from django.contrib import admin

from apps.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the admin can look, never add, change or delete."""

    list_display = [
        "created_at",
        "org_id",
        "actor_label",
        "ip_address",
        "action",
        "target_type",
        "target_label",
    ]
    list_filter = ["action", "actor_type", "target_type"]
    search_fields = ["actor_label", "target_label", "action"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        return {}
