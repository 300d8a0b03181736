"""THE tenant-scoping layer. Every tenant-owned row is reached through here; nothing else filters by org by hand.

- OrgOwnedModel / OrgQuerySet.for_org: the model side.
- OrgScopedViewSet / OrgScopedAPIView: the API side. They own get_queryset/get_object/permissions; subclasses that
  try to override them fail at import (PostHog's sealed base). Another org's row is a 404, like a missing one.
- OrgScopedRelatedField: related ids in input resolve only inside the caller's org.
- OrgViewMixin: the server-rendered side: resolves /o/<slug>/, non-members get a 404.
"""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404
from django.shortcuts import get_object_or_404
from rest_framework import generics, serializers, viewsets

from apps.orgs.permissions import ALL_CAPABILITIES, HasOrgScope, role_can


class OrgQuerySet(models.QuerySet):
    def for_org(self, org):
        if org is None:
            return self.none()
        return self.filter(org=org)


class OrgOwnedModel(models.Model):
    org = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")

    objects = OrgQuerySet.as_manager()

    class Meta:
        abstract = True


_SEALED = ("get_queryset", "get_object", "get_permissions", "initial")


class _Sealed:
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("_tenancy_base"):
            return
        for name in _SEALED:
            if name in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__} overrides {name}(); org scoping is owned by apps.orgs.tenancy. "
                    "Narrow the rows with scope_queryset() instead."
                )


class _OrgScopedMixin(_Sealed):
    """Shared by viewsets and plain API views."""

    _tenancy_base = True
    extra_permission_classes: tuple = ()
    # action (or HTTP method, lower case) -> token scope; defaults: safe methods need "read", writes need "admin".
    scope_map: dict[str, str] = {}

    def get_permissions(self):
        return [HasOrgScope(), *(p() for p in self.extra_permission_classes)]

    def required_scope(self) -> str:
        action = getattr(self, "action", None)
        method = self.request.method.lower()
        if action and action in self.scope_map:
            return self.scope_map[action]
        if method in self.scope_map:
            return self.scope_map[method]
        return "read" if self.request.method in ("GET", "HEAD", "OPTIONS") else "admin"

    @property
    def org(self):
        return getattr(self.request, "org", None)

    def scope_queryset(self, queryset):
        """Hook for subclasses: narrow (never widen) the org's rows."""
        return queryset

    def get_queryset(self):
        model = self.queryset.model
        # The hook may narrow; the org filter is applied again after it so it can never widen.
        return self.scope_queryset(model.objects.for_org(self.org)).filter(org=self.org)

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["org"] = self.org
        return context


class OrgScopedViewSet(_OrgScopedMixin, viewsets.GenericViewSet):
    _tenancy_base = True

    def get_object(self):
        queryset = self.filter_queryset(self.get_queryset())
        lookup_url_kwarg = self.lookup_url_kwarg or self.lookup_field
        value = self.kwargs[lookup_url_kwarg]
        try:
            obj = queryset.get(**{self.lookup_field: value})
        except (queryset.model.DoesNotExist, ValueError, TypeError) as exc:
            raise Http404 from exc
        self.check_object_permissions(self.request, obj)
        return obj


class OrgScopedAPIView(_OrgScopedMixin, generics.GenericAPIView):
    """For endpoints that are not collections (GET /org, POST /check …)."""

    _tenancy_base = True

    def get_object(self):
        raise NotImplementedError("Singleton views read self.org directly.")


class OrgScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """A related id that resolves only inside the caller's org: another org's id reads as 'does not exist'."""

    def __init__(self, model=None, **kwargs):
        self.model = model
        kwargs.setdefault("queryset", model.objects.all() if model is not None else None)
        super().__init__(**kwargs)

    def get_queryset(self):
        org = self.context.get("org")
        return self.model.objects.for_org(org)


class OrgViewMixin(LoginRequiredMixin):
    """Web UI: resolves the org from /o/<org_slug>/; a non-member gets the same 404 as a missing org."""

    required_capability = "view"

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        from apps.orgs.selectors import membership_for

        membership = membership_for(user=request.user, org_slug=kwargs.get("org_slug"))
        if membership is None:
            raise Http404("No such organisation.")
        request.org = membership.org
        request.membership = membership
        if not role_can(membership.role, self.required_capability):
            raise PermissionDenied("Your role in this organisation cannot open this page.")
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["org"] = self.request.org
        context["membership"] = self.request.membership
        for capability in ALL_CAPABILITIES:
            context[f"can_{capability}"] = role_can(self.request.membership.role, capability)
        return context

    def org_object_or_404(self, model, **lookup):
        return get_object_or_404(model.objects.for_org(self.request.org), **lookup)


# Public API views that are deliberately not org-scoped (the audit test allows exactly these).
PUBLIC_API_VIEWS: set[str] = set()


def public_api_view(view_cls):
    PUBLIC_API_VIEWS.add(f"{view_cls.__module__}.{view_cls.__qualname__}")
    return view_cls
