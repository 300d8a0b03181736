from django.urls import path

from apps.reports import views

P = "o/<slug:org_slug>/reports/"
M = P + "<str:period>/"

urlpatterns = [
    path(P, views.ReportListView.as_view(), name="reports"),
    path(M, views.ReportPreviewView.as_view(), name="report"),
    path(f"{M}email.html", views.ReportEmailHtmlView.as_view(), name="report-email"),
    path(f"{M}report.csv", views.ReportCsvView.as_view(), name="report-csv"),
    path(f"{M}report.pdf", views.ReportPdfView.as_view(), name="report-pdf"),
    path(f"{M}resend/", views.ReportResendView.as_view(), name="report-resend"),
    path("reports/unsubscribe/<str:token>/", views.UnsubscribeView.as_view(), name="report-unsubscribe"),
]
