"""The one DRF router. Each app's api module registers its viewsets here."""

from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from apps.audit import api as audit_api
from apps.budgets import api as budgets_api
from apps.catalog import api as catalog_api
from apps.connectors import api as connectors_api
from apps.orgs import api as orgs_api
from apps.reports import api as reports_api
from apps.usage import api as usage_api
from spendctl.common.api import api_not_found

# Canonical paths have no trailing slash (/api/v1/teams, /api/v1/teams/3), and no format-suffix routes.
router = SimpleRouter(trailing_slash=False)
orgs_api.register(router)
usage_api.register(router)
catalog_api.register(router)
connectors_api.register(router)
budgets_api.register(router)
audit_api.register(router)
reports_api.register(router)

urlpatterns = [
    path("org", orgs_api.OrgView.as_view(), name="org"),
    path("events", usage_api.EventsView.as_view(), name="events"),
    path("spend", usage_api.SpendView.as_view(), name="spend"),
    path("prices", catalog_api.PriceView.as_view(), name="prices"),
    path("check", budgets_api.CheckView.as_view(), name="check"),
    *router.urls,
    # Anything else under /api/v1/ is a JSON 404 in the error shape, in DEBUG too.
    re_path(r"^.*$", api_not_found),
]
