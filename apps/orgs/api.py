from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.response import Response

from apps.orgs import services
from apps.orgs.models import ApiToken, Membership, Team
from apps.orgs.permissions import SCOPE_ADMIN
from apps.orgs.serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    ApiTokenUpdateSerializer,
    MemberSerializer,
    OrgSerializer,
    TeamSerializer,
)
from apps.orgs.tenancy import OrgScopedAPIView, OrgScopedViewSet


class OrgView(OrgScopedAPIView):
    """The organisation the token belongs to."""

    serializer_class = OrgSerializer

    def get(self, request):
        return Response(OrgSerializer(self.org).data)


class TeamViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    OrgScopedViewSet,
):
    queryset = Team.objects.all()
    serializer_class = TeamSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer):
        serializer.instance = services.team_create(org=self.org, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.team_update(team=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        services.team_delete(team=instance)


class MemberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    queryset = Membership.objects.all()
    serializer_class = MemberSerializer

    def scope_queryset(self, queryset):
        return queryset.select_related("user").order_by("user__email")


class ApiTokenViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, OrgScopedViewSet
):
    """API tokens. Every action needs the admin scope. DELETE revokes (the record stays for the audit)."""

    queryset = ApiToken.objects.all()
    serializer_class = ApiTokenSerializer
    scope_map = {"list": SCOPE_ADMIN, "retrieve": SCOPE_ADMIN}
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def scope_queryset(self, queryset):
        return queryset.select_related("team", "created_by")

    @extend_schema(request=ApiTokenCreateSerializer, responses={201: ApiTokenCreatedSerializer})
    def create(self, request):
        data = ApiTokenCreateSerializer(data=request.data, context=self.get_serializer_context())
        data.is_valid(raise_exception=True)
        token, plaintext = services.api_token_create(
            org=self.org, created_by=request.api_token.created_by, **data.validated_data
        )
        body = ApiTokenCreatedSerializer(token).data | {"token": plaintext}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=ApiTokenUpdateSerializer, responses=ApiTokenSerializer)
    def partial_update(self, request, pk=None):
        token = self.get_object()
        data = ApiTokenUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(
            ApiTokenSerializer(services.api_token_rename(token=token, **data.validated_data)).data
        )

    def perform_destroy(self, instance):
        services.api_token_revoke(token=instance)


def register(router):
    router.register("teams", TeamViewSet, basename="team")
    router.register("members", MemberViewSet, basename="member")
    router.register("tokens", ApiTokenViewSet, basename="token")
