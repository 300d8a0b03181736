from rest_framework import mixins

from apps.audit.filters import AuditEventFilter
from apps.audit.models import AuditEvent
from apps.audit.serializers import AuditEventSerializer
from apps.orgs.permissions import SCOPE_ADMIN
from apps.orgs.tenancy import OrgScopedViewSet


class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """The audit trail, newest first. Read-only: there is no route that creates, changes or deletes an event.
    Like API tokens, it needs the admin scope."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    scope_map = {"list": SCOPE_ADMIN, "retrieve": SCOPE_ADMIN}
    http_method_names = ["get", "head", "options"]

    def scope_queryset(self, queryset):
        return queryset.order_by("-created_at", "-id")


def register(router):
    router.register("audit", AuditEventViewSet, basename="audit")
