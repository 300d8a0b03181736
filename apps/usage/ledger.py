"""Writes to the ledger and its daily rollup, in one transaction.

PostgreSQL: COPY into a temporary staging table, then one statement inserts the new rows (ON CONFLICT DO NOTHING on
the org+source+key idempotency constraint) and adds exactly the inserted rows to the rollup. Other databases (the
embedded SQLite default): the same result through the ORM. Both return the keys that were new.
"""

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, Q, Sum

from apps.usage.models import BASIS_UNPRICED, TOKEN_FIELDS, DailyModelRollup, DailyRollup, UsageRecord

RECORD_COLUMNS = (
    "org_id",
    "source",
    "key",
    "connection_id",
    "token_id",
    "provider",
    "model",
    "model_raw",
    "project_id",
    "workspace_id",
    "api_key_id",
    "team_id",
    "team_source",
    "feature",
    "task_id",
    "customer",
    "end_user",
    "environment",
    "tags",
    "start_time",
    "day",
    "bucket_seconds",
    "service_tier",
    "context_window",
    "requests",
    *TOKEN_FIELDS,
    "cost",
    "currency",
    "cost_basis",
    "computed_cost",
    "reported_cost",
    "price_ref",
)
ROLLUP_KEY = ("day", "team_id", "provider", "model", "feature", "customer")
# Every rollup and its key; each is kept current by every write path below.
ROLLUPS = (
    (DailyRollup, ROLLUP_KEY),
    (DailyModelRollup, ("day", "provider", "model")),
)
SUMMED = ("requests", *TOKEN_FIELDS, "cost")
_PG_TYPES = {
    "org_id": "bigint",
    "connection_id": "bigint",
    "token_id": "bigint",
    "team_id": "bigint",
    "tags": "jsonb",
    "start_time": "timestamptz",
    "day": "date",
    "bucket_seconds": "integer",
    "requests": "bigint",
    "cost": "numeric(24,10)",
    "computed_cost": "numeric(24,10)",
    "reported_cost": "numeric(24,10)",
    **dict.fromkeys(TOKEN_FIELDS, "bigint"),
}
_STAGING = "usage_staging"
_TAGS_AT = RECORD_COLUMNS.index("tags")
# what the rollup and the caller need of the inserted rows (not the wide tags, model_raw, price_ref ...)
_RETURNED = ", ".join(
    dict.fromkeys(("org_id", "key", *ROLLUP_KEY, *SUMMED, "computed_cost", "reported_cost", "cost_basis"))
)


def insert_records(rows: list[dict]) -> set[str]:
    """Insert rows (dicts with RECORD_COLUMNS) that are new; update the rollup for exactly those. Returns new keys.

    Must run inside a transaction. All rows share one org and one source.
    """
    if not rows:
        return set()
    assert transaction.get_connection().in_atomic_block, "insert_records must run in a transaction"
    if connection.vendor == "postgresql":
        return _insert_postgres(rows)
    return _insert_generic(rows)


# --- PostgreSQL ----------------------------------------------------------------------------------------------------


def _ensure_staging(cursor):
    cols = ", ".join(f"{c} {_PG_TYPES.get(c, 'text')}" for c in RECORD_COLUMNS)
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} ({cols}) ON COMMIT DELETE ROWS")


def _rollup_cte(name: str, model, key: tuple[str, ...]) -> str:
    table = model._meta.db_table
    key_cols = ", ".join(key)
    key_exprs = ", ".join("COALESCE(team_id, 0)" if k == "team_id" else k for k in key)
    extra = ("computed_cost", "reported_cost", "records", "unpriced_records", "unpriced_requests")
    updates = ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in (*SUMMED, *extra))
    positions = ", ".join(str(i) for i in range(1, len(key) + 2))
    return f"""{name} AS (
                INSERT INTO {table} (org_id, {key_cols}, {", ".join(SUMMED)}, {", ".join(extra)})
                SELECT org_id, {key_exprs}, {", ".join(f"SUM({c})" for c in SUMMED)},
                       SUM(COALESCE(computed_cost, 0)), SUM(COALESCE(reported_cost, 0)), COUNT(*),
                       COUNT(*) FILTER (WHERE cost_basis = %(unpriced)s),
                       COALESCE(SUM(requests) FILTER (WHERE cost_basis = %(unpriced)s), 0)
                FROM ins
                GROUP BY org_id, {key_exprs}
                ORDER BY {positions}
                ON CONFLICT (org_id, {key_cols}) DO UPDATE SET {updates}
            )"""  # noqa: S608 - identifiers from model metadata


def _insert_postgres(rows: list[dict]) -> set[str]:
    from psycopg.types.json import Jsonb

    record_table = UsageRecord._meta.db_table
    columns = ", ".join(RECORD_COLUMNS)
    rollups = ",\n            ".join(
        _rollup_cte(f"roll{i}", model, key) for i, (model, key) in enumerate(ROLLUPS)
    )
    with connection.cursor() as cursor:
        _ensure_staging(cursor)
        cursor.execute(f"TRUNCATE {_STAGING}")
        # The raw psycopg cursor bypasses Django's error wrapping: without it a connection dropped during the COPY
        # escapes as psycopg.OperationalError (a 500 instead of the API's 503) and Django never learns that this
        # connection is broken, so it would be kept for the next request.
        with (
            connection.wrap_database_errors,
            cursor.cursor.copy(f"COPY {_STAGING} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                values = list(map(row.get, RECORD_COLUMNS))
                values[_TAGS_AT] = Jsonb(row["tags"])
                copy.write_row(values)
        # Identifiers come from model metadata, values are parameters. Each rollup adds exactly the inserted rows.
        cursor.execute(
            f"""
            WITH ins AS (
                INSERT INTO {record_table} ({columns}, created_at)
                SELECT {columns}, now() FROM {_STAGING}
                ON CONFLICT (org_id, source, key) DO NOTHING
                RETURNING {_RETURNED}
            ),
            {rollups}
            SELECT key FROM ins
            """,  # noqa: S608
            {"unpriced": BASIS_UNPRICED},
        )
        return {r[0] for r in cursor.fetchall()}


# --- other databases -----------------------------------------------------------------------------------------------


def _insert_generic(rows: list[dict]) -> set[str]:
    org_id, source = rows[0]["org_id"], rows[0]["source"]
    keys = [r["key"] for r in rows]
    existing: set[str] = set()
    for i in range(0, len(keys), 500):
        existing.update(
            UsageRecord.objects.filter(org_id=org_id, source=source, key__in=keys[i : i + 500]).values_list(
                "key", flat=True
            )
        )
    new, seen = [], set(existing)
    for r in rows:
        if r["key"] not in seen:
            seen.add(r["key"])
            new.append(r)
    UsageRecord.objects.bulk_create(
        [UsageRecord(**{c: r.get(c) for c in RECORD_COLUMNS}) for r in new], batch_size=500
    )
    rollup_add(org_id, new)
    return {r["key"] for r in new}


def rollup_add(org_id: int, rows: Iterable[dict], sign: int = 1) -> None:
    """Adds (or with sign=-1 subtracts) rows to every rollup through the ORM. Used off the PostgreSQL hot path."""
    rows = list(rows)
    for model, key_fields in ROLLUPS:
        deltas: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
        for r in rows:
            key = tuple((r.get(k) or 0) if k == "team_id" else r[k] for k in key_fields)
            d = deltas[key]
            for c in SUMMED:
                d[c] += r[c]
            d["computed_cost"] += r.get("computed_cost") or Decimal(0)
            d["reported_cost"] += r.get("reported_cost") or Decimal(0)
            d["records"] += 1
            if r["cost_basis"] == BASIS_UNPRICED:
                d["unpriced_records"] += 1
                d["unpriced_requests"] += r["requests"]
        for key in sorted(deltas, key=str):
            lookup = dict(zip(key_fields, key, strict=True))
            obj, _ = model.objects.select_for_update().get_or_create(org_id=org_id, **lookup)
            for field, value in deltas[key].items():
                setattr(obj, field, getattr(obj, field) + sign * value)
            if obj.records <= 0:
                obj.delete()  # nothing left in this group
            else:
                obj.save()


def delete_records(queryset) -> int:
    """Deletes ledger rows and takes exactly them out of the rollup. Must run inside a transaction."""
    fields = (
        "day",
        "team_id",
        "provider",
        "model",
        "feature",
        "customer",
        *SUMMED,
        "computed_cost",
        "reported_cost",
        "cost_basis",
        "org_id",
    )
    rows = list(queryset.values(*fields))
    if not rows:
        return 0
    queryset.delete()
    rollup_add(rows[0]["org_id"], rows, sign=-1)
    return len(rows)


def rollups_rebuild(org_id: int, start: date, end: date) -> int:
    """Recomputes every rollup for [start, end) from the ledger. Off the hot path: re-pricing, re-attribution."""
    unpriced = Q(cost_basis=BASIS_UNPRICED)
    written = 0
    for model, key_fields in ROLLUPS:
        model.objects.filter(org_id=org_id, day__gte=start, day__lt=end).delete()
        aggregated = (
            UsageRecord.objects.filter(org_id=org_id, day__gte=start, day__lt=end)
            .values(*key_fields)
            .annotate(
                **{f"s_{c}": Sum(c) for c in SUMMED},
                s_computed=Sum("computed_cost"),
                s_reported=Sum("reported_cost"),
                n=Count("id"),
                n_unpriced=Count("id", filter=unpriced),
                r_unpriced=Sum("requests", filter=unpriced),
            )
            .order_by()
        )
        groups: dict[tuple, dict] = {}
        for a in aggregated:  # team_id NULL and 0 are the same group (unattributed)
            key = tuple((a[k] or 0) if k == "team_id" else a[k] for k in key_fields)
            g = groups.setdefault(key, defaultdict(int))
            for c in SUMMED:
                g[c] += a[f"s_{c}"] or 0
            g["computed_cost"] += a["s_computed"] or 0
            g["reported_cost"] += a["s_reported"] or 0
            g["records"] += a["n"]
            g["unpriced_records"] += a["n_unpriced"]
            g["unpriced_requests"] += a["r_unpriced"] or 0
        objs = [
            model(org_id=org_id, **dict(zip(key_fields, key, strict=True)), **g) for key, g in groups.items()
        ]
        model.objects.bulk_create(objs, batch_size=1000)
        written += len(objs)
    return written
