from django.urls import path

from apps.budgets import views

P = "o/<slug:org_slug>/budgets/"

urlpatterns = [
    path(P, views.BudgetListView.as_view(), name="budgets"),
    path(f"{P}new/", views.BudgetCreateView.as_view(), name="budget-new"),
    path(f"{P}alerts/", views.AlertsView.as_view(), name="alerts"),
    path(f"{P}alerts/<int:pk>/acknowledge/", views.AlertAcknowledgeView.as_view(), name="alert-acknowledge"),
    path(f"{P}notifications/", views.NotificationsView.as_view(), name="notifications"),
    path(f"{P}notifications/<int:pk>/delete/", views.ChannelDeleteView.as_view(), name="channel-delete"),
    path(f"{P}notifications/<int:pk>/test/", views.ChannelTestView.as_view(), name="channel-test"),
    path(f"{P}<int:pk>/", views.BudgetDetailView.as_view(), name="budget"),
    path(f"{P}<int:pk>/edit/", views.BudgetEditView.as_view(), name="budget-edit"),
    path(f"{P}<int:pk>/delete/", views.BudgetDeleteView.as_view(), name="budget-delete"),
]
