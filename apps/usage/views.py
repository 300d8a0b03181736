"""Finance screens: the dashboard, the usage explorer and its CSV downloads. Views parse, call selectors, render."""

from datetime import timedelta
from urllib.parse import urlencode

from django import forms
from django.core.exceptions import ValidationError
from django.views.generic import TemplateView

from apps.orgs.tenancy import OrgViewMixin
from apps.usage import dashboard, exports, selectors
from apps.usage.queries import parse_spend_query

FILTERS = ("start", "end", "team", "provider", "model", "feature", "customer")


class DashboardView(OrgViewMixin, TemplateView):
    template_name = "orgs/dashboard.html"

    def get_context_data(self, **kwargs):
        data = dashboard.dashboard(org=self.request.org, stack=self.request.GET.get("stack", "provider"))
        return super().get_context_data(nav="dashboard", currency=dashboard.CURRENCY, **data, **kwargs)


class ExplorerForm(forms.Form):
    """Renders the filters and carries their errors. Validation is parse_spend_query's (the API's rules)."""

    start = forms.CharField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.CharField(
        required=False,
        label="To",
        help_text="Not included: 1 Nov to 1 Dec is November.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    team = forms.CharField(required=False)
    provider = forms.CharField(required=False)
    model = forms.CharField(required=False)
    feature = forms.CharField(required=False)
    customer = forms.CharField(required=False)
    group_by = forms.CharField(required=False, label="Group by")
    then_by = forms.CharField(required=False, label="Then by")

    def __init__(self, *args, options: dict, **kwargs):
        super().__init__(*args, **kwargs)
        current = self.data
        teams = [("", "All teams"), *((str(i), n) for i, n in options["teams"]), ("none", "Unattributed")]
        providers = [("", "All providers"), *options["providers"]]
        for name, choices in (("team", teams), ("provider", providers)):
            value = current.get(name, "")
            if value and value not in {c for c, _ in choices}:
                choices.append((value, value))  # e.g. a team by name or a list from a shared link
            self.fields[name].widget = forms.Select(choices=choices)
        self.fields["group_by"].widget = forms.Select(choices=dashboard.DIMENSIONS)
        self.fields["then_by"].widget = forms.Select(choices=[("", "Nothing"), *dashboard.DIMENSIONS])
        for name in ("model", "feature", "customer"):
            self.fields[name].widget.attrs.update(list=f"{name}-options", autocomplete="off")
        self.fields["model"].help_text = "Several: separate with commas."


class ExplorerView(OrgViewMixin, TemplateView):
    """Spend for any filter, grouped by one or two dimensions: chart, table, CSV and FOCUS downloads."""

    template_name = "usage/explorer.html"

    def params(self) -> dict:
        """The filters in force: the query string's, with the explorer's defaults (the last 30 days by day)."""
        get = self.request.GET
        params = {name: get.get(name, "").strip() for name in FILTERS}
        group_by, then_by = get.get("group_by", "").strip(), get.get("then_by", "").strip()
        if "," in group_by and not then_by:  # the API's form, group_by=team,model
            group_by, _, then_by = group_by.partition(",")
        today = dashboard.org_today(self.request.org)
        params["start"] = params["start"] or (today - timedelta(days=29)).isoformat()
        params["end"] = params["end"] or (today + timedelta(days=1)).isoformat()
        params["group_by"] = group_by or "day"
        params["then_by"] = then_by
        return params

    def parse(self, params: dict):
        """(SpendQuery, None) or (None, {field: [messages]})."""
        errors: dict[str, list[str]] = {}
        dims = [d for d in (params["group_by"], params["then_by"]) if d]
        for name in ("group_by", "then_by"):
            if params[name] and params[name] not in dashboard.DIMENSION_KEYS:
                errors[name] = [f"Choose one of: {', '.join(dashboard.DIMENSION_KEYS)}."]
        api_params = {k: v for k, v in params.items() if v and k in FILTERS}
        api_params["group_by"] = ",".join(dims)
        try:
            query = parse_spend_query(self.request.org, api_params)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors.setdefault("then_by" if field == "group_by" and len(dims) > 1 else field, messages)
        if errors:
            return None, errors
        return query, None

    def get(self, request, *args, **kwargs):
        params = self.params()
        query, errors = self.parse(params)
        if errors:
            return self.render_to_response(self.get_context_data(params=params, errors=errors), status=400)
        return self.respond(query, params)

    def respond(self, query, params):
        return self.render_to_response(self.get_context_data(params=params, query=query))

    def get_context_data(self, *, params, query=None, errors=None, **kwargs):
        org = self.request.org
        options = dashboard.filter_options(org=org)
        form = ExplorerForm(data=params, options=options)
        form.is_valid()
        for field, messages in (errors or {}).items():
            for message in messages:
                form.add_error(field if field in form.fields else None, message)
        qs = urlencode({k: v for k, v in params.items() if v})
        today = dashboard.org_today(org)
        this_month, _ = dashboard.month_to_date(today)
        last_month = dashboard.Period(selectors.previous_month(today), this_month.start)
        base = {k: v for k, v in params.items() if k not in ("start", "end")}
        presets = [
            (label, urlencode({k: v for k, v in {**base, **period.params()}.items() if v}), period)
            for label, period in (
                ("Last 30 days", dashboard.last_days(today, 30)),
                ("Last 90 days", dashboard.last_days(today, 90)),
                ("This month", this_month),
                ("Last month", last_month),
            )
        ]
        context = {
            "nav": "usage",
            "form": form,
            "params": params,
            "query_string": qs,
            "presets": [
                {
                    "label": label,
                    "query": q,
                    "current": (p.start.isoformat(), p.end.isoformat()) == (params["start"], params["end"]),
                }
                for label, q, p in presets
            ],
            "datalists": [
                ("model-options", options["models"]),
                ("feature-options", options["features"]),
                ("customer-options", options["customers"]),
            ],
            "currency": dashboard.CURRENCY,
            "has_usage": dashboard.has_usage(org=org),
        }
        if query is not None:
            context["result"] = dashboard.explorer(
                org=org, query=query, base_params={k: v for k, v in params.items() if v}
            )
        return super().get_context_data(**context, **kwargs)


class SpendCsvView(ExplorerView):
    """The explorer's groups as CSV: the API's spend CSV (GET /api/v1/spend?format=csv) for the same filters."""

    def respond(self, query, params):
        result = selectors.format_spend(selectors.spend_by(org=self.request.org, query=query))
        return exports.spend_csv(result, query.group_by, f"spend-{query.start}-{query.end}.csv")


class FocusCsvView(ExplorerView):
    """The ledger rows behind the explorer's filters in the FinOps FOCUS 1.0 format (as GET /api/v1/usage?format=focus)."""

    def respond(self, query, params):
        org = self.request.org
        records = selectors.ledger_list(org=org, query=query)
        teams = dashboard.team_names(org=org)
        return exports.focus_csv(records, org, teams, f"usage-{query.start}-{query.end}-focus.csv")
