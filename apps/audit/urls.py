from django.urls import path

from apps.audit import views

urlpatterns = [
    path("o/<slug:org_slug>/settings/audit/", views.AuditLogView.as_view(), name="settings-audit"),
]
