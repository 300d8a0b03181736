"""Reads for the finance screens: the dashboard and the usage explorer.

Selector functions that compose `apps.usage.selectors` (spend_by, unpriced_summary, ledger_list) into what a page
shows. Money stays Decimal until the last step; `format_money` renders it with 2 decimals and a thousands
separator. All ledger money is USD.
"""

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlencode

from django.utils import timezone

from apps.orgs.selectors import team_list
from apps.usage.exports import PROVIDER_NAMES
from apps.usage.models import DailyRollup, UsageRecord
from apps.usage.selectors import SpendQuery, previous_month, spend_by, unpriced_summary
from spendctl.common.charts import ChartSpec, Series

CURRENCY = "USD"
SYMBOL = "$"
ZERO = Decimal(0)
CENT = Decimal("0.01")
TENTH = Decimal("0.1")
TIME_DIMENSIONS = ("day", "month")
DIMENSIONS = [
    ("day", "Day"),
    ("month", "Month"),
    ("team", "Team"),
    ("provider", "Provider"),
    ("model", "Model"),
    ("feature", "Feature"),
    ("customer", "Customer"),
]
DIMENSION_KEYS = tuple(key for key, _ in DIMENSIONS)
DASHBOARD_STACKS = {"provider": "Provider", "model": "Model", "team": "Team"}
TOP_IN_LIST = 5
TOP_IN_STACK = 6
TOP_BARS = 15
TABLE_ROWS = 500
OTHER = "Other"


# --- formatting ----------------------------------------------------------------------------------------------------


def format_money(value, *, signed: bool = False) -> str:
    """$1,234.56; "<$0.01" for a positive amount that rounds to nothing; signed adds "+" to increases."""
    amount = Decimal(value or 0)
    cents = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    if amount > 0 and cents == 0:
        return f"<{SYMBOL}0.01"
    sign = "-" if cents < 0 else ("+" if signed and cents > 0 else "")
    return f"{sign}{SYMBOL}{abs(cents):,.2f}"


def format_percent(value: Decimal | None, *, signed: bool = False) -> str:
    if value is None:
        return "–"
    pct = Decimal(value).quantize(TENTH, rounding=ROUND_HALF_UP)
    sign = "+" if signed and pct > 0 else ""
    return f"{sign}{pct:,.1f}%"


def format_count(value) -> str:
    return f"{int(value or 0):,}"


def format_tokens(value) -> str:
    """Compact token counts for tables: 9,876 / 845.2K / 12.3M / 1.2B (the exact figure goes in a title)."""
    n = int(value or 0)
    for threshold, unit, suffix in ((10**9, 10**9, "B"), (10**6, 10**6, "M"), (10**4, 10**3, "K")):
        if n >= threshold:
            return f"{(Decimal(n) / unit).quantize(TENTH, rounding=ROUND_HALF_UP):,.1f}{suffix}"
    return f"{n:,}"


def provider_label(provider: str) -> str:
    return PROVIDER_NAMES.get(provider, provider)


def day_label(day: date, *, year: bool = True) -> str:
    return f"{day:%a} {day.day} {day:%b}" + (f" {day:%Y}" if year else "")


def short_day(day: date) -> str:
    return f"{day.day} {day:%b}"


def month_label(month: str) -> str:
    return datetime.strptime(month, "%Y-%m").strftime("%B %Y")  # noqa: DTZ007 - a calendar month, no time


@dataclass(frozen=True)
class Period:
    """[start, end) in org-local days."""

    start: date
    end: date

    @property
    def last(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def label(self) -> str:
        first, last = self.start, self.last
        if first == last:
            return f"{first.day} {first:%b %Y}"
        if (first.year, first.month) == (last.year, last.month):
            return f"{first.day}–{last.day} {last:%b %Y}"
        if first.year == last.year:
            return f"{first.day} {first:%b} – {last.day} {last:%b %Y}"
        return f"{first.day} {first:%b %Y} – {last.day} {last:%b %Y}"

    def params(self) -> dict:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def dim_label(dim: str, group: dict) -> str:
    value = group.get(dim)
    if dim == "team":
        return value or "Unattributed"
    if dim == "provider":
        return provider_label(value)
    if dim == "day":
        return day_label(date.fromisoformat(value))
    if dim == "month":
        return month_label(value)
    if dim in ("feature", "customer"):
        return value or f"(no {dim})"
    return value or "–"


def dim_filter(dim: str, group: dict) -> tuple[str, str] | None:
    """The explorer filter (name, value) that narrows to this group's value, if there is one."""
    if dim == "team":
        return ("team", str(group["team_id"]) if group.get("team_id") else "none")
    if dim in ("provider", "model", "feature", "customer") and group.get(dim):
        return (dim, group[dim])
    return None


# --- windows -------------------------------------------------------------------------------------------------------


def org_today(org, now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(org.tz).date()


def month_to_date(today: date) -> tuple[Period, Period]:
    """This month up to today, and the same days of the previous month (capped at that month's end)."""
    this = Period(today.replace(day=1), today + timedelta(days=1))
    prev_start = previous_month(today)
    prev = Period(prev_start, min(prev_start + timedelta(days=today.day), this.start))
    return this, prev


def last_days(today: date, days: int = 30) -> Period:
    return Period(today - timedelta(days=days - 1), today + timedelta(days=1))


# --- reads ---------------------------------------------------------------------------------------------------------


def has_usage(*, org) -> bool:
    return UsageRecord.objects.for_org(org).exists()


def total_cost(*, org, period: Period) -> Decimal:
    return spend_by(org=org, query=SpendQuery(start=period.start, end=period.end))["totals"]["_cost"]


def team_names(*, org) -> dict[int, str]:
    return dict(team_list(org=org).values_list("id", "name"))


def filter_options(*, org) -> dict:
    """Values the explorer's filters offer: teams, and the providers, models, features and customers seen."""
    rollup = DailyRollup.objects.for_org(org)

    def seen(column):
        return sorted(v for v in rollup.values_list(column, flat=True).distinct().order_by() if v)

    return {
        "teams": list(team_list(org=org).values_list("id", "name")),
        "providers": [(p, provider_label(p)) for p in seen("provider")],
        "models": seen("model"),
        "features": seen("feature"),
        "customers": seen("customer"),
    }


def _share(cost: Decimal, total: Decimal) -> Decimal | None:
    return (cost / total * 100) if total else None


def top_list(*, org, dim: str, period: Period, limit: int = TOP_IN_LIST) -> dict:
    """The biggest groups of one dimension in a period, with cost and share of the period's total."""
    group_by = ("provider", "model") if dim == "model" else (dim,)
    result = spend_by(org=org, query=SpendQuery(start=period.start, end=period.end, group_by=group_by))
    total = result["totals"]["_cost"]
    groups = [g for g in result["groups"] if g["_cost"] > 0 or g["unpriced_requests"] == 0]
    rows = []
    for g in groups[:limit]:
        share = _share(g["_cost"], total)
        link = dim_filter(dim, g)
        rows.append(
            {
                "label": dim_label(dim, g),
                "detail": provider_label(g["provider"]) if dim == "model" else "",
                "cost": g["_cost"],
                "cost_display": format_money(g["_cost"]),
                "share": share,
                "share_display": format_percent(share),
                "query": urlencode({**period.params(), link[0]: link[1], "group_by": "day"}) if link else "",
            }
        )
    rest = groups[limit:]
    other = None
    if rest:
        cost = sum((g["_cost"] for g in rest), ZERO)
        share = _share(cost, total)
        other = {
            "label": f"{len(rest)} more",
            "cost": cost,
            "cost_display": format_money(cost),
            "share": share,
            "share_display": format_percent(share),
        }
    return {"rows": rows, "other": other, "total": total}


def unpriced(*, org, period: Period) -> dict | None:
    """What the unpriced-usage warning shows: models, requests, and the explorer query that lists them."""
    models = unpriced_summary(org=org, start=period.start, end=period.end)
    if not models:
        return None
    names = sorted({m["model"] for m in models})
    return {
        "period": period,
        "models": [
            {
                "provider": provider_label(m["provider"]),
                "model": m["model"],
                "requests": m["requests"] or 0,
                "requests_display": format_count(m["requests"]),
                "records": m["records"],
            }
            for m in models
        ],
        "requests": sum(m["requests"] or 0 for m in models),
        "requests_display": format_count(sum(m["requests"] or 0 for m in models)),
        "query": urlencode({**period.params(), "model": ",".join(names), "group_by": "model"}),
    }


# --- charts --------------------------------------------------------------------------------------------------------


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _time_keys(time_dim: str, start: date, end: date) -> list[tuple[str, str]]:
    """(key as spend_by returns it, axis label) for every day or month in [start, end), gaps included."""
    keys = []
    if time_dim == "day":
        day = start
        while day < end:
            keys.append((day.isoformat(), short_day(day)))
            day += timedelta(days=1)
    else:
        month, last = start.replace(day=1), (end - timedelta(days=1)).replace(day=1)
        while month <= last:
            keys.append((month.strftime("%Y-%m"), f"{month:%b %Y}"))
            month = (month + timedelta(days=32)).replace(day=1)
    return keys


def time_chart(
    groups: list[dict], *, time_dim: str, stack_dim: str | None, start: date, end: date
) -> ChartSpec:
    """Spend over time; stacked by the top values of stack_dim (the rest as "Other") when there is one."""
    keys = _time_keys(time_dim, start, end)
    per: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    if stack_dim is None:
        names = ["Spend"]
        for g in groups:
            per["Spend"][g[time_dim]] += g["_cost"]
    else:
        by_name: dict[str, Decimal] = defaultdict(Decimal)
        for g in groups:
            by_name[dim_label(stack_dim, g)] += g["_cost"]
        ranked = [n for n, c in sorted(by_name.items(), key=lambda kv: (-kv[1], kv[0])) if c > 0]
        names = ranked if len(ranked) <= TOP_IN_STACK + 1 else ranked[:TOP_IN_STACK]
        kept = set(names)
        for g in groups:
            name = dim_label(stack_dim, g)
            per[name if name in kept else OTHER][g[time_dim]] += g["_cost"]
        if len(ranked) > len(names):
            names.append(OTHER)
    series = [Series(name, [_cents(per[name].get(key, ZERO)) for key, _ in keys]) for name in names]
    return ChartSpec(title="", labels=[label for _, label in keys], series=series, stacked=True, y_label="")


def bar_chart(groups: list[dict], dims: tuple[str, ...], *, top: int = TOP_BARS) -> ChartSpec:
    """The top groups by cost as one bar each."""
    priced = [g for g in groups if g["_cost"] > 0][:top]
    labels = [" · ".join(dim_label(d, g) for d in dims) for g in priced]
    return ChartSpec(title="", labels=labels, series=[Series("Spend", [_cents(g["_cost"]) for g in priced])])


def has_priced_spend(spec: ChartSpec) -> bool:
    return any(v for s in spec.series for v in s.values)


# --- screens -------------------------------------------------------------------------------------------------------


def dashboard(*, org, now: datetime | None = None, stack: str = "provider") -> dict:
    """Everything the dashboard shows. Costs exclude unpriced usage, which is reported separately."""
    if not has_usage(org=org):
        return {"has_usage": False}
    today = org_today(org, now)
    this_month, prev_month = month_to_date(today)
    mtd, prev = total_cost(org=org, period=this_month), total_cost(org=org, period=prev_month)
    change = mtd - prev
    change_pct = _share(change, prev)
    window = last_days(today, 30)
    stack = stack if stack in DASHBOARD_STACKS else "provider"
    daily = spend_by(org=org, query=SpendQuery(start=window.start, end=window.end, group_by=("day", stack)))
    chart = time_chart(daily["groups"], time_dim="day", stack_dim=stack, start=window.start, end=window.end)
    last30 = daily["totals"]["_cost"]
    warning_period = Period(min(this_month.start, window.start), window.end)
    return {
        "has_usage": True,
        "today": today,
        "mtd": {
            "period": this_month,
            "cost": mtd,
            "cost_display": format_money(mtd),
            "prev_period": prev_month,
            "prev_cost": prev,
            "prev_display": format_money(prev),
            "change": change,
            "change_display": format_money(change, signed=True),
            "change_pct": change_pct,
            "change_pct_display": format_percent(change_pct, signed=True),
            "direction": "up" if change > 0 else ("down" if change < 0 else "flat"),
        },
        "last30": {
            "period": window,
            "cost": last30,
            "cost_display": format_money(last30),
            "daily_average_display": format_money(last30 / window.days),
        },
        "chart": chart.to_chartjs(),
        "chart_has_spend": has_priced_spend(chart),
        "stack": stack,
        "stacks": DASHBOARD_STACKS,
        "top_teams": top_list(org=org, dim="team", period=this_month),
        "top_models": top_list(org=org, dim="model", period=this_month),
        "top_features": top_list(org=org, dim="feature", period=this_month),
        "unpriced": unpriced(org=org, period=warning_period),
        "explore_mtd_query": urlencode({**this_month.params(), "group_by": "day", "then_by": stack}),
    }


def _drill(dim: str, group: dict, base_params: dict) -> str:
    """The explorer query string that opens one row: a value becomes a filter, a day or month becomes the window."""
    params = dict(base_params)
    if dim == "day":
        day = date.fromisoformat(group["day"])
        params.update(start=day.isoformat(), end=(day + timedelta(days=1)).isoformat())
        params.update(group_by="team", then_by="model")
    elif dim == "month":
        first = date.fromisoformat(group["month"] + "-01")
        params.update(start=first.isoformat(), end=(first + timedelta(days=32)).replace(day=1).isoformat())
        params.update(group_by="day", then_by="")
    else:
        link = dim_filter(dim, group)
        if link is None or params.get(link[0]) == link[1]:
            return ""
        params[link[0]] = link[1]
        params.update(group_by="day", then_by="team" if dim == "model" else "model")
    return urlencode({k: v for k, v in params.items() if v})


def explorer(*, org, query: SpendQuery, base_params: dict) -> dict:
    """The explorer's chart, table rows and totals for a parsed query. base_params: the filters in force, from
    which each row's drill-down link is built."""
    result = spend_by(org=org, query=query)
    dims = query.group_by
    total = result["totals"]["_cost"]
    time_dims = [d for d in dims if d in TIME_DIMENSIONS]
    if time_dims:
        other = [d for d in dims if d not in TIME_DIMENSIONS]
        chart = time_chart(
            result["groups"],
            time_dim=time_dims[0],
            stack_dim=other[0] if other else None,
            start=query.start,
            end=query.end,
        )
    else:
        chart = bar_chart(result["groups"], dims)
    rows = [
        _row(g, total, [{"label": dim_label(d, g), "query": _drill(d, g, base_params)} for d in dims])
        for g in result["groups"][:TABLE_ROWS]
    ]
    unpriced_models = []
    if result["totals"]["unpriced_requests"]:
        by_model = spend_by(org=org, query=replace(query, group_by=("provider", "model")))
        unpriced_models = [
            {
                "provider": provider_label(g["provider"]),
                "model": g["model"],
                "requests": g["unpriced_requests"],
                "requests_display": format_count(g["unpriced_requests"]),
            }
            for g in sorted(by_model["groups"], key=lambda g: -g["unpriced_requests"])
            if g["unpriced_requests"]
        ]
    unpriced_query = ""
    if unpriced_models:
        only = ",".join(sorted({m["model"] for m in unpriced_models}))
        if base_params.get("model") != only or dims != ("model",):
            params = {**base_params, "model": only, "group_by": "model", "then_by": ""}
            unpriced_query = urlencode({k: v for k, v in params.items() if v})
    return {
        "dims": [(d, dict(DIMENSIONS).get(d, d.replace("_", " ").capitalize())) for d in dims],
        "rows": rows,
        "row_count": len(result["groups"]),
        "truncated": len(result["groups"]) > TABLE_ROWS,
        "totals": _row(result["totals"], total, []),
        "chart": chart.to_chartjs(),
        "chart_kind": "time" if time_dims else "bars",
        "chart_has_spend": has_priced_spend(chart),
        "unpriced_models": unpriced_models,
        "unpriced_query": unpriced_query,
        "unpriced_requests": result["totals"]["unpriced_requests"],
        "unpriced_requests_display": format_count(result["totals"]["unpriced_requests"]),
        "period": Period(query.start, query.end),
    }


def _row(g: dict, total: Decimal, cells: list[dict]) -> dict:
    share = _share(g["_cost"], total)
    return {
        "cells": cells,
        "cost": g["_cost"],
        "cost_display": format_money(g["_cost"]),
        "share_display": format_percent(share),
        "requests": g["requests"],
        "requests_display": format_count(g["requests"]),
        "input_tokens": g["input_tokens"],
        "input_display": format_tokens(g["input_tokens"]),
        "cached_tokens": g["cache_read_tokens"],
        "cached_display": format_tokens(g["cache_read_tokens"]),
        "output_tokens": g["output_tokens"],
        "output_display": format_tokens(g["output_tokens"]),
        "unpriced_requests": g["unpriced_requests"],
        "unpriced_display": format_count(g["unpriced_requests"]),
    }
