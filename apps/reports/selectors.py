"""Reads for monthly reports: building a report's data, its CSV rows, who receives it, and which orgs are due."""

from __future__ import annotations

from datetime import date, datetime, time

from django.db.models import F, QuerySet, Sum

from apps.orgs.models import Membership, Organization
from apps.orgs.permissions import ADMIN, FINANCE, OWNER
from apps.reports.models import MonthlyReport, ReportDelivery, ReportSettings, ReportSubscription
from apps.reports.sections import ReportContext, add_months, money, ordered_sections

SEND_HOUR = 8  # org-local time on the 1st of the month
SUBSCRIBED_BY_DEFAULT = frozenset({OWNER, ADMIN, FINANCE})


def report_list(*, org) -> QuerySet[MonthlyReport]:
    return MonthlyReport.objects.for_org(org).order_by("-month")


def report_get(*, org, period: str) -> MonthlyReport | None:
    return MonthlyReport.objects.for_org(org).filter(period=period).first()


def delivery_list(*, report: MonthlyReport) -> QuerySet[ReportDelivery]:
    return ReportDelivery.objects.for_org(report.org_id).filter(report=report).order_by("email")


def parse_period(value: str) -> date | None:
    """'2026-10' -> date(2026, 10, 1); None for anything else."""
    try:
        parsed = datetime.strptime(value, "%Y-%m")  # noqa: DTZ007 - a calendar month, no time
    except (TypeError, ValueError):
        return None
    if len(value) != 7:
        return None
    return parsed.date()


def build_report_data(*, org, month: date) -> dict:
    ctx = ReportContext(org, month)
    sections = ordered_sections()
    return {
        "version": 1,
        "org_name": org.name,
        "period": f"{ctx.month:%Y-%m}",
        "currency": "USD",
        "timezone": org.timezone,
        "order": [s.key for s in sections],
        "sections": {s.key: s.build(ctx) for s in sections},
    }


def detail_rows(*, org, month: date) -> list[list]:
    """The attached CSV: the month's spend per org-local day, team, provider, model and feature (the rollup)."""
    from apps.usage.models import DailyRollup

    ctx = ReportContext(org, month)
    rows = (
        DailyRollup.objects.for_org(org)
        .filter(day__gte=ctx.start, day__lt=ctx.end)
        .values("day", "team_id", "provider", "model", "feature")
        .annotate(
            requests_sum=Sum("requests"),
            input_sum=Sum(F("uncached_input_tokens") + F("cache_read_tokens") + F("cache_write_tokens")),
            output_sum=Sum("output_tokens"),
            cost_sum=Sum("cost"),
        )
        .order_by("day", "team_id", "provider", "model", "feature")
    )
    return [
        [
            r["day"].isoformat(),
            ctx.team_label(r["team_id"]),
            r["provider"],
            r["model"],
            r["feature"],
            r["requests_sum"],
            r["input_sum"],
            r["output_sum"],
            money(r["cost_sum"]),
            "USD",
        ]
        for r in rows
    ]


def report_settings(*, org) -> ReportSettings:
    return ReportSettings.objects.for_org(org).first() or ReportSettings(org=org)


def member_subscribed(membership: Membership, choice: bool | None) -> bool:
    return choice if choice is not None else membership.role in SUBSCRIBED_BY_DEFAULT


def member_choices(*, org) -> list[tuple[Membership, bool]]:
    choices = dict(ReportSubscription.objects.for_org(org).values_list("membership_id", "subscribed"))
    members = Membership.objects.for_org(org).select_related("user").filter(user__is_active=True)
    return [(m, member_subscribed(m, choices.get(m.pk))) for m in members]


def recipients(*, org) -> list[str]:
    """Members who get the report (their choice, else their role's default) plus the org's extra addresses."""
    emails = {m.user.email.lower() for m, on in member_choices(org=org) if on and m.user.email}
    emails.update(e.lower() for e in report_settings(org=org).extra_recipients)
    return sorted(emails)


def report_month_due(org: Organization, now: datetime) -> date | None:
    """The month whose report is due at `now`: last month, once the 1st 08:00 org-local has passed."""
    local = now.astimezone(org.tz)
    this_month = local.date().replace(day=1)
    if local < datetime.combine(this_month, time(SEND_HOUR), org.tz):
        return None  # the 1st before 08:00: last month's report is not due yet (the one before went already)
    return add_months(this_month, -1)


def reports_due(*, now: datetime) -> list[tuple[int, date]]:
    """(org id, month) for orgs whose last month's report is due and not yet dispatched, and that had spend in it."""
    from apps.usage.models import DailyModelRollup

    disabled = set(ReportSettings.objects.filter(enabled=False).values_list("org_id", flat=True))
    due = {}
    for org in Organization.objects.exclude(pk__in=disabled).only("pk", "timezone"):
        month = report_month_due(org, now)
        if month is not None:
            due[org.pk] = month
    if not due:
        return []
    months = set(due.values())
    done = set(
        MonthlyReport.objects.filter(month__in=months, dispatched_at__isnull=False).values_list(
            "org_id", "month"
        )
    )
    with_spend = set()
    for month in months:  # at most two: time zones straddle a month boundary for a few hours
        orgs = (
            DailyModelRollup.objects.filter(day__gte=month, day__lt=add_months(month, 1))
            .values_list("org_id", flat=True)
            .order_by()
            .distinct()
        )
        with_spend.update((o, month) for o in orgs)
    return sorted((o, m) for o, m in due.items() if (o, m) not in done and (o, m) in with_spend)
