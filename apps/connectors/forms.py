from django import forms

from apps.connectors.providers import registry


class ConnectionForm(forms.Form):
    provider = forms.ChoiceField(choices=())
    label = forms.CharField(max_length=100, help_text="e.g. 'OpenAI production'")
    api_key = forms.CharField(
        label="Admin key",
        max_length=500,
        widget=forms.PasswordInput(render_value=False),
        help_text="Tested with the provider when you save, then encrypted. It is never shown again.",
    )
    base_url = forms.URLField(
        assume_scheme="https",  # a host typed without a scheme is https://, as for webhooks (Django 6's default)
        label="Base URL (optional)",
        required=False,
        max_length=300,
        help_text="Only for proxies or regional endpoints.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = [(c.key, c.label) for c in registry.all_providers()]


class ReplaceKeyForm(forms.Form):
    api_key = forms.CharField(
        label="New admin key", max_length=500, widget=forms.PasswordInput(render_value=False)
    )


class BackfillForm(forms.Form):
    start = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), help_text="First UTC day")
    end = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), help_text="Day after the last")
