from django.urls import path
from django.views.generic import RedirectView

from apps.orgs import views

urlpatterns = [
    path("", views.home, name="home"),
    # The dashboard (o/<slug>/) and usage (o/<slug>/usage/) are served by apps.usage.urls, connectors by
    # apps.connectors.urls.
    *[
        path(f"o/<slug:org_slug>/{area}/", views.AreaView.as_view(area=area), name=area)
        for area in views.AREAS
    ],
    path("o/<slug:org_slug>/settings/", RedirectView.as_view(pattern_name="settings-teams"), name="settings"),
    path("o/<slug:org_slug>/settings/organisation/", views.OrgSettingsView.as_view(), name="settings-org"),
    path("o/<slug:org_slug>/settings/teams/", views.TeamsView.as_view(), name="settings-teams"),
    path(
        "o/<slug:org_slug>/settings/teams/<int:pk>/", views.TeamEditView.as_view(), name="settings-team-edit"
    ),
    path("o/<slug:org_slug>/settings/members/", views.MembersView.as_view(), name="settings-members"),
    path(
        "o/<slug:org_slug>/settings/members/<int:pk>/",
        views.MemberChangeView.as_view(),
        name="settings-member-change",
    ),
    path("o/<slug:org_slug>/settings/tokens/", views.TokensView.as_view(), name="settings-tokens"),
    path(
        "o/<slug:org_slug>/settings/tokens/<int:pk>/revoke/",
        views.TokenRevokeView.as_view(),
        name="settings-token-revoke",
    ),
]
