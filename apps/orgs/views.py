"""Web UI for tenants: home, org shell pages and the settings area. Views parse, call a service, render."""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views import View
from django.views.generic import TemplateView

from apps.orgs import selectors, services
from apps.orgs.forms import InviteForm, OrgSettingsForm, RoleForm, TeamForm, TokenForm
from apps.orgs.models import ApiToken, Membership, Team
from apps.orgs.permissions import role_can
from apps.orgs.tenancy import OrgViewMixin
from spendctl.common.exceptions import ApplicationError


def apply_to_form(form, call):
    """Run a service; put its validation errors on the form. Returns the result or None on error."""
    try:
        return call()
    except ValidationError as exc:
        for field, errors in (
            exc.message_dict.items() if hasattr(exc, "error_dict") else [(None, exc.messages)]
        ):
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
    except ApplicationError as exc:
        form.add_error(None, exc.message)
    return None


@login_required
def home(request):
    first = selectors.orgs_for_user(user=request.user).first()
    if first is None:
        return render(request, "orgs/no_org.html")
    return redirect("dashboard", org_slug=first.slug)


# The dashboard and the usage explorer live in apps.usage.views.
AREAS = {
    "recommendations": ("Recommendations", "Where routing to a cheaper model saves money, and how much."),
    "plans": ("Plans", "Outcome-based pricing plans and the margin on every outcome."),
    "reports": ("Reports", "Monthly spend reports, as e-mailed, with CSV and PDF downloads."),
}


class AreaView(OrgViewMixin, TemplateView):
    """The navigation's areas whose screens arrive with their own issues."""

    template_name = "orgs/area.html"
    area = ""

    def get_context_data(self, **kwargs):
        title, blurb = AREAS[self.area]
        return super().get_context_data(nav=self.area, title=title, blurb=blurb, **kwargs)


class SettingsMixin(OrgViewMixin):
    settings_tab = ""

    def get_context_data(self, **kwargs):
        return super().get_context_data(nav="settings", tab=self.settings_tab, **kwargs)

    def require(self, capability: str):
        if not role_can(self.request.membership.role, capability):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied("Your role in this organisation cannot change this.")


class OrgSettingsView(SettingsMixin, TemplateView):
    template_name = "orgs/settings/organisation.html"
    settings_tab = "organisation"

    def get_context_data(self, **kwargs):
        org = self.request.org
        kwargs.setdefault(
            "form",
            OrgSettingsForm(initial={"name": org.name, "currency": org.currency, "timezone": org.timezone}),
        )
        return super().get_context_data(**kwargs)

    def post(self, request, *args, **kwargs):
        self.require("manage_settings")
        form = OrgSettingsForm(request.POST)
        if form.is_valid() and apply_to_form(
            form,
            lambda: services.org_update(
                org=request.org,
                name=form.cleaned_data["name"],
                currency=form.cleaned_data["currency"],
                timezone_name=form.cleaned_data["timezone"],
            ),
        ):
            messages.success(request, "Organisation settings saved.")
            return redirect("settings-org", org_slug=request.org.slug)
        return self.render_to_response(self.get_context_data(form=form))


class TeamsView(SettingsMixin, TemplateView):
    template_name = "orgs/settings/teams.html"
    settings_tab = "teams"

    def get_context_data(self, **kwargs):
        kwargs.setdefault("form", TeamForm())
        return super().get_context_data(teams=selectors.team_list(org=self.request.org), **kwargs)

    def post(self, request, *args, **kwargs):
        self.require("manage_settings")
        form = TeamForm(request.POST)
        if form.is_valid() and apply_to_form(
            form, lambda: services.team_create(org=request.org, **form.cleaned_data)
        ):
            messages.success(request, f"Team “{form.cleaned_data['name']}” created.")
            return redirect("settings-teams", org_slug=request.org.slug)
        return self.render_to_response(self.get_context_data(form=form), status=400)


class TeamEditView(SettingsMixin, TemplateView):
    template_name = "orgs/settings/team_edit.html"
    settings_tab = "teams"
    required_capability = "manage_settings"

    def get_context_data(self, **kwargs):
        team = self.org_object_or_404(Team, pk=self.kwargs["pk"])
        kwargs.setdefault("form", TeamForm(initial={"name": team.name, "description": team.description}))
        return super().get_context_data(team=team, **kwargs)

    def post(self, request, *args, **kwargs):
        team = self.org_object_or_404(Team, pk=kwargs["pk"])
        if "delete" in request.POST:
            services.team_delete(team=team)
            messages.success(request, f"Team “{team.name}” deleted.")
            return redirect("settings-teams", org_slug=request.org.slug)
        form = TeamForm(request.POST)
        if form.is_valid() and apply_to_form(
            form, lambda: services.team_update(team=team, **form.cleaned_data)
        ):
            messages.success(request, "Team saved.")
            return redirect("settings-teams", org_slug=request.org.slug)
        return self.render_to_response(self.get_context_data(form=form), status=400)


class MembersView(SettingsMixin, TemplateView):
    template_name = "orgs/settings/members.html"
    settings_tab = "members"

    def _invite_form(self, data=None):
        return InviteForm(data, can_grant_owner=role_can(self.request.membership.role, "manage_owners"))

    def get_context_data(self, **kwargs):
        kwargs.setdefault("form", self._invite_form())
        return super().get_context_data(
            members=selectors.member_list(org=self.request.org), role_form=RoleForm(), **kwargs
        )

    def post(self, request, *args, **kwargs):
        self.require("manage_members")
        form = self._invite_form(request.POST)
        if form.is_valid() and apply_to_form(
            form,
            lambda: services.membership_invite(org=request.org, invited_by=request.user, **form.cleaned_data),
        ):
            messages.success(request, f"{form.cleaned_data['email']} was added and has been e-mailed.")
            return redirect("settings-members", org_slug=request.org.slug)
        return self.render_to_response(self.get_context_data(form=form), status=400)


class MemberChangeView(SettingsMixin, View):
    required_capability = "manage_members"

    def post(self, request, *args, **kwargs):
        membership = self.org_object_or_404(Membership, pk=kwargs["pk"])
        try:
            if "remove" in request.POST:
                services.membership_remove(membership=membership, actor=request.membership)
                messages.success(request, f"{membership.user.email} was removed.")
            else:
                form = RoleForm(request.POST)
                if not form.is_valid():
                    raise ValidationError("Choose a valid role.")
                services.membership_role_set(
                    membership=membership, role=form.cleaned_data["role"], actor=request.membership
                )
                messages.success(request, f"{membership.user.email} is now {form.cleaned_data['role']}.")
        except (ValidationError, ApplicationError) as exc:
            messages.error(request, getattr(exc, "message", None) or "; ".join(exc.messages))
        return redirect("settings-members", org_slug=request.org.slug)


class TokensView(SettingsMixin, TemplateView):
    template_name = "orgs/settings/tokens.html"
    settings_tab = "tokens"
    required_capability = "manage_tokens"

    def get_context_data(self, **kwargs):
        kwargs.setdefault("form", TokenForm(org=self.request.org))
        return super().get_context_data(tokens=selectors.api_token_list(org=self.request.org), **kwargs)

    def post(self, request, *args, **kwargs):
        form = TokenForm(request.POST, org=request.org)
        if form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            result = apply_to_form(
                form,
                lambda: services.api_token_create(
                    org=request.org,
                    name=form.cleaned_data["name"],
                    scopes=form.cleaned_data["scopes"],
                    team=form.cleaned_data["team"],
                    expires_at=timezone.now() + timedelta(days=int(days)) if days else None,
                    created_by=request.user,
                ),
            )
            if result:
                token, plaintext = result
                # Rendered, not redirected: the plaintext is never stored, so this page is the only time it shows.
                return self.render_to_response(
                    self.get_context_data(created=token, plaintext=plaintext, form=TokenForm(org=request.org))
                )
        return self.render_to_response(self.get_context_data(form=form), status=400)


class TokenRevokeView(SettingsMixin, View):
    required_capability = "manage_tokens"

    def post(self, request, *args, **kwargs):
        token = self.org_object_or_404(ApiToken, pk=kwargs["pk"])
        services.api_token_revoke(token=token)
        messages.success(request, f"Token “{token.name}” revoked. It stops working now.")
        return redirect(reverse("settings-tokens", kwargs={"org_slug": request.org.slug}))


class InviteAwarePasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's "set a new password" page, which is also where an invited person accepts (their first password)."""

    def form_valid(self, form):
        invited = not self.user.has_usable_password()
        with transaction.atomic():
            response = super().form_valid(form)
            if invited:
                services.membership_invites_accept(user=self.user)
        return response
