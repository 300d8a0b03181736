from django import forms

from apps.orgs.models import CURRENCIES, TIMEZONES, Team
from apps.orgs.permissions import OWNER, ROLES, TOKEN_SCOPES


class TeamForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(max_length=500, required=False, widget=forms.TextInput)


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=ROLES, initial="member")

    def __init__(self, *args, can_grant_owner=False, **kwargs):
        super().__init__(*args, **kwargs)
        if not can_grant_owner:
            self.fields["role"].choices = [c for c in ROLES if c[0] != OWNER]


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLES)


EXPIRY_CHOICES = [("", "Never"), ("30", "In 30 days"), ("90", "In 90 days"), ("365", "In a year")]


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses this token, e.g. 'support-bot production'.")
    scopes = forms.MultipleChoiceField(
        choices=TOKEN_SCOPES, widget=forms.CheckboxSelectMultiple, initial=["read"]
    )
    team = forms.ModelChoiceField(
        queryset=Team.objects.none(), required=False, empty_label="Whole organisation"
    )
    expires_in_days = forms.ChoiceField(choices=EXPIRY_CHOICES, required=False, label="Expires")

    def __init__(self, *args, org=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = Team.objects.for_org(org)


class OrgSettingsForm(forms.Form):
    name = forms.CharField(max_length=100)
    currency = forms.ChoiceField(choices=CURRENCIES, help_text="Budgets and reports are in this currency.")
    timezone = forms.ChoiceField(
        choices=[(tz, tz) for tz in TIMEZONES], help_text="Days and months start at midnight here."
    )
