from django.contrib import admin

from apps.orgs.models import ApiToken, Membership, Organization, Team


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "currency", "timezone", "created_at"]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "org", "created_at"]
    list_filter = ["org"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created in the app (shown once there); the admin never shows the hash."""

    list_display = [
        "name",
        "prefix",
        "org",
        "team",
        "scopes",
        "created_by",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["org"]
    fields = [
        "name",
        "prefix",
        "org",
        "team",
        "scopes",
        "created_by",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False
