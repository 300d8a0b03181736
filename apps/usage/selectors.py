"""Reads of the ledger. Spend questions are answered from the daily rollup whenever the question allows it."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Q, QuerySet, Sum

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
    qs = qs.on_days(q.start, q.end)
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


_ZERO = Decimal(0)
# the summed values of a group, in this order: cost, requests, unpriced requests, then each token class
_SUM_NAMES = ("_cost", "requests", "unpriced_requests", *TOKEN_FIELDS)
_MODEL_ROLLUP_SUMS = ("cost", "requests", "unpriced_requests", *TOKEN_FIELDS)  # the same order, as stored
_UNCACHED, _CACHE_READ, _CACHE_WRITE = (3 + TOKEN_FIELDS.index(t) for t in TOKEN_FIELDS[:3])


def spend_by(*, org, query: SpendQuery) -> dict:
    """{"groups": [...], "totals": {...}, "source": "rollup" or "ledger"} with Decimal costs (under "_cost").

    Lean on purpose (it answers /api/v1/spend and every chart): one query returning tuples, groups folded only where
    the grouping needs it (months), and each group's dict built once at the end.
    """
    rollup = query.uses_rollup
    if query.uses_model_rollup:
        base, source = DailyModelRollup.objects.for_org(org), "model_rollup"
    elif rollup:
        base, source = DailyRollup.objects.for_org(org), "rollup"
    else:
        base, source = UsageRecord.objects.for_org(org), "ledger"
    qs = _filtered(base, query, rollup=rollup)
    # "month" is read as the day and folded to the month below (portable across databases)
    fields = ["team_id" if d == "team" else "day" if d == "month" else d for d in query.group_by]
    aggregates = {
        "cost_sum": Sum("cost"),
        "requests_sum": Sum("requests"),
        "unpriced_sum": Sum("unpriced_requests")
        if rollup
        else Sum("requests", filter=Q(cost_basis=BASIS_UNPRICED)),
        **{f"{t}_sum": Sum(t) for t in TOKEN_FIELDS},
    }
    unique = list(dict.fromkeys(fields))  # day and month both read the day
    if fields and source == "model_rollup":
        # A few rows per day (one per provider and model): fetching them and adding up in the fold below is cheaper
        # than PostgreSQL's SUM over numerics (measured: 90 days, 1,800 rows, 3-4x less database time).
        rows = qs.order_by().values_list(*unique, *_MODEL_ROLLUP_SUMS)
    elif fields:
        rows = qs.values(*unique).annotate(**aggregates).order_by().values_list(*unique, *aggregates)
    if fields and len(unique) < len(fields):
        at = [unique.index(f) for f in fields]
        rows = [(*(row[i] for i in at), *row[len(unique) :]) for row in rows]
    if not fields:
        totals_row = qs.aggregate(**aggregates)
        rows = [tuple(totals_row[a] for a in aggregates)]
    n = len(fields)
    months = [i for i, d in enumerate(query.group_by) if d == "month"]

    groups: dict[tuple, list] = {}
    for row in rows:
        key = row[:n]
        if months:
            key = tuple(v.strftime("%Y-%m") if i in months else v for i, v in enumerate(key))
        acc = groups.get(key)
        if acc is None:
            groups[key] = [v or 0 for v in row[n:]]
        else:
            for i, v in enumerate(row[n:]):
                if v:
                    acc[i] += v

    team_names = dict(Team.objects.for_org(org).values_list("id", "name")) if "team" in query.group_by else {}
    dims = query.group_by
    out = []
    for key, acc in groups.items():
        g = {}
        for dim, value in zip(dims, key, strict=True):
            if dim == "team":
                tid = value or None
                g["team_id"] = tid
                g["team"] = team_names.get(tid, f"(deleted team {tid})") if tid else None
            elif dim == "day":
                g["day"] = value.isoformat()
            else:
                g[dim] = value
        g.update(zip(_SUM_NAMES, acc, strict=True))
        if not g["_cost"]:
            g["_cost"] = _ZERO
        g["input_tokens"] = acc[_UNCACHED] + acc[_CACHE_READ] + acc[_CACHE_WRITE]
        out.append(g)
    if "day" in dims or "month" in dims:
        out.sort(key=lambda g: (g.get("day") or g.get("month"), -g["_cost"]))
    else:
        out.sort(key=lambda g: -g["_cost"])
    sums = [_ZERO, *([0] * (len(_SUM_NAMES) - 1))]
    for acc in groups.values():
        for i, v in enumerate(acc):
            sums[i] += v
    totals = dict(zip(_SUM_NAMES, sums, strict=True))
    totals["input_tokens"] = sums[_UNCACHED] + sums[_CACHE_READ] + sums[_CACHE_WRITE]
    return {"groups": out, "totals": totals, "source": source}


def format_spend(result: dict) -> dict:
    """Decimal costs -> strings with 4 decimals, for JSON and CSV (the cost after the other values)."""

    def fmt(d):
        d = d.copy()
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
