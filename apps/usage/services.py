"""Writes to the ledger: event ingest, provider rows, attribution, re-pricing (preview, apply, undo)."""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.catalog import pricing
from apps.catalog.selectors import PriceBook, normalise_model
from apps.orgs.models import Team
from apps.usage import ledger
from apps.usage.attribution import Rule, resolve_team
from apps.usage.events import MAX_BATCH, validate_event
from apps.usage.models import (
    BASIS_COMPUTED,
    BASIS_REPORTED,
    BASIS_UNPRICED,
    SOURCE_EVENT,
    TAG_COLUMNS,
    TEAM_EXPLICIT,
    TEAM_NONE,
    TEAM_RULE,
    TEAM_TOKEN,
    AttributionRule,
    RepriceChange,
    RepriceRun,
    UsageRecord,
)
from spendctl.common.exceptions import Conflict
from spendctl.common.gc import gc_paused
from spendctl.common.parsing import ascii_int

ZERO = Decimal(0)
_Q = Decimal("1e-10")


# --- pricing one record --------------------------------------------------------------------------------------------


def _counts(row: dict) -> pricing.TokenCounts:
    return pricing.TokenCounts(
        input_tokens=row["uncached_input_tokens"] + row["cache_read_tokens"] + row["cache_write_tokens"],
        cache_read_tokens=row["cache_read_tokens"],
        cache_write_tokens=row["cache_write_tokens"],
        cache_write_1h_tokens=row["cache_write_1h_tokens"],
        output_tokens=row["output_tokens"],
        reasoning_tokens=row["reasoning_tokens"],
        input_audio_tokens=row["input_audio_tokens"],
        output_audio_tokens=row["output_audio_tokens"],
        requests=row["requests"],
    )


def price_row(book: PriceBook, row: dict) -> None:
    """Sets computed_cost, cost, cost_basis and price_ref on a row dict from the org's price book."""
    price = book.price(
        provider=row["provider"], model=row["model"], at=row["start_time"], service_tier=row["service_tier"]
    )
    computed = None
    if price is not None:
        per_request = not row.get("bucket_seconds") and row["requests"] <= 1
        try:
            # cost_of(price.resolved, _counts(row), ...) without building the TokenCounts (same result, same errors)
            computed = pricing.cost_of_counts(
                price.resolved,
                row["uncached_input_tokens"] + row["cache_read_tokens"] + row["cache_write_tokens"],
                row["cache_read_tokens"],
                row["cache_write_tokens"],
                row["cache_write_1h_tokens"],
                row["output_tokens"],
                row["reasoning_tokens"],
                row["input_audio_tokens"],
                row["output_audio_tokens"],
                row["requests"],
                context_window=row.get("context_window") or None,
                per_request=per_request,
            ).quantize(_Q)
        except ValueError:
            computed = None
    row["computed_cost"] = computed
    row["price_ref"] = price.ref if (price is not None and computed is not None) else ""
    if row.get("reported_cost") is not None:
        row["cost"], row["cost_basis"] = row["reported_cost"], BASIS_REPORTED
    elif computed is not None:
        row["cost"], row["cost_basis"] = computed, BASIS_COMPUTED
    else:
        row["cost"], row["cost_basis"] = ZERO, BASIS_UNPRICED


# --- event ingest --------------------------------------------------------------------------------------------------


@dataclass
class IngestResult:
    accepted: int = 0
    duplicate_events: list = field(default_factory=list)
    rejected_events: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "accepted": self.accepted,
            "duplicates": len(self.duplicate_events),
            "rejected": len(self.rejected_events),
            "duplicate_events": self.duplicate_events,
            "rejected_events": self.rejected_events,
        }


def _org_rules(org) -> list[Rule]:
    return [
        Rule(r.kind, r.tag_key, r.value, r.team_id)
        for r in AttributionRule.objects.for_org(org).order_by("priority", "id")
    ]


class _Teams:
    def __init__(self, org):
        teams = list(Team.objects.for_org(org).values_list("id", "name"))
        self.by_id = dict(teams)
        self.by_name = {name.lower(): tid for tid, name in teams}

    def resolve(self, value) -> int | None:
        if isinstance(value, int):
            return value if value in self.by_id else None
        if (team_id := ascii_int(value)) in self.by_id:
            return team_id
        return self.by_name.get(value.strip().lower())


def usage_events_ingest(*, org, events, token=None, now: datetime | None = None) -> IngestResult:
    """Validates each event on its own and stores the valid ones once (idempotent on the event id).

    A token bound to a team writes only that team's usage. Returns counts and per-event duplicates and errors.
    """
    if not isinstance(events, list):
        raise ValidationError({"events": ['Send a list of events: {"events": [...]}.']})
    if len(events) > MAX_BATCH:
        raise ValidationError(
            {"events": [f"At most {MAX_BATCH} events per request; this batch has {len(events)}."]}
        )
    # The batch's objects (thousands of dicts and strings) hold no reference cycles and are freed by reference
    # counting; left on, the cyclic collector ran full collections over every object of the process while a batch
    # was being built (measured: 8.9 µs per event, a quarter of the call). Paused for the call, resumed after.
    with gc_paused():
        return _events_ingest(org=org, events=events, token=token, now=now or timezone.now())


def _events_ingest(*, org, events: list, token, now: datetime) -> IngestResult:
    result = IngestResult()
    teams, rules, book, tz = _Teams(org), _org_rules(org), PriceBook(org), org.tz
    token_team_id = token.team_id if token is not None else None
    token_id = token.pk if token is not None else None
    # the same in every row of a pushed batch: sent once with the statement, not per row
    common = {
        "org_id": org.pk,
        "source": SOURCE_EVENT,
        "connection_id": None,
        "token_id": token_id,
        "project_id": None,
        "workspace_id": None,
        "api_key_id": None,
        "bucket_seconds": 0,
        "context_window": "",
        "currency": "USD",
    }
    index_of, seen = {}, set()
    # The transaction starts before the loop: valid rows stream to the ledger's COPY in chunks while later events are
    # still being validated and priced (PostgreSQL parses one chunk while Python prepares the next).
    with transaction.atomic(), ledger.RecordWriter(common, size=len(events)) as writer:
        team_of, model_of = {}, {}  # per batch: teams.resolve and normalise_model are pure for one batch
        for index, raw in enumerate(events):
            row, errors = validate_event(raw, now=now)
            team_id, team_source = None, TEAM_NONE
            if row is not None:
                named_team = row.pop("team")
                if named_team is not None:
                    if named_team not in team_of:
                        team_of[named_team] = teams.resolve(named_team)
                    team_id, team_source = team_of[named_team], TEAM_EXPLICIT
                    if team_id is None:
                        errors = {"team": ["No such team in this organisation."]}
                if not errors and token_team_id is not None:
                    if team_id is not None and team_id != token_team_id:
                        errors = {
                            "team": [
                                f"This token may only write usage for team '{teams.by_id[token_team_id]}'."
                            ]
                        }
                    team_id, team_source = token_team_id, team_source if team_id else TEAM_TOKEN
            if errors:
                event_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
                result.rejected_events.append({"index": index, "id": event_id, "fields": errors})
                continue
            event_id = row["key"]
            if event_id in seen:
                result.duplicate_events.append({"index": index, "id": event_id})
                continue
            seen.add(event_id)
            if team_id is None:
                if rules:  # no rules: resolve_team is None whatever the tags
                    named = {k: row[k] for k in TAG_COLUMNS if row[k]}
                    team_id = resolve_team(rules, tags={**row["tags"], **named})
                team_source = TEAM_RULE if team_id is not None else TEAM_NONE
            # the clean event is the ledger row but for these (validate_event names it so)
            provider, model_raw = row["provider"], row["model_raw"]
            model_key = (provider, model_raw)
            model = model_of.get(model_key)
            if model is None:
                model = model_of[model_key] = normalise_model(provider, model_raw)
            row["model"] = model
            row["token_id"] = token_id  # for the budget counters after the commit
            row["team_id"], row["team_source"] = team_id, team_source
            row["day"] = row["start_time"].astimezone(tz).date()
            price_row(book, row)
            index_of[event_id] = index
            writer.add(row)
        rows = writer.rows
        inserted = writer.finish()
        # the rows' keys are distinct (`seen`): as many inserted as rows is all of them, the common case
        all_new = len(inserted) == len(rows)
        new_rows = rows if all_new else [r for r in rows if r["key"] in inserted]
        transaction.on_commit(lambda: _after_write(org, new_rows=new_rows))
    result.accepted = len(inserted)
    if not all_new:
        for row in rows:
            if row["key"] not in inserted:
                result.duplicate_events.append({"index": index_of[row["key"]], "id": row["key"]})
    result.duplicate_events.sort(key=lambda d: d["index"])
    return result


def _after_write(org, *, new_rows: list[dict] | None = None, changed_days=None) -> None:
    """After a commit: keep the budgets' spend counters current and have budgets re-evaluated (debounced)."""
    from apps.budgets.services import usage_written

    usage_written(org=org, new_rows=new_rows or [], changed_days=changed_days or ())


# --- provider rows ------------------------------------------------------------------------------------------------

BUCKET_SECONDS = {"1d": 86400, "1h": 3600, "1m": 60}


def _provider_row(org, connection_id: int, item: dict, rules, book) -> dict:
    """A provider bucket (see apps.connectors) as a ledger row: normalised, attributed and priced."""
    provider, start = item["provider"], item["bucket_start"]
    seconds = BUCKET_SECONDS.get(item["bucket_width"], 86400)
    # Daily buckets are UTC days and are booked on that date; finer buckets on the org's local day.
    day = start.date() if seconds >= 86400 else start.astimezone(org.tz).date()
    tier = "batch" if item.get("batch") else (item.get("service_tier") or "standard")
    tier = tier if tier in ("standard", "batch", "flex", "priority") else "standard"
    team_id = resolve_team(
        rules,
        project_id=item.get("project_id"),
        workspace_id=item.get("workspace_id"),
        api_key_id=item.get("api_key_id"),
        tags={},
    )
    counts = item["counts"]
    row = {
        "org_id": org.pk,
        "source": "provider",
        "key": f"{connection_id}:{item['endpoint']}:{start:%Y%m%dT%H%M}:{item['dimensions_key']}"[:255],
        "connection_id": connection_id,
        "provider": provider,
        "model": normalise_model(provider, item["model_raw"])
        if item["model_raw"]
        else f"({item['endpoint']})",
        "model_raw": item["model_raw"][:255],
        "project_id": item.get("project_id"),
        "workspace_id": item.get("workspace_id"),
        "api_key_id": item.get("api_key_id"),
        "team_id": team_id,
        "team_source": TEAM_RULE if team_id else TEAM_NONE,
        **dict.fromkeys(TAG_COLUMNS, ""),
        "tags": {
            "endpoint": item["endpoint"],
            **{k: v for k, v in item.get("tags", {}).items() if v is not None},
        },
        "start_time": start,
        "day": day,
        "bucket_seconds": seconds,
        "service_tier": tier,
        "context_window": item.get("context_window") or "",
        "requests": counts.get("requests", 0),
        "uncached_input_tokens": counts["input_tokens"]
        - counts["cache_read_tokens"]
        - counts["cache_write_tokens"],
        **{
            k: counts.get(k, 0)
            for k in (
                "cache_read_tokens",
                "cache_write_tokens",
                "cache_write_1h_tokens",
                "output_tokens",
                "reasoning_tokens",
                "input_audio_tokens",
                "output_audio_tokens",
            )
        },
        "currency": "USD",
        "reported_cost": item.get("reported_cost"),
    }
    price_row(book, row)
    return row


@transaction.atomic
def usage_provider_rows_replace(
    *, org, connection_id: int, endpoint: str, bucket_starts, items: list[dict]
) -> tuple[int, int]:
    """Makes the ledger hold exactly `items` for this connection, endpoint and buckets: rows a re-read no longer
    reports (an empty bucket) disappear, revised rows are replaced. Returns (rows written, rows replaced)."""
    starts = sorted(set(bucket_starts) | {i["bucket_start"] for i in items})
    removed = 0
    if starts:
        old = UsageRecord.objects.for_org(org).filter(
            connection_id=connection_id,
            # the range lets the (org, connection, start_time) index do the work even on stale statistics
            start_time__gte=starts[0],
            start_time__lte=starts[-1],
            start_time__in=starts,
            key__startswith=f"{connection_id}:{endpoint}:",
        )
        removed = ledger.delete_records(old)
    rules, book = _org_rules(org), PriceBook(org)
    rows, seen = [], set()
    for item in items:
        row = _provider_row(org, connection_id, item, rules, book)
        if row["key"] not in seen:  # a provider repeating a bucket row in one page: keep the first
            seen.add(row["key"])
            rows.append(row)
    inserted = ledger.insert_records(rows)
    days = {r["day"] for r in rows} | {s.date() for s in starts}
    transaction.on_commit(lambda: _after_write(org, changed_days=days))
    return len(inserted), removed


# --- attribution ---------------------------------------------------------------------------------------------------


@transaction.atomic
def attribution_rule_create(*, org, kind: str, value: str, team, tag_key: str = "", priority: int = 100):
    if team.org_id != org.pk:
        raise ValidationError({"team": ["No such team."]})
    if kind == "tag" and not tag_key:
        raise ValidationError({"tag_key": ["A tag rule needs the tag key (e.g. feature)."]})
    if kind != "tag":
        tag_key = ""
    if AttributionRule.objects.for_org(org).filter(kind=kind, tag_key=tag_key, value=value).exists():
        raise ValidationError({"value": ["A rule for this value exists already."]})
    rule = AttributionRule(org=org, kind=kind, tag_key=tag_key, value=value, team=team, priority=priority)
    rule.full_clean()
    rule.save()
    audit.record(
        org=org,
        action="attribution_rule.created",
        target=rule,
        target_label=_rule_label(rule),
        changes=audit.created(audit.snapshot(rule, RULE_FIELDS)),
    )
    return rule


RULE_FIELDS = ("kind", "tag_key", "value", "team", "priority")


def _rule_label(rule: AttributionRule) -> str:
    match = f"{rule.tag_key}={rule.value}" if rule.tag_key else rule.value
    return f"{rule.kind} {match} → {rule.team.name}"


@transaction.atomic
def attribution_rule_delete(*, rule: AttributionRule) -> None:
    audit.record(
        org=rule.org,
        action="attribution_rule.deleted",
        target=rule,
        target_label=_rule_label(rule),
        changes=audit.deleted(audit.snapshot(rule, RULE_FIELDS)),
    )
    rule.delete()


@transaction.atomic
def usage_reattribute(*, org, start: date | None = None, end: date | None = None) -> int:
    """Re-applies the attribution rules to recorded usage (records whose team was not named explicitly)."""
    rules = _org_rules(org)
    qs = UsageRecord.objects.for_org(org).exclude(team_source__in=[TEAM_EXPLICIT, TEAM_TOKEN])
    qs = qs.on_days(start, end)
    changed_days: set[date] = set()
    updates = []
    for rec in qs.only(
        "id", "day", "team_id", "project_id", "workspace_id", "api_key_id", "tags", *TAG_COLUMNS
    ).iterator(chunk_size=2000):
        tags = {**rec.tags, **{c: getattr(rec, c) for c in TAG_COLUMNS if getattr(rec, c)}}
        team_id = resolve_team(
            rules,
            project_id=rec.project_id,
            workspace_id=rec.workspace_id,
            api_key_id=rec.api_key_id,
            tags=tags,
        )
        if team_id != rec.team_id:
            rec.team_id, rec.team_source = team_id, TEAM_RULE if team_id else TEAM_NONE
            updates.append(rec)
            changed_days.add(rec.day)
    UsageRecord.objects.bulk_update(updates, ["team_id", "team_source"], batch_size=1000)
    if changed_days:
        ledger.rollups_rebuild(org.pk, min(changed_days), max(changed_days) + timedelta(days=1))
        transaction.on_commit(lambda: _after_write(org, changed_days=changed_days))
    return len(updates)


# --- re-pricing ----------------------------------------------------------------------------------------------------


def _reprice_plan(org, start: date, end: date, *, only_unpriced: bool = False):
    """Yields (record, new computed_cost, new cost, new basis, new price_ref) for records whose price changes."""
    book = PriceBook(org)
    qs = UsageRecord.objects.for_org(org).on_days(start, end)
    if only_unpriced:
        qs = qs.filter(cost_basis=BASIS_UNPRICED)
    for rec in qs.order_by("id").iterator(chunk_size=2000):
        row = {f: getattr(rec, f) for f in ledger.RECORD_COLUMNS if f not in ("org_id", "team_id")}
        row["reported_cost"] = rec.reported_cost
        price_row(book, row)
        if (row["computed_cost"], row["cost"], row["cost_basis"]) != (
            rec.computed_cost,
            rec.cost,
            rec.cost_basis,
        ):
            yield rec, row["computed_cost"], row["cost"], row["cost_basis"], row["price_ref"]


def _check_range(start: date, end: date):
    if end <= start:
        raise ValidationError({"end": ["The end must be after the start."]})
    if (end - start).days > 731:
        raise ValidationError({"end": ["Re-price at most two years at once."]})


@transaction.atomic
def reprice_preview(*, org, start: date, end: date, user=None, reason: str = "") -> RepriceRun:
    """What re-pricing [start, end) with today's prices and overrides would change, per model and day. No writes
    to the ledger."""
    _check_range(start, end)
    per: dict[tuple, list] = defaultdict(lambda: [ZERO, ZERO, 0])
    old_total = new_total = ZERO
    count = 0
    for rec, _computed, cost, _basis, _ref in _reprice_plan(org, start, end):
        bucket = per[(rec.model, rec.day.isoformat())]
        bucket[0] += rec.cost
        bucket[1] += cost
        bucket[2] += 1
        old_total += rec.cost
        new_total += cost
        count += 1
    summary = [
        {
            "model": m,
            "day": d,
            "records": n,
            "old_cost": str(o),
            "new_cost": str(nw),
            "difference": str(nw - o),
        }
        for (m, d), (o, nw, n) in sorted(per.items())
    ]
    return RepriceRun.objects.create(
        org=org,
        start=start,
        end=end,
        created_by=user,
        reason=reason[:200],
        records_changed=count,
        old_total=old_total,
        new_total=new_total,
        summary=summary,
    )


def _apply(org, run: RepriceRun, plan) -> RepriceRun:
    changes, updates, days = [], [], set()
    old_total = new_total = ZERO
    for rec, computed, cost, basis, ref in plan:
        changes.append(
            RepriceChange(
                run=run,
                record=rec,
                old_cost=rec.cost,
                old_computed_cost=rec.computed_cost,
                old_basis=rec.cost_basis,
                old_price_ref=rec.price_ref,
                new_cost=cost,
                new_computed_cost=computed,
                new_basis=basis,
                new_price_ref=ref,
            )
        )
        old_total += rec.cost
        new_total += cost
        rec.cost, rec.computed_cost, rec.cost_basis, rec.price_ref = cost, computed, basis, ref
        updates.append(rec)
        days.add(rec.day)
    UsageRecord.objects.bulk_update(
        updates, ["cost", "computed_cost", "cost_basis", "price_ref"], batch_size=1000
    )
    RepriceChange.objects.bulk_create(changes, batch_size=1000)
    if days:
        ledger.rollups_rebuild(org.pk, min(days), max(days) + timedelta(days=1))
        transaction.on_commit(lambda: _after_write(org, changed_days=days))
    run.records_changed, run.old_total, run.new_total = len(changes), old_total, new_total
    return run


@transaction.atomic
def reprice_apply(*, run: RepriceRun, user=None) -> RepriceRun:
    run = RepriceRun.objects.select_for_update().get(pk=run.pk)
    if run.status != RepriceRun.PREVIEWED:
        raise Conflict(f"This re-pricing is {run.status} already.", code="reprice_not_previewed")
    run = _apply(run.org, run, list(_reprice_plan(run.org, run.start, run.end)))
    run.status, run.applied_at, run.applied_by = RepriceRun.APPLIED, timezone.now(), user
    run.save()
    return run


@transaction.atomic
def reprice_undo(*, run: RepriceRun, user=None) -> RepriceRun:
    """Restores every record the run changed to its cost before the run."""
    run = RepriceRun.objects.select_for_update().get(pk=run.pk)
    if run.status != RepriceRun.APPLIED:
        raise Conflict("Only an applied re-pricing can be undone.", code="reprice_not_applied")
    later = RepriceRun.objects.for_org(run.org).filter(
        status=RepriceRun.APPLIED, applied_at__gt=run.applied_at, start__lt=run.end, end__gt=run.start
    )
    if later.exists():
        raise Conflict(
            "A later re-pricing of an overlapping range is applied; undo that one first.",
            code="reprice_undo_order",
        )
    updates, days = [], set()
    for change in run.changes.select_related("record").iterator(chunk_size=2000):
        rec = change.record
        rec.cost, rec.computed_cost = change.old_cost, change.old_computed_cost
        rec.cost_basis, rec.price_ref = change.old_basis, change.old_price_ref
        updates.append(rec)
        days.add(rec.day)
    UsageRecord.objects.bulk_update(
        updates, ["cost", "computed_cost", "cost_basis", "price_ref"], batch_size=1000
    )
    if days:
        ledger.rollups_rebuild(run.org_id, min(days), max(days) + timedelta(days=1))
        transaction.on_commit(lambda: _after_write(run.org, changed_days=days))
    run.status, run.undone_at, run.undone_by = RepriceRun.UNDONE, timezone.now(), user
    run.save()
    return run


@transaction.atomic
def usage_price_unpriced(*, org) -> RepriceRun | None:
    """Prices unpriced records whose model has a price now; recorded as an applied (undoable) run."""
    first = UsageRecord.objects.for_org(org).filter(cost_basis=BASIS_UNPRICED).order_by("day").first()
    if first is None:
        return None
    start, end = first.day, timezone.now().astimezone(org.tz).date() + timedelta(days=2)
    plan = list(_reprice_plan(org, start, end, only_unpriced=True))
    if not plan:
        return None
    run = RepriceRun.objects.create(
        org=org, start=start, end=end, reason="automatic: models that got a price"
    )
    run = _apply(org, run, plan)
    run.status, run.applied_at = RepriceRun.APPLIED, timezone.now()
    run.save()
    return run


def utc_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
