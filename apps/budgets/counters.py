"""Spend counters in Redis for the pre-flight check.

One hash per org, counter epoch and org-local day: `spc:{org}:{epoch}:{YYYYMMDD}` with integer nanodollars per field
(`all`, `team:<id>`, `provider:<p>`, `model:<m>`, `tag:feature=<v>`, `tag:customer=<v>`, `token:<id>`). The database
is the truth: a missing day hash is rebuilt from it on first read; writes only increment days that exist. If an
increment fails (Redis down), the org's epoch is bumped so every hash is rebuilt from the database when Redis returns.
Without REDIS_URL, or while Redis is unreachable, spend is read from the database directly (slower, still correct).
"""

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db.models import F, Sum

from apps.orgs import versions
from spendctl.common import redis_client

logger = logging.getLogger(__name__)
NANO = Decimal("1e9")
TTL_SECONDS = 400 * 86400

# The pre-flight check's one round trip. KEYS[1] throttle counter ('' = none), KEYS[2] the org version, KEYS[3]
# last-used marker of the token ('' = none), KEYS[4..] day hashes, group after group. ARGV[1] throttle window
# seconds, ARGV[2] a version candidate (set if the key is missing), ARGV[3] number of groups, then per group: number
# of day keys, number of fields, the fields. Returns {throttle count, version, 1 if last-used is due, number of
# missing day hashes, their indexes (1-based among the day keys)…, then per group and field: high, low}: the sum
# of the field over the group's days as high * 10^9 + low, exact (Lua numbers are doubles: each value is split at
# nine digits, so sums stay exact up to 9e15 dollars).
CHECK = (Path(__file__).parent / "check.lua").read_text()  # also run by bench/bare_wsgi.py
# KEYS[1]: day hash; ARGV: field, amount, field, amount … Increments only a hash that was built.
INCR = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""
_scripts: dict = {}
_client = None
# Orgs whose epoch was bumped while Redis was unreachable: their version is bumped on the next successful write,
# so checks in other processes drop their cached epoch (CACHE_SECONDS bounds it if that never happens).
_pending_versions: set[int] = set()


def enabled() -> bool:
    return redis_client.enabled()


def available() -> bool:
    return enabled() and redis_client.available()


def client():
    global _client
    c = redis_client.client()
    if c is not _client:
        _client = c
        _scripts["incr"] = c.register_script(INCR)
        _scripts["check"] = c.register_script(CHECK)
    return c


def reset_client() -> None:
    global _client
    redis_client.reset()
    _client = None
    _scripts.clear()


def failed(*, force: bool = False) -> None:
    """Redis failed under us (call it from the except block): drop the connection; the breaker opens if Redis could
    not be reached, or when forced."""
    global _client
    redis_client.mark_down(force=force)
    _client = None
    _scripts.clear()


def day_key(org_id: int, epoch: int, day: date) -> str:
    return f"{settings.SPEND_COUNTER_PREFIX}:{org_id}:{epoch}:{day:%Y%m%d}"


def nanos(amount) -> int:
    return int((Decimal(amount) * NANO).to_integral_value())


def fields_of_row(row: dict) -> list[str]:
    fields = [
        "all",
        f"team:{row.get('team_id') or 0}",
        f"provider:{row['provider']}",
        f"model:{row['model']}",
    ]
    if row.get("feature"):
        fields.append(f"tag:feature={row['feature']}")
    if row.get("customer"):
        fields.append(f"tag:customer={row['customer']}")
    if row.get("token_id"):
        fields.append(f"token:{row['token_id']}")
    return fields


def record(org, rows: list[dict]) -> None:
    """After a commit: add the new rows' cost to the counters of days that exist. Never raises."""
    if not enabled() or not rows:
        return
    deltas: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        amount = nanos(row["cost"])
        if amount:
            for field in fields_of_row(row):
                deltas[row["day"]][field] += amount
    try:
        client()
        pipe = _client.pipeline(transaction=False)
        for day, fields in deltas.items():
            args = [x for f, v in fields.items() for x in (f, v)]
            _scripts["incr"](keys=[day_key(org.pk, org.counter_epoch, day)], args=args, client=pipe)
        pending = sorted(_pending_versions)
        for org_id in pending:
            pipe.set(versions.key(org_id), versions.candidate())
        pipe.execute()
        _pending_versions.difference_update(pending)
    except Exception as exc:  # noqa: BLE001 - Redis trouble must never fail a write that is already committed
        logger.warning(
            "spend counters not updated (%s); the org's counters will be rebuilt", type(exc).__name__
        )
        from apps.orgs.models import Organization

        Organization.objects.filter(pk=org.pk).update(counter_epoch=F("counter_epoch") + 1)
        _pending_versions.add(org.pk)
        failed()


def _day_values_from_db(org, day: date) -> dict[str, int]:
    from apps.usage.models import DailyRollup, UsageRecord

    values: dict[str, int] = defaultdict(int)
    rows = DailyRollup.objects.filter(org=org, day=day).values_list(
        "team_id", "provider", "model", "feature", "customer", "cost"
    )
    for team_id, provider, model, feature, customer, cost in rows:
        row = {
            "team_id": team_id,
            "provider": provider,
            "model": model,
            "feature": feature,
            "customer": customer,
        }
        for field in fields_of_row(row):
            values[field] += nanos(cost)
    for token_id, cost in (
        UsageRecord.objects.filter(org=org, token_id__isnull=False)
        .on_days(day, day + timedelta(days=1))
        .values("token_id")
        .annotate(s=Sum("cost"))
        .values_list("token_id", "s")
    ):
        values[f"token:{token_id}"] += nanos(cost)
    return values


def _build(org, day: date) -> None:
    key = day_key(org.pk, org.counter_epoch, day)
    values = _day_values_from_db(org, day)
    pipe = _client.pipeline(transaction=True)
    pipe.delete(key)
    pipe.hset(key, mapping={"_built": 1, **values})
    pipe.expire(key, TTL_SECONDS)
    pipe.execute()


@dataclass
class Group:
    """Fields summed over one range of org-local days [start, end)."""

    start: date
    end: date
    fields: list[str]
    keys: list | None = None  # the day hashes' keys, if the caller keeps them (else computed)


@dataclass
class RoundTrip:
    """What the check's one round trip answered."""

    count: int
    version: str
    last_used_due: bool
    sums: list[dict[str, Decimal]]  # per group: field -> dollars


def check_round_trip(
    org,
    groups: list[Group],
    *,
    version_key: str,
    throttle_key: str = "",
    throttle_seconds: int = 0,
    last_used_key: str = "",
) -> RoundTrip:
    """One EVALSHA: throttle INCR, the org version, the last-used marker and every group's sums. Day hashes that do
    not exist yet are built from the database and the sums read again (without counting the throttle twice).
    Raises if Redis is unreachable."""
    keys = [throttle_key, version_key, last_used_key]
    args: list = [throttle_seconds, versions.candidate(), len(groups)]
    days: list[date] = []
    for g in groups:
        span = [g.start + timedelta(days=i) for i in range((g.end - g.start).days)]
        days += span
        keys += g.keys if g.keys is not None else [day_key(org.pk, org.counter_epoch, d) for d in span]
        args += [len(span), len(g.fields), *g.fields]
    client()
    first = None
    for _attempt in range(2):
        flat = _scripts["check"](keys=keys, args=args)
        if first is None:
            first = flat
            keys[0] = keys[2] = ""  # a rebuild's second read counts nothing again
        missing = int(flat[3])
        if not missing:
            i, sums = 4, []
            for g in groups:
                totals = {}
                for f in g.fields:
                    totals[f] = Decimal(int(flat[i]) * 1_000_000_000 + int(flat[i + 1])) / NANO
                    i += 2
                sums.append(totals)
            version = first[1].decode() if isinstance(first[1], bytes) else str(first[1])
            return RoundTrip(int(first[0]), version, int(first[2]) == 1, sums)
        for index in sorted({int(x) for x in flat[4 : 4 + missing]}):
            _build(org, days[index - 1])
    raise RuntimeError("spend counters could not be built")


def read(org, fields: list[str], start: date, end: date) -> dict[str, Decimal]:
    """Spend per field over org-local days [start, end). Raises if Redis is unreachable (caller falls back)."""
    return check_round_trip(org, [Group(start, end, list(fields))], version_key=versions.key(org.pk)).sums[0]


def forget_days(org, days) -> None:
    """Rows of these days were replaced (provider re-reads): drop the day hashes so they are rebuilt from the DB."""
    if not enabled():
        return
    try:
        client().delete(*[day_key(org.pk, org.counter_epoch, d) for d in days])
    except Exception:  # noqa: BLE001
        invalidate(org)
        failed()


def invalidate(org) -> None:
    """Forget every counter of the org (e.g. after re-pricing): they are rebuilt from the database on next read."""
    from apps.orgs.models import Organization

    Organization.objects.filter(pk=org.pk).update(counter_epoch=F("counter_epoch") + 1)
    versions.org_changed(org.pk)  # cached epochs in every process
