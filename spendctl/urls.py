from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from spendctl.common.api import json_error
from spendctl.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("spendctl.api_router")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("accounts/", include("apps.orgs.auth_urls")),
    path("", include("apps.usage.urls")),
    path("", include("apps.connectors.urls")),
    path("", include("apps.budgets.urls")),
    path("", include("apps.audit.urls")),
    path("", include("apps.reports.urls")),
    path("", include("apps.orgs.urls")),
]


def handler404(request, exception=None):
    if request.path.startswith("/api/"):
        return json_error(request, 404, "not_found", "Not found.")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    if request.path.startswith("/api/"):
        return json_error(
            request, 500, "server_error", "Something went wrong on our side; it has been logged."
        )
    from django.views.defaults import server_error

    return server_error(request)
