from django.urls import path

from apps.connectors import views

urlpatterns = [
    path("o/<slug:org_slug>/connectors/", views.ConnectorsView.as_view(), name="connectors"),
    path("o/<slug:org_slug>/connectors/<int:pk>/", views.ConnectorDetailView.as_view(), name="connector"),
]
