"""A report is a list of sections. Each section is registered by key and builds JSON-able data for an org and month;
the e-mail, the preview and the PDF render each section with its own templates (`reports/email/sections/<key>.html` and
`.txt`), and a section may add charts (inline PNG in the e-mail). A later domain (recommendations, outcome margins)
registers its own Section from its app's `ready()` without touching these.

Money in section data is a string with the ledger's 10 decimal places (Decimal in, Decimal out: `Decimal(s)`).
Every section reads the daily rollups through one shared context, except reconciliation (the ledger per
connection, as the connectors screen does) and budgets scoped to an API token (the ledger by token id).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property

from django.db.models import F, Q, Sum

from apps.reports.pvm import LEDGER, Line, variance
from spendctl.common.charts import ChartSpec, Series

ZERO = Decimal(0)
HUNDRED = Decimal(100)
TOP_ITEMS = 8
TOP_MOVERS = 3
UNATTRIBUTED = "Unattributed"
NO_FEATURE = "(no feature)"


def money(value) -> str:
    return str(Decimal(value or 0).quantize(LEDGER))


def percent_change(current: Decimal, previous: Decimal) -> str | None:
    if not previous:
        return None
    return str(((current - previous) / previous * HUNDRED).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class Chart:
    name: str  # unique in the report; the e-mail's Content-ID is built from it
    spec: ChartSpec
    alt: str


class ReportContext:
    """What sections share: the month's bounds and the rollup rows of this and the previous month, read once."""

    def __init__(self, org, month: date):
        self.org = org
        self.month = month.replace(day=1)
        self.start = self.month
        self.end = add_months(self.month, 1)
        self.prev_start = add_months(self.month, -1)
        self.year_start = add_months(self.month, -12)

    @cached_property
    def team_names(self) -> dict[int, str]:
        from apps.orgs.models import Team

        return dict(Team.objects.for_org(self.org).values_list("id", "name"))

    def team_label(self, team_id: int) -> str:
        if not team_id:
            return UNATTRIBUTED
        return self.team_names.get(team_id, f"(deleted team {team_id})")

    @cached_property
    def lines(self) -> list[dict]:
        """Rollup sums per (team, provider, model, feature) with this month's and last month's figures."""
        from apps.usage.models import DailyRollup

        cur, prev = Q(day__gte=self.start), Q(day__lt=self.start)
        tokens = (
            F("uncached_input_tokens") + F("cache_read_tokens") + F("cache_write_tokens") + F("output_tokens")
        )
        return list(
            DailyRollup.objects.for_org(self.org)
            .filter(day__gte=self.prev_start, day__lt=self.end)
            .values("team_id", "provider", "model", "feature")
            .annotate(
                cur_cost=Sum("cost", filter=cur),
                prev_cost=Sum("cost", filter=prev),
                cur_tokens=Sum(tokens, filter=cur),
                prev_tokens=Sum(tokens, filter=prev),
                cur_requests=Sum("requests", filter=cur),
                prev_requests=Sum("requests", filter=prev),
            )
            .order_by()
        )

    @cached_property
    def daily(self) -> dict[date, Decimal]:
        """Spend per org-local day over the previous and this month (the coarse rollup)."""
        from apps.usage.models import DailyModelRollup

        rows = (
            DailyModelRollup.objects.for_org(self.org)
            .filter(day__gte=self.prev_start, day__lt=self.end)
            .values("day")
            .annotate(cost=Sum("cost"))
            .values_list("day", "cost")
            .order_by()
        )
        return {d: c or ZERO for d, c in rows}

    def totals(self, key: str) -> Decimal:
        return sum(((row[key] or ZERO) for row in self.lines), ZERO)


class Section:
    key = ""
    title = ""
    order = 100

    @property
    def template_html(self) -> str:
        return f"reports/email/sections/{self.key}.html"

    @property
    def template_text(self) -> str:
        return f"reports/email/sections/{self.key}.txt"

    def build(self, ctx: ReportContext) -> dict:
        raise NotImplementedError

    def charts(self, data: dict) -> list[Chart]:
        return []


SECTIONS: dict[str, Section] = {}


def register(section: Section) -> Section:
    if not section.key or section.key in SECTIONS:
        raise ValueError(f"section key {section.key!r} is empty or already registered")
    SECTIONS[section.key] = section
    return section


def ordered_sections() -> list[Section]:
    return sorted(SECTIONS.values(), key=lambda s: (s.order, s.key))


# --- the built-in sections ------------------------------------------------------------------------------------------


class SummarySection(Section):
    key, title, order = "summary", "Summary", 10

    def build(self, ctx):
        from apps.usage.models import DailyModelRollup

        current, previous = ctx.totals("cur_cost"), ctx.totals("prev_cost")
        year = (
            DailyModelRollup.objects.for_org(ctx.org)
            .filter(day__gte=ctx.year_start, day__lt=add_months(ctx.year_start, 1))
            .aggregate(cost=Sum("cost"), n=Sum("records"))
        )
        year_ago = year["cost"] if year["n"] else None
        has_previous = any(d < ctx.start for d in ctx.daily)
        days = [(ctx.start + timedelta(days=i)) for i in range((ctx.end - ctx.start).days)]
        prev_days = (ctx.start - ctx.prev_start).days
        return {
            "current": money(current),
            "previous": money(previous) if has_previous else None,
            "change": money(current - previous) if has_previous else None,
            "change_pct": percent_change(current, previous) if has_previous else None,
            "year_ago": None if year_ago is None else money(year_ago),
            "year_change": None if year_ago is None else money(current - year_ago),
            "year_change_pct": None if year_ago is None else percent_change(current, year_ago),
            "requests": int(ctx.totals("cur_requests")),
            "previous_requests": int(ctx.totals("prev_requests")),
            "tokens": int(ctx.totals("cur_tokens")),
            "previous_tokens": int(ctx.totals("prev_tokens")),
            "daily": [[d.isoformat(), money(ctx.daily.get(d, ZERO))] for d in days],
            "previous_daily_average": money(previous / prev_days) if has_previous else None,
        }

    def charts(self, data):
        labels = [str(date.fromisoformat(d).day) for d, _ in data["daily"]]
        series = [Series("Spend per day", [Decimal(v) for _, v in data["daily"]])]
        if data["previous_daily_average"] is not None:
            avg = Decimal(data["previous_daily_average"])
            series.append(Series("Last month's daily average", [avg] * len(labels), kind="line", dashed=True))
        return [Chart("daily", ChartSpec("Spend per day (USD)", labels, series), "Spend per day this month")]


def _breakdown(ctx: ReportContext, label_of) -> dict:
    current, previous = defaultdict(lambda: ZERO), defaultdict(lambda: ZERO)
    for row in ctx.lines:
        key = label_of(row)
        current[key] += row["cur_cost"] or ZERO
        previous[key] += row["prev_cost"] or ZERO
    total = sum(current.values(), ZERO)
    keys = set(current) | set(previous)
    items = []
    for key in keys:
        c, p = current[key], previous[key]
        if c == 0 and p == 0:
            continue
        items.append(
            {
                "name": key,
                "current": money(c),
                "previous": money(p),
                "change": money(c - p),
                "change_pct": percent_change(c, p),
                "share": str((c / total * HUNDRED).quantize(Decimal("0.1"))) if total else "0.0",
            }
        )
    items.sort(key=lambda i: (-Decimal(i["current"]), i["name"]))
    top, rest = items[:TOP_ITEMS], items[TOP_ITEMS:]
    if rest:
        c = sum((Decimal(i["current"]) for i in rest), ZERO)
        p = sum((Decimal(i["previous"]) for i in rest), ZERO)
        top.append(
            {
                "name": f"{len(rest)} others",
                "current": money(c),
                "previous": money(p),
                "change": money(c - p),
                "change_pct": percent_change(c, p),
                "share": str((c / total * HUNDRED).quantize(Decimal("0.1"))) if total else "0.0",
                "other": True,
            }
        )
    by_change = sorted(items, key=lambda i: (-Decimal(i["change"]), i["name"]))
    up = [i for i in by_change if Decimal(i["change"]) > 0][:TOP_MOVERS]
    down = [i for i in reversed(by_change) if Decimal(i["change"]) < 0][:TOP_MOVERS]
    return {"items": top, "up": up, "down": down, "count": len(items)}


class BreakdownSection(Section):
    """Spend by team, provider, model and feature, with the top movers up and down."""

    key, title, order = "breakdown", "Where the money went", 30
    DIMENSIONS = (
        ("team", "Team"),
        ("provider", "Provider"),
        ("model", "Model"),
        ("feature", "Feature"),
    )

    def build(self, ctx):
        from apps.usage.dashboard import provider_label

        label_of = {
            "team": lambda r: ctx.team_label(r["team_id"]),
            "provider": lambda r: provider_label(r["provider"]),
            "model": lambda r: r["model"],
            "feature": lambda r: r["feature"] or NO_FEATURE,
        }
        return {
            "dimensions": [
                {"key": key, "title": title, **_breakdown(ctx, label_of[key])}
                for key, title in self.DIMENSIONS
            ]
        }

    def charts(self, data):
        team = next(d for d in data["dimensions"] if d["key"] == "team")
        items = [i for i in team["items"] if not i.get("other")]
        if not items:
            return []
        labels = [i["name"] for i in items]
        spec = ChartSpec(
            "Spend by team (USD)",
            labels,
            [
                Series("Last month", [Decimal(i["previous"]) for i in items]),
                Series("This month", [Decimal(i["current"]) for i in items]),
            ],
        )
        return [Chart("teams", spec, "Spend by team, last month and this month")]


class VarianceSection(Section):
    """Why spend changed: price, volume and mix per team (see apps.reports.pvm)."""

    key, title, order = "variance", "Why spend changed", 20

    def build(self, ctx):
        prev: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(lambda: [0, ZERO]))
        cur: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(lambda: [0, ZERO]))
        for row in ctx.lines:
            model = f"{row['provider']}/{row['model']}"
            team = row["team_id"] or 0
            for bucket, tokens, cost in ((prev, "prev_tokens", "prev_cost"), (cur, "cur_tokens", "cur_cost")):
                if row[tokens] or row[cost]:
                    bucket[team][model][0] += row[tokens] or 0
                    bucket[team][model][1] += row[cost] or ZERO
        teams = []
        totals = dict.fromkeys(("previous", "current", "change", "volume", "price", "mix"), ZERO)
        for team_id in set(prev) | set(cur):
            v = variance(
                {m: Line(t, c) for m, (t, c) in prev[team_id].items()},
                {m: Line(t, c) for m, (t, c) in cur[team_id].items()},
            )
            if v.previous == 0 and v.current == 0:
                continue
            for k in totals:
                totals[k] += getattr(v, k)
            teams.append(
                {
                    "team_id": team_id or None,
                    "team": ctx.team_label(team_id),
                    "previous": money(v.previous),
                    "current": money(v.current),
                    "change": money(v.change),
                    "volume": money(v.volume),
                    "price": money(v.price),
                    "mix": money(v.mix),
                    "previous_tokens": v.previous_tokens,
                    "current_tokens": v.current_tokens,
                    "new_models": list(v.new_models),
                    "gone_models": list(v.gone_models),
                }
            )
        teams.sort(key=lambda t: (-abs(Decimal(t["change"])), t["team"]))
        return {"teams": teams, "total": {k: money(v) for k, v in totals.items()}}

    def charts(self, data):
        teams = data["teams"][:TOP_ITEMS]
        if not teams:
            return []
        labels = [t["team"] for t in teams]
        spec = ChartSpec(
            "Change by team: volume, price, mix (USD)",
            labels,
            [
                Series("Volume", [Decimal(t["volume"]) for t in teams]),
                Series("Price", [Decimal(t["price"]) for t in teams]),
                Series("Mix", [Decimal(t["mix"]) for t in teams]),
            ],
        )
        return [Chart("variance", spec, "Change in spend by team split into volume, price and mix")]


class BudgetsSection(Section):
    """Every active budget, as it stood at the end of the month: spent, percent, over or under."""

    key, title, order = "budgets", "Budgets", 40

    def build(self, ctx):
        from apps.budgets.selectors import budget_list, budget_status
        from apps.budgets.views import scope_label

        last_day = ctx.end - timedelta(days=1)
        rows = []
        for budget in budget_list(org=ctx.org).filter(is_active=True):
            try:
                st = budget_status(budget, today=last_day)
            except ValueError:
                continue
            if st.period_start > last_day or st.period_end <= ctx.start:
                continue  # a custom range outside this month
            ended = st.period_end <= ctx.end
            if st.spent > budget.amount:
                state = "over"
            elif st.thresholds_crossed:
                state = "warn"
            else:
                state = "ok"
            rows.append(
                {
                    "name": budget.name,
                    "scope": scope_label(budget),
                    "period": budget.period,
                    "period_start": st.period_start.isoformat(),
                    "period_end": st.period_end.isoformat(),
                    "ended": ended,
                    "amount": money(budget.amount),
                    "spent": money(st.spent),
                    "percent": str(st.percent),
                    "remaining": money(st.remaining),
                    "state": state,
                    "forecast": None if ended else money(st.forecast.expected_total),
                }
            )
        rows.sort(key=lambda r: (-Decimal(r["percent"]), r["name"]))
        return {"budgets": rows, "over": sum(1 for r in rows if r["state"] == "over")}


class AlertsSection(Section):
    """Alerts raised in the month: thresholds, forecasts, anomalies (by the day they concern)."""

    key, title, order = "alerts", "Alerts and anomalies", 50
    LIMIT = 10

    def build(self, ctx):
        from apps.budgets.models import Alert

        tz = ctx.org.tz
        start_dt = datetime.combine(ctx.start, time.min, tz)
        end_dt = datetime.combine(ctx.end, time.min, tz)
        qs = Alert.objects.for_org(ctx.org).filter(
            Q(kind=Alert.ANOMALY, day__gte=ctx.start, day__lt=ctx.end)
            | (~Q(kind=Alert.ANOMALY) & Q(created_at__gte=start_dt, created_at__lt=end_dt))
        )
        counts = {k: 0 for k, _ in Alert.KINDS}
        for kind in qs.values_list("kind", flat=True):
            counts[kind] += 1
        items = [
            {
                "kind": a.kind,
                "title": a.title,
                "day": (a.day or a.created_at.astimezone(tz).date()).isoformat(),
                "acknowledged": a.acknowledged_at is not None,
            }
            for a in qs.order_by("created_at", "id")[: self.LIMIT]
        ]
        return {"counts": counts, "total": sum(counts.values()), "items": items}


class UnpricedSection(Section):
    key, title, order = "unpriced", "Unpriced usage", 60

    def build(self, ctx):
        from apps.usage.selectors import unpriced_summary

        rows = unpriced_summary(org=ctx.org, start=ctx.start, end=ctx.end)
        return {
            "models": [
                {
                    "provider": r["provider"],
                    "model": r["model"],
                    "requests": r["requests"],
                    "records": r["records"],
                }
                for r in rows
            ],
            "requests": sum(r["requests"] for r in rows),
        }


class ReconciliationSection(Section):
    """The month's ledger against what each provider connection reports it billed (UTC days, as providers bill)."""

    key, title, order = "reconciliation", "Reconciliation with provider bills", 70

    def build(self, ctx):
        from apps.connectors.selectors import connection_list, reconciliation

        rows = []
        for connection in connection_list(org=ctx.org):
            days = reconciliation(connection=connection, start=ctx.start, end=ctx.end)
            if not days:
                continue
            ledger = sum((d["ledger_cost"] for d in days), ZERO)
            reported_days = [d for d in days if d["reported_cost"] is not None]
            reported = sum((d["reported_cost"] for d in reported_days), ZERO)
            rows.append(
                {
                    "connection": connection.label,
                    "provider": connection.provider,
                    "ledger": money(ledger),
                    "reported": money(reported) if reported_days else None,
                    "difference": money(ledger - reported) if reported_days else None,
                    "days_reported": len(reported_days),
                    "days": len(days),
                }
            )
        return {"connections": rows}


class ForecastSection(Section):
    """Next month's spend from this month's last four weeks (apps.budgets.forecasting, weekday-adjusted)."""

    key, title, order = "forecast", "Next month", 80

    def build(self, ctx):
        from apps.budgets.forecasting import forecast

        history = {d: v for d, v in ctx.daily.items() if d >= ctx.start}
        if not history:
            return {"expected": None}
        fc = forecast(
            daily=history,
            period_start=ctx.end,
            period_end=add_months(ctx.end, 1),
            today=ctx.end,
            amount=Decimal("1e15"),
        )
        return {
            "month": ctx.end.isoformat(),
            "expected": money(fc.expected_total),
            "low": money(fc.low),
            "high": money(fc.high),
            "method": fc.method,
        }


@dataclass
class _Registered:
    done: bool = False
    keys: list[str] = field(default_factory=list)


_registered = _Registered()


def register_builtin() -> None:
    if _registered.done:
        return
    for section in (
        SummarySection(),
        VarianceSection(),
        BreakdownSection(),
        BudgetsSection(),
        AlertsSection(),
        UnpricedSection(),
        ReconciliationSection(),
        ForecastSection(),
    ):
        register(section)
    _registered.done = True
