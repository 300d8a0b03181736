"""Forms for the budgets screens. They parse and render; the rules (amount > 0, thresholds 1-1000, a custom period
that ends after it starts, a scope's required field) are apps.budgets.services', whose errors the views put back on
these forms."""

import re
from datetime import date, timedelta

from django import forms

from apps.budgets.models import Budget
from apps.orgs.models import ApiToken, Membership, Team

MAX_THRESHOLDS = 20
DATE_WIDGET = {"type": "date"}


class BudgetForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="e.g. “Support copilot” or “Company AI spend”.")
    scope = forms.ChoiceField(choices=Budget.SCOPES, initial=Budget.SCOPE_ORG, label="Applies to")
    team = forms.ModelChoiceField(
        queryset=Team.objects.none(),
        required=False,
        empty_label="Choose a team",
        error_messages={"invalid_choice": "Choose one of this organisation’s teams."},
    )
    provider = forms.CharField(max_length=64, required=False, help_text="As in the ledger, e.g. openai.")
    model = forms.CharField(max_length=128, required=False, help_text="As in the ledger, e.g. gpt-4.1.")
    tag_key = forms.CharField(
        max_length=64, required=False, label="Tag", help_text="e.g. feature or customer."
    )
    tag_value = forms.CharField(max_length=128, required=False, label="Tag value", help_text="e.g. copilot.")
    token = forms.ModelChoiceField(
        queryset=ApiToken.objects.none(),
        required=False,
        label="API token",
        empty_label="Choose a token",
        error_messages={"invalid_choice": "Choose one of this organisation’s API tokens."},
    )
    period = forms.ChoiceField(choices=Budget.PERIODS, initial=Budget.MONTHLY)
    custom_start = forms.DateField(
        required=False, label="First day", widget=forms.DateInput(attrs=DATE_WIDGET)
    )
    custom_end = forms.DateField(
        required=False,
        label="Last day",
        help_text="Included in the period.",
        widget=forms.DateInput(attrs=DATE_WIDGET),
    )
    amount = forms.DecimalField(
        max_digits=18,
        decimal_places=2,
        label="Amount (USD)",
        help_text="For each period.",
        widget=forms.NumberInput(attrs={"step": "0.01", "inputmode": "decimal"}),
    )
    thresholds = forms.CharField(
        initial="50, 80, 100",
        max_length=200,
        label="Alert at (% of the amount)",
        help_text="Comma-separated, e.g. 50, 80, 100. Each sends one alert per period.",
        error_messages={"required": "Give at least one percentage, e.g. 50, 80, 100."},
    )
    hard_cap = forms.DecimalField(
        max_digits=18,
        decimal_places=2,
        required=False,
        label="Hard cap (USD, optional)",
        help_text="Pre-flight checks that would take spend above this are denied.",
        widget=forms.NumberInput(attrs={"step": "0.01", "inputmode": "decimal"}),
    )
    is_active = forms.BooleanField(
        required=False,
        initial=True,
        label="Active",
        help_text="A paused budget raises no alerts and is left out of pre-flight checks.",
    )

    def __init__(self, *args, org, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = Team.objects.for_org(org)
        tokens = ApiToken.objects.for_org(org)
        self.fields["token"].queryset = tokens
        self.fields["token"].label_from_instance = lambda t: (
            f"{t.name} ({t.prefix}…)" if t.status == "active" else f"{t.name} ({t.prefix}…, {t.status})"
        )
        self.fields["provider"].widget.attrs.update(list="provider-options", autocomplete="off")
        self.fields["model"].widget.attrs.update(list="model-options", autocomplete="off")
        self.fields["tag_key"].widget.attrs.update(list="tag-key-options", autocomplete="off")

    @classmethod
    def initial_for(cls, budget: Budget) -> dict:
        """The form's initial values for an existing budget (the stored end is exclusive; the form's is the last day)."""
        return {
            "name": budget.name,
            "scope": budget.scope,
            "team": budget.team_id,
            "provider": budget.provider,
            "model": budget.model,
            "tag_key": budget.tag_key,
            "tag_value": budget.tag_value,
            "token": budget.token_id,
            "period": budget.period,
            "custom_start": budget.custom_start,
            "custom_end": budget.custom_end - timedelta(days=1) if budget.custom_end else None,
            "amount": budget.amount,
            "thresholds": ", ".join(str(t) for t in budget.thresholds),
            "hard_cap": budget.hard_cap,
            "is_active": budget.is_active,
        }

    def clean_thresholds(self) -> list[int]:
        parts = [
            p.strip().removesuffix("%").strip() for p in re.split(r"[,;\s]+", self.cleaned_data["thresholds"])
        ]
        parts = [p for p in parts if p]
        if not parts or not all(re.fullmatch(r"-?\d{1,6}", p) for p in parts):
            raise forms.ValidationError("Give whole percentages separated by commas, e.g. 50, 80, 100.")
        if len(parts) > MAX_THRESHOLDS:
            raise forms.ValidationError(f"Give at most {MAX_THRESHOLDS} percentages.")
        return [int(p) for p in parts]

    def clean_custom_end(self):
        end = self.cleaned_data["custom_end"]
        if end is not None and end >= date.max:
            raise forms.ValidationError("Choose an earlier date.")
        return end

    def budget_fields(self) -> dict:
        """The cleaned data as budget_create/budget_update take it."""
        data = dict(self.cleaned_data)
        if data["custom_end"] is not None:
            data["custom_end"] += timedelta(days=1)  # the model's end is exclusive
        return data


class EmailChannelForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="e.g. “Finance team”.")
    recipients = forms.ModelMultipleChoiceField(
        queryset=Membership.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        label="Send to",
        error_messages={
            "required": "Choose at least one member.",
            "invalid_choice": "Choose members of this organisation.",
            "invalid_pk_value": "Choose members of this organisation.",
        },
    )

    def __init__(self, *args, org, **kwargs):
        kwargs.setdefault("prefix", "email")
        super().__init__(*args, **kwargs)
        self.fields["recipients"].queryset = Membership.objects.for_org(org).select_related("user")
        self.fields["recipients"].label_from_instance = lambda m: f"{m.user.email} ({m.get_role_display()})"


class WebhookChannelForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="e.g. “#finance-alerts on Slack”.")
    url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        label="URL",
        help_text="spendctl POSTs each alert here as JSON, signed with a secret shown once.",
    )
    slack_format = forms.BooleanField(
        required=False,
        label="Slack format",
        help_text="Send Slack’s message payload (for a Slack incoming webhook).",
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("prefix", "webhook")
        super().__init__(*args, **kwargs)
