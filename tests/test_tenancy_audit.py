"""Walks every registered API route with a second org's token and proves it sees and touches nothing of the first.

New routes are covered automatically: anything added to the one router (or to the api urlpatterns) is walked here,
and a viewset whose model has no entry in tests.factories.ORG_OWNED_FACTORIES fails the audit.
"""

import re

import pytest
from django.apps import apps as django_apps
from django.urls import URLPattern, URLResolver

from apps.orgs.tenancy import OrgOwnedModel, OrgScopedAPIView, OrgScopedViewSet
from spendctl import api_router
from spendctl.common.api import api_not_found
from tests.factories import ORG_OWNED_FACTORIES, SECRET, OrganizationFactory

pytestmark = pytest.mark.django_db


def _api_patterns(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _api_patterns(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p.callback


def _view_class(callback):
    return getattr(callback, "cls", None) or getattr(callback, "view_class", None)


ROUTES = list(_api_patterns(api_router.urlpatterns))


def test_every_api_view_uses_the_org_scoped_base():
    assert len(ROUTES) > 5
    for pattern, callback in ROUTES:
        if callback is api_not_found:
            continue
        cls = _view_class(callback)
        assert cls is not None and issubclass(cls, OrgScopedViewSet | OrgScopedAPIView), (
            f"{pattern} is served by {callback}, which is not an OrgScopedViewSet/OrgScopedAPIView"
        )


def test_the_base_class_cannot_be_unsealed():
    with pytest.raises(TypeError, match="get_queryset"):

        class Leaky(OrgScopedViewSet):  # noqa: F841
            def get_queryset(self):
                return []


def test_every_org_owned_model_indexes_org():
    models = [m for m in django_apps.get_models() if issubclass(m, OrgOwnedModel)]
    assert len(models) >= 3
    for model in models:
        field = model._meta.get_field("org")
        assert not field.null, model
        # an index or a unique constraint (a unique index) whose first column is org counts
        leading = [ix.fields for ix in model._meta.indexes if not ix.condition]
        leading += [
            c.fields for c in model._meta.constraints if getattr(c, "fields", None) and not c.condition
        ]
        assert field.db_index or any(fields and fields[0] == "org" for fields in leading), model


def _url(pattern: str, pk) -> str:
    path = pattern.replace("^", "").replace("$", "")
    path = re.sub(r"\(\?P<[a-z_]+>[^)]*\)", str(pk), path)
    return "/api/v1/" + path.replace("\\", "")


def test_another_orgs_token_sees_and_touches_nothing(api, db):
    secret_org = OrganizationFactory(name=f"{SECRET} org", slug="alpha-secret")
    rows = {}
    for _pattern, callback in ROUTES:
        cls = _view_class(callback)
        queryset = getattr(cls, "queryset", None)
        if queryset is None or not issubclass(cls, OrgScopedViewSet):
            continue
        model = queryset.model
        assert model in ORG_OWNED_FACTORIES, (
            f"add a factory for {model.__name__} to tests.factories.ORG_OWNED_FACTORIES"
        )
        if model not in rows:
            rows[model] = ORG_OWNED_FACTORIES[model](secret_org)

    intruder = api(OrganizationFactory(name="Intruder", slug="intruder"), scopes=["admin"])
    walked = 0
    for pattern, callback in ROUTES:
        if callback is api_not_found:
            continue
        cls = _view_class(callback)
        actions = getattr(callback, "actions", None) or {
            m: m for m in ("get", "post", "patch", "put", "delete")
        }
        detail = "(?P<" in pattern
        target = rows.get(getattr(getattr(cls, "queryset", None), "model", None))
        url = _url(pattern, target.pk if (detail and target) else 0)
        for method in list(actions):
            response = getattr(intruder, method)(url, {}, format="json")
            walked += 1
            assert SECRET.lower() not in response.content.decode().lower(), (
                f"{method.upper()} {url} leaked data"
            )
            assert response.status_code < 500, f"{method.upper()} {url} -> {response.status_code}"
            if detail:
                assert response.status_code in (404, 405), f"{method.upper()} {url} -> {response.status_code}"
    assert walked >= 10
    for model, row in rows.items():
        assert model.objects.filter(pk=row.pk).exists(), f"{model.__name__} was changed by another org"
        if hasattr(row, "revoked_at"):
            row.refresh_from_db()
            assert row.revoked_at is None
