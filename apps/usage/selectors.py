"""Reads of the ledger. Spend questions are answered from the daily rollup whenever the question allows it."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import F, Q, QuerySet, Sum

from apps.orgs.models import Team
from apps.usage.models import (
    BASIS_UNPRICED,
    TAG_COLUMNS,
    TOKEN_FIELDS,
    DailyModelRollup,
    DailyRollup,
    UsageRecord,
)

ROLLUP_DIMENSIONS = ("day", "team", "provider", "model", "feature", "customer")
RAW_ONLY_DIMENSIONS = ("task_id", "end_user", "environment", "service_tier", "source")
GROUP_BY_CHOICES = (*ROLLUP_DIMENSIONS, "month", *RAW_ONLY_DIMENSIONS)
CENT4 = Decimal("0.0001")


def money(value) -> str:
    return str(Decimal(value or 0).quantize(CENT4, rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class SpendQuery:
    start: date
    end: date  # exclusive, org-local days
    group_by: tuple[str, ...] = ()
    teams: tuple[int, ...] = ()
    unattributed: bool = False
    models: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()  # (key, value)

    @property
    def uses_rollup(self) -> bool:
        dims_ok = all(d in (*ROLLUP_DIMENSIONS, "month") for d in self.group_by)
        tags_ok = all(k in ("feature", "customer") for k, _ in self.tags)
        return dims_ok and tags_ok

    @property
    def uses_model_rollup(self) -> bool:
        """Day/month × provider × model questions without team or tag filters: the coarse rollup answers them."""
        dims_ok = all(d in ("day", "month", "provider", "model") for d in self.group_by)
        return dims_ok and not self.tags and not self.teams and not self.unattributed


def _filtered(qs, q: SpendQuery, *, rollup: bool):
    qs = qs.filter(day__gte=q.start, day__lt=q.end)
    team_field = "team_id"
    if q.teams or q.unattributed:
        cond = Q(**{f"{team_field}__in": q.teams}) if q.teams else Q(pk__in=[])
        if q.unattributed:
            cond |= Q(**{team_field: 0}) if rollup else Q(team_id__isnull=True)
        qs = qs.filter(cond)
    if q.models:
        qs = qs.filter(model__in=q.models)
    if q.providers:
        qs = qs.filter(provider__in=q.providers)
    for key, value in q.tags:
        qs = qs.filter(**{key if key in TAG_COLUMNS else f"tags__{key}": value})
    return qs


def _aggregates():
    return {
        "cost_sum": Sum("cost"),
        "requests_sum": Sum("requests"),
        **{f"{t}_sum": Sum(t) for t in TOKEN_FIELDS},
    }


def spend_by(*, org, query: SpendQuery) -> dict:
    """{"groups": [...], "totals": {...}, "source": "rollup" or "ledger"} with Decimal costs (under "_cost")."""
    rollup = query.uses_rollup
    if query.uses_model_rollup:
        base, source = DailyModelRollup.objects.for_org(org), "model_rollup"
    elif rollup:
        base, source = DailyRollup.objects.for_org(org), "rollup"
    else:
        base, source = UsageRecord.objects.for_org(org), "ledger"
    qs = _filtered(base, query, rollup=rollup)
    fields = []
    for dim in query.group_by:
        if dim == "team":
            fields.append("team_id")
        elif dim == "month":
            qs = qs.annotate(
                month=F("day")
            )  # folded to the month in Python below (portable across databases)
            fields.append("month")
        else:
            fields.append(dim)
    aggregates = _aggregates()
    if rollup:
        aggregates["unpriced_sum"] = Sum("unpriced_requests")
    else:
        aggregates["unpriced_sum"] = Sum("requests", filter=Q(cost_basis=BASIS_UNPRICED))
    rows = (
        list(qs.values(*fields).annotate(**aggregates).order_by()) if fields else [qs.aggregate(**aggregates)]
    )
    team_names = dict(Team.objects.for_org(org).values_list("id", "name")) if "team" in query.group_by else {}

    groups: dict[tuple, dict] = {}
    for row in rows:
        key_values = {}
        for dim, f in zip(query.group_by, fields, strict=True):
            value = row[f]
            if dim == "team":
                tid = value or None
                key_values["team_id"] = tid
                key_values["team"] = team_names.get(tid, f"(deleted team {tid})") if tid else None
            elif dim == "month":
                key_values["month"] = value.strftime("%Y-%m")
            elif dim == "day":
                key_values["day"] = value.isoformat()
            else:
                key_values[dim] = value
        key = tuple(key_values.items())
        bucket = groups.setdefault(
            key,
            {
                **key_values,
                "_cost": Decimal(0),
                "requests": 0,
                "unpriced_requests": 0,
                **dict.fromkeys(TOKEN_FIELDS, 0),
            },
        )
        bucket["_cost"] += row["cost_sum"] or 0
        bucket["requests"] += row["requests_sum"] or 0
        bucket["unpriced_requests"] += row["unpriced_sum"] or 0
        for t in TOKEN_FIELDS:
            bucket[t] += row[f"{t}_sum"] or 0
    out = list(groups.values())
    if "day" in query.group_by or "month" in query.group_by:
        out.sort(key=lambda g: (g.get("day") or g.get("month"), -g["_cost"]))
    else:
        out.sort(key=lambda g: -g["_cost"])
    totals = {"_cost": Decimal(0), "requests": 0, "unpriced_requests": 0, **dict.fromkeys(TOKEN_FIELDS, 0)}
    for g in out:
        for k in totals:
            totals[k] += g[k]
        g["input_tokens"] = g["uncached_input_tokens"] + g["cache_read_tokens"] + g["cache_write_tokens"]
    totals["input_tokens"] = (
        totals["uncached_input_tokens"] + totals["cache_read_tokens"] + totals["cache_write_tokens"]
    )
    return {"groups": out, "totals": totals, "source": source}


def format_spend(result: dict) -> dict:
    """Decimal costs -> strings with 4 decimals, for JSON and CSV."""

    def fmt(d):
        d = dict(d)
        d["cost"] = money(d.pop("_cost"))
        return d

    return {"groups": [fmt(g) for g in result["groups"]], "totals": fmt(result["totals"])}


def ledger_list(*, org, query: SpendQuery) -> QuerySet[UsageRecord]:
    return _filtered(UsageRecord.objects.for_org(org), query, rollup=False).order_by("-start_time", "-id")


def unpriced_summary(*, org, start: date, end: date) -> list[dict]:
    """Models with unpriced usage in the range: what a warning shows. Read from the rollup, which counts them."""
    return list(
        DailyModelRollup.objects.for_org(org)
        .filter(day__gte=start, day__lt=end, unpriced_records__gt=0)
        .values("provider", "model")
        .annotate(records=Sum("unpriced_records"), requests=Sum("unpriced_requests"))
        .order_by("-requests")
    )


def day_bounds(org, start: date, end: date) -> tuple[datetime, datetime]:
    tz = org.tz
    return datetime.combine(start, time.min, tz), datetime.combine(end, time.min, tz)


def month_start(day: date) -> date:
    return day.replace(day=1)


def previous_month(day: date) -> date:
    return (day.replace(day=1) - timedelta(days=1)).replace(day=1)
