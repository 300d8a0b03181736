"""Writes to the ledger and its daily rollup, in one transaction.

PostgreSQL: COPY into a temporary staging table, then one statement inserts the new rows (ON CONFLICT DO NOTHING on
the org+source+key idempotency constraint) and adds exactly the inserted rows to the rollup. Other databases (the
embedded SQLite default): the same result through the ORM. Both return the keys that were new.
"""

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from functools import lru_cache

from django.db import IntegrityError, connection, transaction
from django.db.models import NOT_PROVIDED, Count, Q, Sum

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
_STAGING = "usage_staging_rows"  # the ledger's columns and types (the COPY text of a batch)
# what the rollups and the caller need of the inserted rows (not the wide tags, model_raw, price_ref ...)
_RETURNED = ", ".join(
    dict.fromkeys(("org_id", "key", *ROLLUP_KEY, *SUMMED, "computed_cost", "reported_cost", "cost_basis"))
)


def insert_records(rows: list[dict], *, common: dict | None = None) -> set[str]:
    """Insert rows (dicts with RECORD_COLUMNS) that are new; update every rollup for exactly those. Returns new keys.

    Must run inside a transaction. All rows share one org and one source. `common` holds columns whose value is the
    same in every row (e.g. org_id, source, token_id for one pushed batch); rows need not repeat them.
    """
    if not rows:
        return set()
    with RecordWriter(common, size=len(rows)) as writer:
        for row in rows:
            writer.add(row)
        return writer.finish()


class RecordWriter:
    """`insert_records` for a caller that produces rows one by one (the event ingest). Use inside a transaction:

        with RecordWriter(common, size=len(events)) as writer:
            for ...: writer.add(row)
            inserted = writer.finish()

    On PostgreSQL every CHUNK rows are formatted and streamed to a COPY at once, so the server parses and stores
    them while the caller prepares the next ones. The COPY goes straight into the ledger, inside a savepoint:
    a batch of new keys (the common case) needs no staging table and no ON CONFLICT; one statement then reads
    exactly those rows back, groups them and upserts every rollup (the same grouping as below). The writer takes `size`
    (the most rows it will get) ids from the ledger's sequence first and sends them with the rows, and reads the rows
    back by those ids: by their range when they are consecutive (the common case), else by the list (another session
    took some in between). Never by key: the planner, with an org's statistics not yet gathered, answered the key
    lookups by scanning the org's rows (a minute for one batch of 5,000).
    If any key is stored already (a retried batch, or a concurrent request with the same key: the COPY waits for it and then fails on the unique constraint),
    the COPY is rolled back to the savepoint and the same rows go the general way instead: COPY into a temporary
    staging table, then one INSERT ... ON CONFLICT DO NOTHING that adds exactly the inserted rows to the rollups.
    Either way every row is stored at most once and `finish()` returns exactly the keys that were new.
    """

    CHUNK = 1000

    def __init__(self, common: dict | None = None, *, size: int):
        self.common = common or {}
        self._size = size
        self._ids: range | list[int] = ()
        self._used = 0
        self.rows: list[dict] = []
        self._pending: list[dict] = []
        self._postgres = connection.vendor == "postgresql"
        self._cursor = self._copy_cm = self._copy = None
        # the COPY text sent so far (sent again to the staging table on a conflict)
        self._chunks: list[str] = []
        self._savepoint = None
        self._done = False

    def __enter__(self):
        assert transaction.get_connection().in_atomic_block, "insert_records must run in a transaction"
        return self

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if self._postgres:
            self._pending.append(row)
            if len(self._pending) >= self.CHUNK:
                self._send()

    def _send(self) -> None:
        if self._cursor is None:
            self._start()
        fmt, suffix, pending = self._fmt, self._suffix, self._pending
        ids = self._ids[self._used : self._used + len(pending)]
        assert len(ids) == len(pending), "more rows than the writer's size"
        self._used += len(ids)
        text = "\n".join([f"{i}\t{fmt(r, suffix)}" for i, r in zip(ids, pending, strict=True)]) + "\n"
        pending.clear()
        self._chunks.append(text)
        # The raw psycopg COPY bypasses Django's error wrapping: wrapped here, a connection dropped mid-COPY is a
        # Django OperationalError (the API's 503) and Django marks the connection unusable instead of reusing it.
        with connection.wrap_database_errors:
            self._copy.write(text)

    def _start(self) -> None:
        """The first chunk: the transaction's now() (every row's created_at), a savepoint, the COPY into the ledger."""
        staged = tuple(c for c in RECORD_COLUMNS if c not in self.common)
        # a common value that is the column's default is left to the database (created_at: now(), the
        # transaction's start, as INSERT ... now() gives it): less to send and to parse per row
        common_cols = tuple(
            c for c in RECORD_COLUMNS if c in self.common and not _is_db_default(c, self.common[c])
        )
        self._cursor = connection.cursor()
        self._cursor.execute(_RESERVE_IDS, [_id_sequence(self._cursor), self._size])
        low, high, scattered = self._cursor.fetchone()
        self._ids = range(low, high + 1) if scattered is None else scattered
        self._fmt, order = _row_formatter(staged)
        self._copy_order = ("id", *order, *common_cols)
        self._suffix = "".join(f"\t{_copy_text(self.common[c])}" for c in common_cols)  # each with its tab
        self._savepoint = connection.savepoint()
        self._open_copy(UsageRecord._meta.db_table)

    def _open_copy(self, table: str) -> None:
        with connection.wrap_database_errors:
            self._copy_cm = self._cursor.cursor.copy(
                f"COPY {table} ({', '.join(self._copy_order)}) FROM STDIN"
            )
            self._copy = self._copy_cm.__enter__()

    def _end_copy(self) -> None:
        copy_cm, self._copy_cm = self._copy_cm, None
        with connection.wrap_database_errors:
            copy_cm.__exit__(None, None, None)

    def finish(self) -> set[str]:
        """Writes what is left; returns the keys that were new (each rollup has exactly those rows added)."""
        assert not self._done, "finish() once"
        self._done = True
        if not self.rows:
            return set()
        if not self._postgres:
            rows = [{**self.common, **r} for r in self.rows] if self.common else self.rows
            return _insert_generic(rows)
        if self._pending:
            self._send()
        try:
            self._end_copy()  # a key stored already fails here: the unique constraint
        except IntegrityError as exc:
            if not _is_key_conflict(exc):
                raise
            connection.savepoint_rollback(self._savepoint)
            return self._insert_staged()
        connection.savepoint_commit(self._savepoint)
        ids = self._ids[
            : self._used
        ]  # the rows' ids, in the order sent; a range when consecutive (the common case)
        by_range = type(ids) is range
        # a list of ids goes as one text parameter: quick to send, however many
        params = {"low": ids[0], "high": ids[-1]} if by_range else {"ids": ",".join(map(str, ids))}
        self._cursor.execute(_rollup_statement(by_range=by_range), {**params, "unpriced": BASIS_UNPRICED})
        return {r["key"] for r in self.rows}

    def _insert_staged(self) -> set[str]:
        """The general way for rows of which some may be stored already: COPY the same text into the staging table,
        then one INSERT ... ON CONFLICT DO NOTHING that also adds exactly the inserted rows to every rollup."""
        _ensure_staging(self._cursor)
        self._cursor.execute(f"TRUNCATE {_STAGING}")
        self._open_copy(_STAGING)
        with connection.wrap_database_errors:
            for text in self._chunks:
                self._copy.write(text)
        self._end_copy()
        self._cursor.execute(_statement(self._copy_order), {"unpriced": BASIS_UNPRICED})
        return {r[0] for r in self._cursor.fetchall()}

    def __exit__(self, exc_type, exc, tb):
        if self._copy_cm is not None:  # an error before finish(): end the COPY (the transaction rolls back)
            with connection.wrap_database_errors:
                self._copy_cm.__exit__(exc_type, exc, tb)
        if self._cursor is not None:
            self._cursor.close()
        return False


def _is_key_conflict(exc: IntegrityError) -> bool:
    """A unique violation of the ledger's idempotency key (any other integrity error is raised as before)."""
    from psycopg.errors import UniqueViolation

    cause = exc.__cause__
    return isinstance(cause, UniqueViolation) and cause.diag.constraint_name == _KEY_CONSTRAINT


# --- PostgreSQL ----------------------------------------------------------------------------------------------------
#
# The COPY text is formatted by a function generated per set of per-row columns (an f-string per row): text columns
# are checked once per row and escaped only when they need it; the columns common to the batch are one constant
# suffix, but those whose value is the column's database default (NULLs, bucket_seconds 0, currency USD ...) and
# created_at (now(), the transaction's start) are left out, for the database to fill. The same text goes to the
# ledger or, on a key conflict, to the staging table, whose columns have the ledger's types; its INSERT names the
# same columns, so the ledger's defaults fill the rest there too.

_STAGED_TYPES = {**_PG_TYPES, "id": "bigint", "created_at": "timestamptz"}
_COPY_COLUMNS = (*RECORD_COLUMNS, "created_at")
# n ids from the ledger's sequence (nobody else gets them); the ids themselves only when they are not consecutive
# (another session took some in between)
_RESERVE_IDS = """
    SELECT min(v), max(v), CASE WHEN max(v) - min(v) + 1 = count(*) THEN NULL ELSE array_agg(v ORDER BY v) END
    FROM (SELECT nextval(%s::regclass) AS v FROM generate_series(1, %s)) s
"""
_sequence: list[str] = []


def _id_sequence(cursor) -> str:
    if not _sequence:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [UsageRecord._meta.db_table])
        _sequence.append(cursor.fetchone()[0])
    return _sequence[0]


_INT_COLUMNS = frozenset(c for c, t in _PG_TYPES.items() if t in ("bigint", "integer"))
_NUMERIC_COLUMNS = frozenset(c for c, t in _PG_TYPES.items() if t.startswith("numeric"))
_ISO_COLUMNS = frozenset(("start_time", "day"))
_NULLABLE = frozenset(f.column for f in UsageRecord._meta.concrete_fields if f.null)
_KEY_CONSTRAINT = "usage_record_key_unique"
_JSON_UNSAFE = re.compile(r'[\x00-\x1f"\\]')
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


_FIELDS = {f.column: f for f in UsageRecord._meta.concrete_fields}


def _is_db_default(column: str, value) -> bool:
    """Whether `value` is what the ledger's column gets when a COPY or INSERT leaves it out."""
    field = _FIELDS[column]
    default = field.db_default
    if default is NOT_PROVIDED:
        return value is None and field.null
    return not hasattr(default, "resolve_expression") and type(default) is type(value) and default == value


def _ensure_staging(cursor):
    cols = ", ".join(f"{c} {_STAGED_TYPES.get(c, 'text')}" for c in ("id", *_COPY_COLUMNS))
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} ({cols}) ON COMMIT DELETE ROWS")


def tags_json(tags) -> str:
    """Compact JSON of a tags dict; the common small dict of plain strings without building it through json."""
    if not tags:
        return "{}"
    parts = []
    for key, value in tags.items():
        if (
            type(key) is not str
            or type(value) is not str
            or _JSON_UNSAFE.search(key)
            or _JSON_UNSAFE.search(value)
        ):
            return json.dumps(tags, separators=(",", ":"), ensure_ascii=False)
        parts.append(f'"{key}":"{value}"')
    return "{" + ",".join(parts) + "}"


def _copy_text(value) -> str:
    """One text value in COPY's text format (NULL is \\N)."""
    if value is None:
        return "\\N"
    if type(value) is dict:
        value = tags_json(value)
    return str(value).translate(_COPY_ESCAPES)


@lru_cache(maxsize=16)
def _row_formatter(staged: tuple[str, ...]):
    """A function (row dict, suffix) -> one COPY text line (without the newline) for these per-row columns, in this
    order: text columns first (checked together, escaped only when needed), then numbers, the day and the start
    (ISO), then the suffix (the batch's constant columns, already COPY text, each after its tab)."""
    text = [
        c for c in staged if c not in _INT_COLUMNS and c not in _NUMERIC_COLUMNS and c not in _ISO_COLUMNS
    ]
    rest = [c for c in staged if c not in text]
    text_parts = []
    for c in text:
        if c == "tags":
            text_parts.append(f"{{_tags_json(r[{c!r}])}}")
        elif c in _NULLABLE:  # NULL is \\N: the backslash sends the row to the escaping path, which writes it
            text_parts.append(f"{{_NULL if r.get({c!r}) is None else r[{c!r}]}}")
        else:
            text_parts.append(f"{{r[{c!r}]}}")
    rest_parts = []
    for c in rest:
        if c in _ISO_COLUMNS:  # an aware datetime (with its offset) and a date: unambiguous in any DateStyle
            rest_parts.append(f"{{r[{c!r}].isoformat()}}")
        elif c in _NULLABLE:
            rest_parts.append(f"{{(_NULL if r.get({c!r}) is None else r[{c!r}])!s}}")
        else:
            rest_parts.append(f"{{r[{c!r}]!s}}")
    source = (
        "def fmt(r, suffix):\n"
        f'    t = f"{chr(9).join(text_parts)}"\n'
        # a backslash, newline or carriage return anywhere, or a tab inside a value (three substring scans are far
        # cheaper than a regular expression over the line)
        f"    if t.count(_TAB) != {len(text) - 1} or _BS in t or _LF in t or _CR in t:\n"
        f"        t = _TAB.join([{', '.join(f'_copy_text(r.get({c!r}))' for c in text)}])\n"
        f'    return f"{{t}}\t{chr(9).join(rest_parts)}{{suffix}}"\n'
    )
    namespace = {
        "_tags_json": tags_json,
        "_copy_text": _copy_text,
        "_BS": "\\",
        "_LF": "\n",
        "_CR": "\r",
        "_TAB": "\t",
        "_NULL": "\\N",
    }
    exec(compile(source, f"<copy formatter {len(staged)} columns>", "exec"), namespace)  # noqa: S102 - our code
    return namespace["fmt"], (*text, *rest)


_ROLLUP_SUMS = (*SUMMED, "computed_cost", "reported_cost", "records", "unpriced_records", "unpriced_requests")


def _rollup_ctes(source: str) -> list[str]:
    """One upsert per rollup from `source`, a relation with org_id, the finest rollup key and _ROLLUP_SUMS, one row
    per finest group (coarser rollups group it further). A fixed order of the upserted keys: concurrent batches
    take the rollup rows' locks in the same order."""
    fine_model, fine_key = ROLLUPS[0]
    ctes = []
    for i, (model, key) in enumerate(ROLLUPS):
        assert set(key) <= set(fine_key), "every rollup's key is part of the first (finest) rollup's key"
        table = model._meta.db_table
        cols = ", ".join(("org_id", *key))
        if model is fine_model:
            select = f"SELECT {cols}, {', '.join(_ROLLUP_SUMS)} FROM {source}"  # noqa: S608
        else:
            sums = ", ".join(f"SUM({c})" for c in _ROLLUP_SUMS)
            select = f"SELECT {cols}, {sums} FROM {source} GROUP BY {cols}"  # noqa: S608
        updates = ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in _ROLLUP_SUMS)
        ctes.append(
            f"""roll{i} AS (
                INSERT INTO {table} ({cols}, {", ".join(_ROLLUP_SUMS)})
                {select}
                ORDER BY {cols}
                ON CONFLICT ({cols}) DO UPDATE SET {updates}
            )"""
        )
    return ctes


def _grouped() -> str:
    """The CTE g: the rows of `ins` grouped once by the finest rollup key (team_id NULL is 0), with every sum."""
    fine_key = ROLLUPS[0][1]
    group = ["org_id", *("COALESCE(team_id, 0)" if k == "team_id" else k for k in fine_key)]
    return f"""g AS (
                SELECT {", ".join(f"{e} AS {n}" for e, n in zip(group, ("org_id", *fine_key), strict=True))},
                       {", ".join(f"SUM({c}) AS {c}" for c in SUMMED)},
                       SUM(COALESCE(computed_cost, 0)) AS computed_cost,
                       SUM(COALESCE(reported_cost, 0)) AS reported_cost,
                       COUNT(*) AS records,
                       COUNT(*) FILTER (WHERE cost_basis = %(unpriced)s) AS unpriced_records,
                       COALESCE(SUM(requests) FILTER (WHERE cost_basis = %(unpriced)s), 0) AS unpriced_requests
                FROM ins
                GROUP BY {", ".join(group)}
            )"""  # noqa: S608 - identifiers from model metadata


@lru_cache(maxsize=16)
def _statement(columns: tuple[str, ...]) -> str:
    """Staged rows (with the ids taken for them) -> ledger (ON CONFLICT DO NOTHING on the idempotency key), and
    exactly the inserted rows -> every rollup. Returns the inserted keys."""
    record_table = UsageRecord._meta.db_table
    columns = ", ".join(columns)  # the columns copied: the others take the ledger's defaults
    rollups = ",\n            ".join([_grouped(), *_rollup_ctes("g")])
    return f"""
            WITH ins AS (
                INSERT INTO {record_table} ({columns})
                SELECT {columns} FROM {_STAGING}
                ON CONFLICT (org_id, source, key) DO NOTHING
                RETURNING {_RETURNED}
            ),
            {rollups}
            SELECT key FROM ins
            """  # noqa: S608 - identifiers from model metadata, values are parameters


@lru_cache(maxsize=2)
def _rollup_statement(*, by_range: bool) -> str:
    """The rows just copied into the ledger -> every rollup, grouped as `_statement` groups the inserted rows. The
    rows are found by their ids, which only the primary key indexes: whatever the statistics say, the plan is a
    range or a list of primary-key lookups (or, for a small ledger, one scan of it). by_range: the ids are exactly
    %(low)s to %(high)s; else they are %(ids)s, one comma-separated text."""
    record_table = UsageRecord._meta.db_table
    rollups = ",\n            ".join([_grouped(), *_rollup_ctes("g")])
    where = (
        "id BETWEEN %(low)s AND %(high)s" if by_range else "id = ANY(string_to_array(%(ids)s, ',')::bigint[])"
    )
    return f"""
            WITH ins AS (
                SELECT {_RETURNED} FROM {record_table} WHERE {where}
            ),
            {rollups}
            SELECT 1
            """  # noqa: S608 - identifiers from model metadata, values are parameters


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
        model.objects.filter(org_id=org_id).on_days(start, end).delete()
        aggregated = (
            UsageRecord.objects.filter(org_id=org_id)
            .on_days(start, end)
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
