"""Budgets screens: list with burn bars and forecasts, a budget's page with its burn chart, create/edit/delete, the
alerts inbox and the notification channels. Views parse (forms), authorise, call a service or selector, render."""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import urlencode, urlsplit

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.generic import TemplateView

from apps.budgets import selectors, services
from apps.budgets.forms import BudgetForm, EmailChannelForm, WebhookChannelForm
from apps.budgets.models import Alert, AlertChannel, Budget, WebhookDelivery
from apps.budgets.selectors import BudgetStatus
from apps.orgs.permissions import role_can
from apps.orgs.tenancy import OrgViewMixin
from apps.orgs.views import apply_to_form
from apps.usage.dashboard import CURRENCY, filter_options, format_money, format_percent, provider_label
from spendctl.common.charts import ChartSpec, Series

HUNDRED = Decimal(100)
ALERTS_PER_PAGE = 50
DELIVERIES_SHOWN = 5
ALERT_STATES = {"open": "Open", "acknowledged": "Acknowledged", "all": "All"}


# --- presentation helpers ------------------------------------------------------------------------------------------


def scope_label(budget: Budget) -> str:
    """What a budget covers, in words: "Team Support", "Model gpt-4.1", "Tag feature = copilot"."""
    if budget.scope == Budget.SCOPE_TEAM:
        return f"Team {budget.team.name}" if budget.team else "Team (deleted)"
    if budget.scope == Budget.SCOPE_PROVIDER:
        return f"Provider {provider_label(budget.provider)}"
    if budget.scope == Budget.SCOPE_MODEL:
        return f"Model {budget.model}"
    if budget.scope == Budget.SCOPE_TAG:
        return f"Tag {budget.tag_key} = {budget.tag_value}"
    if budget.scope == Budget.SCOPE_TOKEN:
        return f"API token {budget.token.name} ({budget.token.prefix}…)" if budget.token else "API token"
    return "Whole organisation"


def _day(day: date, *, year: bool = False) -> str:
    return f"{day.day} {day:%b}" + (f" {day:%Y}" if year else "")


def period_label(status: BudgetStatus) -> str:
    """ "1 Nov – 30 Nov 2026" (the stored end is exclusive)."""
    start, last = status.period_start, status.period_end - timedelta(days=1)
    return f"{_day(start, year=start.year != last.year)} – {_day(last, year=True)}"


@dataclass(frozen=True)
class BudgetCard:
    """One budget as the screens show it: the selector's status plus words, colours and formatted money."""

    budget: Budget
    status: BudgetStatus
    scope: str
    period: str
    state: str  # ok | warn | over: the burn bar's colour
    state_label: str
    bar: Decimal  # percent used, capped at 100 for the bar
    spent: str
    amount: str
    percent: str
    remaining: str
    over_by: str | None
    forecast_total: str
    forecast_low: str
    forecast_high: str
    forecast_percent: str
    forecast_state: str  # ok | warn | over
    forecast_note: str
    not_started: bool
    ended: bool


def budget_card(status: BudgetStatus, today: date) -> BudgetCard:
    budget, fc = status.budget, status.forecast
    crossed = status.thresholds_crossed
    if status.percent >= HUNDRED:
        state, state_label = "over", "Over budget"
    elif crossed:
        state, state_label = "warn", f"Past {crossed[-1]}%"
    else:
        state, state_label = "ok", "On track"
    not_started, ended = today < status.period_start, today >= status.period_end
    forecast_percent = fc.expected_total / budget.amount * HUNDRED
    if status.percent >= HUNDRED:
        forecast_state = "over"
        when = f" on {_day(fc.crossing_date)}" if fc.crossing_date else ""
        forecast_note = f"Crossed 100%{when}"
    elif ended:
        forecast_state, forecast_note = "ok", "Period ended under budget"
    elif fc.crossing_date and fc.crossing_date < status.period_end:
        when = "today" if fc.crossing_date == today else f"on {_day(fc.crossing_date)}"
        forecast_state, forecast_note = "warn", f"Forecast to cross 100% {when}"
    elif fc.high > budget.amount:
        forecast_state, forecast_note = "ok", "Likely under budget; the top of the range is over"
    else:
        forecast_state, forecast_note = "ok", "Forecast to stay under budget"
    return BudgetCard(
        budget=budget,
        status=status,
        scope=scope_label(budget),
        period=period_label(status),
        state=state,
        state_label=state_label,
        bar=min(HUNDRED, max(Decimal(0), status.percent)),
        spent=format_money(status.spent),
        amount=format_money(budget.amount),
        percent=format_percent(status.percent),
        remaining=format_money(max(status.remaining, Decimal(0))),
        over_by=format_money(-status.remaining) if status.remaining < 0 else None,
        forecast_total=format_money(fc.expected_total),
        forecast_low=format_money(fc.low),
        forecast_high=format_money(fc.high),
        forecast_percent=format_percent(forecast_percent),
        forecast_state=forecast_state,
        forecast_note=forecast_note,
        not_started=not_started,
        ended=ended,
    )


# Chart colours (the palette's green for actual spend, as on the dashboard; the forecast in amber).
ACTUAL, BUDGET, CAP, FORECAST = "#0f5f4a", "#1b2430", "#b42318", "#d97706"
BAND_EDGE, BAND_FILL = "rgba(217,119,6,.35)", "rgba(217,119,6,.14)"


def burn_chart(status: BudgetStatus, today: date) -> dict:
    """Cumulative spend per day against the budget line, and the forecast cone for the days left (Chart.js dict)."""
    budget, start, end = status.budget, status.period_start, status.period_end
    days = [start + timedelta(days=i) for i in range((end - start).days)]
    actual: list[Decimal | None] = []
    running = Decimal(0)
    for day in days:
        running += status.daily.get(day, Decimal(0))
        actual.append(running.quantize(Decimal("0.01")) if day <= today else None)
    index = {day: i for i, day in enumerate(days)}
    expected: list[Decimal | None] = [None] * len(days)
    low: list[Decimal | None] = [None] * len(days)
    high: list[Decimal | None] = [None] * len(days)
    projection = [p for p in status.forecast.projection if p[0] in index]
    if projection:
        first = index[projection[0][0]]
        if first > 0 and actual[first - 1] is not None:  # start the cone where the spend line stands
            expected[first - 1] = low[first - 1] = high[first - 1] = actual[first - 1]
        for day, e, lo, hi in projection:
            i = index[day]
            expected[i], low[i], high[i] = e, lo, hi
    series = [
        Series("Spent so far", actual, kind="line"),
        Series("Budget", [budget.amount] * len(days), kind="line", dashed=True),
    ]
    colours = [ACTUAL, BUDGET]
    if budget.hard_cap is not None:
        series.append(Series("Hard cap", [budget.hard_cap] * len(days), kind="line", dashed=True))
        colours.append(CAP)
    if projection:
        series += [
            Series("Forecast", expected, kind="line", dashed=True),
            Series("Likely low", low, kind="line"),
            Series("Likely high", high, kind="line"),
        ]
        colours += [FORECAST, BAND_EDGE, BAND_EDGE]
    spec = ChartSpec(
        title="",
        labels=[_day(d) for d in days],
        series=series,
        y_label=f"Cumulative spend ({CURRENCY})",
    )
    data = spec.to_chartjs()
    # ChartSpec has no colour or band options: set this chart's colours, and fill between the range's two edges.
    for dataset, colour in zip(data["datasets"], colours, strict=True):
        dataset["borderColor"] = dataset["backgroundColor"] = colour
        dataset["borderWidth"] = 1 if colour == BAND_EDGE else 2
    if projection:
        data["datasets"][-1].update(fill="-1", backgroundColor=BAND_FILL)
    return data


def delivery_status(delivery: WebhookDelivery) -> tuple[str, str]:
    """What a delivery's outcome means to a reader. A test is tried once, so a test with an error has failed; an
    alert's delivery with an error is being retried by its task until it is delivered or given up."""
    if delivery.status == WebhookDelivery.PENDING and delivery.attempts:
        return ("failed", "Failed") if delivery.is_test else ("pending", "Retrying")
    return delivery.status, delivery.get_status_display()


def _masked_url(url: str) -> str:
    """A webhook URL for people who cannot manage channels: its host only (Slack URLs carry their secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…"


# --- views ---------------------------------------------------------------------------------------------------------


class _BudgetsMixin(OrgViewMixin):
    tab = "budgets"

    def get_context_data(self, **kwargs):
        open_alerts = selectors.alert_list(org=self.request.org).filter(acknowledged_at__isnull=True).count()
        return super().get_context_data(
            nav="budgets", tab=self.tab, open_alerts=open_alerts, currency=CURRENCY, **kwargs
        )

    def require(self, capability: str, message: str):
        if not role_can(self.request.membership.role, capability):
            raise PermissionDenied(message)

    def require_spend(self):
        self.require("manage_spend", "Only owners, admins and finance can change budgets and alerts.")

    def get_budget(self) -> Budget:
        return self.org_object_or_404(Budget, pk=self.kwargs["pk"])


class BudgetListView(_BudgetsMixin, TemplateView):
    template_name = "budgets/list.html"

    def get_context_data(self, **kwargs):
        org = self.request.org
        today = selectors.org_today(org)
        cards = [
            budget_card(selectors.budget_status(b, today=today), today)
            for b in selectors.budget_list(org=org).select_related("org")
        ]
        return super().get_context_data(
            cards=cards,
            over=sum(1 for c in cards if c.state == "over" and c.budget.is_active),
            at_risk=sum(
                1 for c in cards if c.state != "over" and c.forecast_state == "warn" and c.budget.is_active
            ),
            **kwargs,
        )


class BudgetDetailView(_BudgetsMixin, TemplateView):
    template_name = "budgets/detail.html"

    def get_context_data(self, **kwargs):
        budget = self.get_budget()
        today = selectors.org_today(self.request.org)
        status = selectors.budget_status(budget, today=today)
        card = budget_card(status, today)
        fc = status.forecast
        return super().get_context_data(
            budget=budget,
            card=card,
            chart=burn_chart(status, today),
            thresholds=[(t, t in status.thresholds_crossed) for t in sorted(budget.thresholds)],
            hard_cap=format_money(budget.hard_cap) if budget.hard_cap is not None else None,
            daily_rate=format_money(fc.daily_rate),
            alerts=selectors.alert_list(org=self.request.org).filter(budget=budget)[:20],
            **kwargs,
        )


class _BudgetFormView(_BudgetsMixin, TemplateView):
    template_name = "budgets/form.html"
    required_capability = "manage_spend"

    def form(self, data=None, **kwargs) -> BudgetForm:
        return BudgetForm(data, org=self.request.org, **kwargs)

    def get_context_data(self, **kwargs):
        options = filter_options(org=self.request.org)
        datalists = [
            ("provider-options", [p for p, _ in options["providers"]]),
            ("model-options", options["models"]),
            ("tag-key-options", ["feature", "customer", "environment", "task_id", "end_user"]),
        ]
        return super().get_context_data(datalists=datalists, **kwargs)


class BudgetCreateView(_BudgetFormView):
    def get_context_data(self, **kwargs):
        kwargs.setdefault("form", self.form())
        return super().get_context_data(**kwargs)

    def post(self, request, *args, **kwargs):
        form = self.form(request.POST)
        if form.is_valid():
            budget = apply_to_form(
                form, lambda: services.budget_create(org=request.org, **form.budget_fields())
            )
            if budget:
                messages.success(request, f"Budget “{budget.name}” created.")
                return redirect("budget", org_slug=request.org.slug, pk=budget.pk)
        return self.render_to_response(self.get_context_data(form=form), status=400)


class BudgetEditView(_BudgetFormView):
    def get_context_data(self, **kwargs):
        budget = self.get_budget()
        kwargs.setdefault("form", self.form(initial=BudgetForm.initial_for(budget)))
        return super().get_context_data(budget=budget, **kwargs)

    def post(self, request, *args, **kwargs):
        form = self.form(request.POST)
        if form.is_valid():
            # The service sets the fields on the instance it is given: give it its own, so a refused edit leaves
            # the page's copy (its title and links) as stored.
            budget = apply_to_form(
                form, lambda: services.budget_update(budget=self.get_budget(), **form.budget_fields())
            )
            if budget:
                messages.success(request, f"Budget “{budget.name}” saved.")
                return redirect("budget", org_slug=request.org.slug, pk=budget.pk)
        return self.render_to_response(self.get_context_data(form=form), status=400)


class BudgetDeleteView(_BudgetsMixin, View):
    required_capability = "manage_spend"

    def post(self, request, *args, **kwargs):
        budget = self.get_budget()
        services.budget_delete(budget=budget)
        messages.success(request, f"Budget “{budget.name}” deleted, with its alerts.")
        return redirect("budgets", org_slug=request.org.slug)


class AlertsView(_BudgetsMixin, TemplateView):
    template_name = "budgets/alerts.html"
    tab = "alerts"

    def get_context_data(self, **kwargs):
        org = self.request.org
        get = self.request.GET
        kind = get.get("kind", "")
        kind = kind if kind in dict(Alert.KINDS) else ""
        state = get.get("state", "open")
        state = state if state in ALERT_STATES else "open"
        alerts = selectors.alert_list(org=org)
        if kind:
            alerts = alerts.filter(kind=kind)
        counts = {
            "open": alerts.filter(acknowledged_at__isnull=True).count(),
            "acknowledged": alerts.filter(acknowledged_at__isnull=False).count(),
        }
        counts["all"] = counts["open"] + counts["acknowledged"]
        if state != "all":
            alerts = alerts.filter(acknowledged_at__isnull=state == "open")
        page = Paginator(alerts, ALERTS_PER_PAGE).get_page(get.get("page"))

        def query(**change):
            params = {"kind": kind, "state": state, **change}
            return urlencode({k: v for k, v in params.items() if v and not (k == "state" and v == "open")})

        return super().get_context_data(
            page=page,
            kind=kind,
            state=state,
            kinds=[
                ("", "All kinds", query(kind="")),
                *((k, label, query(kind=k)) for k, label in Alert.KINDS),
            ],
            states=[(s, label, counts[s], query(state=s)) for s, label in ALERT_STATES.items()],
            this_query=query(),
            prev_query=query(page=page.previous_page_number()) if page.has_previous() else None,
            next_query=query(page=page.next_page_number()) if page.has_next() else None,
            **kwargs,
        )


class AlertAcknowledgeView(_BudgetsMixin, View):
    def post(self, request, *args, **kwargs):
        self.require_spend()
        alert = self.org_object_or_404(Alert, pk=kwargs["pk"])
        services.alert_acknowledge(alert=alert, user=request.user)
        messages.success(request, f"Acknowledged: {alert.title}")
        back = request.POST.get("next", "")
        alerts_url = reverse("alerts", kwargs={"org_slug": request.org.slug})
        budgets_url = reverse("budgets", kwargs={"org_slug": request.org.slug})
        if back.startswith(budgets_url) and url_has_allowed_host_and_scheme(back, allowed_hosts=None):
            return redirect(back)
        return redirect(alerts_url)


class NotificationsView(_BudgetsMixin, TemplateView):
    template_name = "budgets/notifications.html"
    tab = "notifications"

    def get_context_data(self, **kwargs):
        org = self.request.org
        can_manage = role_can(self.request.membership.role, "manage_settings")
        channels = list(selectors.channel_list(org=org))
        for channel in channels:
            channel.url_display = channel.url if can_manage else _masked_url(channel.url)
            channel.recent = []
            if channel.kind == AlertChannel.WEBHOOK:
                channel.recent = list(channel.deliveries.select_related("alert")[:DELIVERIES_SHOWN])
            for delivery in channel.recent:
                delivery.shown_status, delivery.shown_status_label = delivery_status(delivery)
        kwargs.setdefault("email_form", EmailChannelForm(org=org))
        kwargs.setdefault("webhook_form", WebhookChannelForm())
        return super().get_context_data(channels=channels, **kwargs)

    def post(self, request, *args, **kwargs):
        self.require("manage_settings", "Only owners and admins can change where alerts are sent.")
        org = request.org
        if request.POST.get("action") == "webhook":
            form = WebhookChannelForm(request.POST)
            if form.is_valid():
                result = apply_to_form(
                    form,
                    lambda: services.channel_create(org=org, kind=AlertChannel.WEBHOOK, **form.cleaned_data),
                )
                if result:
                    channel, secret = result
                    # Rendered, not redirected: the secret is stored encrypted and this page is the only time
                    # it is shown.
                    return self.render_to_response(self.get_context_data(created=channel, secret=secret))
            return self.render_to_response(self.get_context_data(webhook_form=form), status=400)
        form = EmailChannelForm(request.POST, org=org)
        if form.is_valid() and apply_to_form(
            form, lambda: services.channel_create(org=org, kind=AlertChannel.EMAIL, **form.cleaned_data)
        ):
            messages.success(request, f"E-mail channel “{form.cleaned_data['name']}” added.")
            return redirect("notifications", org_slug=org.slug)
        return self.render_to_response(self.get_context_data(email_form=form), status=400)


class _ChannelActionView(_BudgetsMixin, View):
    required_capability = "manage_settings"

    def get_channel(self) -> AlertChannel:
        return self.org_object_or_404(AlertChannel, pk=self.kwargs["pk"])


class ChannelDeleteView(_ChannelActionView):
    def post(self, request, *args, **kwargs):
        channel = self.get_channel()
        services.channel_delete(channel=channel)
        messages.success(request, f"Channel “{channel.name}” deleted. Alerts are no longer sent there.")
        return redirect("notifications", org_slug=request.org.slug)


class ChannelTestView(_ChannelActionView):
    def post(self, request, *args, **kwargs):
        channel = self.get_channel()
        if channel.kind == AlertChannel.EMAIL:
            emails = [m.user.email for m in channel.recipients.select_related("user")]
            if not emails:
                messages.error(request, f"“{channel.name}” has no recipients: nothing was sent.")
            else:
                try:
                    services.channel_send_test(channel=channel)
                except OSError as exc:  # SMTP refused or unreachable (smtplib errors are OSErrors)
                    messages.error(request, f"Test e-mail to “{channel.name}” failed: {type(exc).__name__}.")
                else:
                    messages.success(request, f"Test e-mail sent to {', '.join(emails)}.")
            return redirect("notifications", org_slug=request.org.slug)
        delivery = services.channel_send_test(channel=channel)
        if delivery.status == delivery.DELIVERED:
            messages.success(
                request, f"Test delivered to “{channel.name}” (HTTP {delivery.last_status_code})."
            )
        else:
            messages.error(request, f"Test to “{channel.name}” failed: {delivery.last_error}.")
        return redirect("notifications", org_slug=request.org.slug)
