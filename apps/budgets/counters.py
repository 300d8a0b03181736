"""Spend counters in Redis for the pre-flight check.

One hash per org, counter epoch and org-local day: `spc:{org}:{epoch}:{YYYYMMDD}` with integer nanodollars per field
(`all`, `team:<id>`, `provider:<p>`, `model:<m>`, `tag:feature=<v>`, `tag:customer=<v>`, `token:<id>`). The database
is the truth: a missing day hash is rebuilt from it on first read; writes only increment days that exist. If an
increment fails (Redis down), the org's epoch is bumped so every hash is rebuilt from the database when Redis returns.
Without REDIS_URL, or while Redis is unreachable, spend is read from the database directly (slower, still correct).
"""

import logging
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import F, Sum

logger = logging.getLogger(__name__)
NANO = Decimal("1e9")
TTL_SECONDS = 400 * 86400
_client = None

# KEYS: day hashes; ARGV: fields. Returns a flat list: for each key, 1 if it exists then the field values.
READ = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    table.insert(out, 1)
    local values = redis.call('HMGET', key, unpack(ARGV))
    for _, v in ipairs(values) do table.insert(out, v or '0') end
  else
    table.insert(out, 0)
  end
end
return out
"""
# KEYS[1]: day hash; ARGV: field, amount, field, amount … Increments only a hash that was built.
INCR = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""
_scripts: dict = {}


def enabled() -> bool:
    return bool(settings.REDIS_URL)


def client():
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=0.2, socket_timeout=0.2)
        _scripts["read"] = _client.register_script(READ)
        _scripts["incr"] = _client.register_script(INCR)
    return _client


def reset_client() -> None:
    global _client
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
        pipe.execute()
    except Exception as exc:  # noqa: BLE001 - Redis trouble must never fail a write that is already committed
        logger.warning(
            "spend counters not updated (%s); the org's counters will be rebuilt", type(exc).__name__
        )
        from apps.orgs.models import Organization

        Organization.objects.filter(pk=org.pk).update(counter_epoch=F("counter_epoch") + 1)
        reset_client()


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
        UsageRecord.objects.filter(org=org, day=day, token_id__isnull=False)
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


def read(org, fields: list[str], start: date, end: date) -> dict[str, Decimal]:
    """Spend per field over org-local days [start, end). Raises if Redis is unreachable (caller falls back)."""
    days = [start + timedelta(days=i) for i in range((end - start).days)]
    keys = [day_key(org.pk, org.counter_epoch, d) for d in days]
    client()
    for attempt in range(2):
        flat = _scripts["read"](keys=keys, args=fields)
        totals = dict.fromkeys(fields, 0)
        missing, i = [], 0
        for day in days:
            exists = int(flat[i])
            i += 1
            if not exists:
                missing.append(day)
                continue
            for field in fields:
                totals[field] += int(flat[i])
                i += 1
        if not missing:
            return {f: Decimal(v) / NANO for f, v in totals.items()}
        if attempt == 0:
            for day in missing:
                _build(org, day)
    raise RuntimeError("spend counters could not be built")


def forget_days(org, days) -> None:
    """Rows of these days were replaced (provider re-reads): drop the day hashes so they are rebuilt from the DB."""
    if not enabled():
        return
    try:
        client().delete(*[day_key(org.pk, org.counter_epoch, d) for d in days])
    except Exception:  # noqa: BLE001
        invalidate(org)
        reset_client()


def invalidate(org) -> None:
    """Forget every counter of the org (e.g. after re-pricing): they are rebuilt from the database on next read."""
    from apps.orgs.models import Organization

    Organization.objects.filter(pk=org.pk).update(counter_epoch=F("counter_epoch") + 1)
