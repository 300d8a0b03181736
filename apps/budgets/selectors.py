"""Reads for budgets: spend in a budget's scope and period, status with forecast, alerts."""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.db.models import QuerySet, Sum
from django.utils import timezone

from apps.budgets.forecasting import Forecast, forecast
from apps.budgets.models import Alert, AlertChannel, Budget
from apps.budgets.periods import period_bounds
from apps.usage.models import UsageRecord
from apps.usage.selectors import SpendQuery, spend_by

LOOKBACK_DAYS = 28


def budget_list(*, org) -> QuerySet[Budget]:
    return Budget.objects.for_org(org).select_related("team", "token")


def alert_list(*, org) -> QuerySet[Alert]:
    return Alert.objects.for_org(org).select_related("budget", "acknowledged_by")


def channel_list(*, org) -> QuerySet[AlertChannel]:
    return AlertChannel.objects.for_org(org).prefetch_related("recipients__user")


def org_today(org) -> date:
    return timezone.now().astimezone(org.tz).date()


def budget_period(budget: Budget, today: date) -> tuple[date, date]:
    return period_bounds(
        period=budget.period, today=today, custom_start=budget.custom_start, custom_end=budget.custom_end
    )


def scope_query(budget: Budget, start: date, end: date, group_by=()) -> SpendQuery:
    q = {"start": start, "end": end, "group_by": tuple(group_by)}
    if budget.scope == Budget.SCOPE_TEAM:
        q["teams"] = (budget.team_id,)
    elif budget.scope == Budget.SCOPE_PROVIDER:
        q["providers"] = (budget.provider,)
    elif budget.scope == Budget.SCOPE_MODEL:
        q["models"] = (budget.model,)
    elif budget.scope == Budget.SCOPE_TAG:
        q["tags"] = ((budget.tag_key, budget.tag_value),)
    return SpendQuery(**q)


def scope_daily(budget: Budget, start: date, end: date) -> dict[date, Decimal]:
    """Spend per org-local day in the budget's scope."""
    if budget.scope == Budget.SCOPE_TOKEN:
        rows = (
            UsageRecord.objects.for_org(budget.org)
            .filter(token_id=budget.token_id)
            .on_days(start, end)
            .values("day")
            .annotate(s=Sum("cost"))
            .values_list("day", "s")
        )
        return {d: s or Decimal(0) for d, s in rows}
    result = spend_by(org=budget.org, query=scope_query(budget, start, end, group_by=("day",)))
    return {date.fromisoformat(g["day"]): g["_cost"] for g in result["groups"]}


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    period_start: date
    period_end: date
    spent: Decimal
    percent: Decimal
    remaining: Decimal
    days_left: int
    forecast: Forecast
    daily: dict

    @property
    def thresholds_crossed(self) -> list[int]:
        return [t for t in sorted(self.budget.thresholds) if self.percent >= t]

    @property
    def forecast_over(self) -> bool:
        return self.forecast.expected_total > self.budget.amount


def budget_status(budget: Budget, *, today: date | None = None) -> BudgetStatus:
    today = today or org_today(budget.org)
    start, end = budget_period(budget, today)
    history_start = min(start, today - timedelta(days=LOOKBACK_DAYS))
    daily = scope_daily(budget, history_start, min(end, today + timedelta(days=1)))
    spent = sum((v for d, v in daily.items() if start <= d < end), Decimal(0))
    fc = forecast(daily=daily, period_start=start, period_end=end, today=today, amount=budget.amount)
    percent = (spent / budget.amount * 100).quantize(Decimal("0.1"))
    days_left = max(0, (end - max(today, start)).days) if today < end else 0
    return BudgetStatus(
        budget,
        start,
        end,
        spent,
        percent,
        budget.amount - spent,
        days_left,
        fc,
        {d: v for d, v in daily.items() if start <= d < end},
    )
