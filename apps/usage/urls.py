from django.urls import path

from apps.usage import views

urlpatterns = [
    path("o/<slug:org_slug>/", views.DashboardView.as_view(), name="dashboard"),
    path("o/<slug:org_slug>/usage/", views.ExplorerView.as_view(), name="usage"),
    path("o/<slug:org_slug>/usage/spend.csv", views.SpendCsvView.as_view(), name="usage-csv"),
    path("o/<slug:org_slug>/usage/focus.csv", views.FocusCsvView.as_view(), name="usage-focus-csv"),
]
