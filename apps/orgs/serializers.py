from rest_framework import serializers

from apps.orgs.models import ApiToken, Membership, Organization, Team
from apps.orgs.permissions import SCOPE_VALUES
from apps.orgs.tenancy import OrgScopedRelatedField
from spendctl.common.api import StrictModelSerializer, StrictSerializer


class OrgSerializer(serializers.ModelSerializer):
    class Meta:
        model = Organization
        fields = ["id", "name", "slug", "currency", "timezone", "created_at"]
        read_only_fields = fields


class TeamSerializer(StrictModelSerializer):
    name = serializers.CharField(max_length=100, allow_blank=False, trim_whitespace=True)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

    class Meta:
        model = Team
        fields = ["id", "name", "description", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class MemberSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", read_only=True)
    name = serializers.SerializerMethodField()

    class Meta:
        model = Membership
        fields = ["id", "email", "name", "role", "created_at"]
        read_only_fields = fields

    def get_name(self, obj) -> str:
        return obj.user.get_full_name()


class ApiTokenSerializer(serializers.ModelSerializer):
    team = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    created_by = serializers.EmailField(source="created_by.email", read_only=True)
    status = serializers.CharField(read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "team",
            "status",
            "created_by",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
        ]
        read_only_fields = fields


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The token itself. Shown only in this response.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class ApiTokenCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=SCOPE_VALUES), min_length=1, max_length=4
    )
    team = OrgScopedRelatedField(model=Team, required=False, allow_null=True)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class ApiTokenUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
