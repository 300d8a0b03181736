from django.contrib import admin

from apps.connectors.models import ProviderConnection, SyncRun


@admin.register(ProviderConnection)
class ProviderConnectionAdmin(admin.ModelAdmin):
    """Read-only, and never the key (not even encrypted): connections are added, re-keyed and removed in the app,
    where the key is tested and the change is audited. key_hint (last 4 characters) identifies the key."""

    list_display = [
        "label",
        "provider",
        "org",
        "key_hint",
        "status",
        "is_active",
        "synced_through",
        "last_sync_at",
    ]
    list_filter = ["provider", "status", "org"]
    fields = [
        "org",
        "provider",
        "label",
        "key_hint",
        "base_url",
        "status",
        "is_active",
        "trailing_days",
        "synced_through",
        "last_sync_at",
        "last_error",
        "created_by",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = [
        "connection",
        "kind",
        "status",
        "window_start",
        "window_end",
        "pages",
        "attempts",
        "created_at",
    ]
    list_filter = ["status", "kind"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
