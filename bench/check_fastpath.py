"""A prototype of the fast check path proposed by bench/check.py, for measurement only (never wired into the app).

Served at POST /api/v1/fast-check by bench/check.py's "fast path" gunicorn (DJANGO_SETTINGS_MODULE=
bench.check_settings with BENCH_FASTPATH=1; the app's own URLs and middleware stay as they are). Same answer as
POST /api/v1/check (bench/check.py compares the two on every request body it sends), with the per-request costs
that the profile shows moved out of the request:

1. Token: the row (token, org, team) is looked up once and kept in the worker for TOKEN_TTL seconds (the same
   usable() query and last_used_at update as ApiTokenAuthentication when it is looked up).
2. Org snapshot: teams, active budgets and the PriceBook (its overrides query and its price memo) are kept in the
   worker per org and *config version*; the version is one Redis key (a production version would bump it on every
   budget / team / price override / token write) read inside the same script as the counters, so a change is
   seen on the next request without an extra round trip.
3. One Redis round trip per check: one Lua script does the throttle (a fixed-window INCR+EXPIRE, O(1)), reads the
   config version and the day hashes of every applicable budget (all period ranges at once).
4. Input and output without DRF serializers: a strict fast validation of the common well-formed body; anything
   else (and every error: no token, bad body, unknown team, throttled …) is handed to the real CheckView, so
   errors keep their exact shape. The answer is built as plain dicts and json.dumps, formatted as the serializer
   formats it (decimals as strings with the serializer's places).

Days whose hash does not exist yet, and budgets with no counter field, go through apps.budgets.counters.read /
the database exactly as the real check does.
"""

import json
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.http import HttpResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from apps.budgets import counters
from apps.budgets.api import CheckView
from apps.budgets.check import ALLOW, DENY, WARN, _applies, budget_field
from apps.budgets.models import Budget
from apps.budgets.selectors import budget_period, org_today, scope_daily
from apps.catalog import pricing
from apps.catalog.selectors import PriceBook, normalise_model
from apps.orgs.authentication import LAST_USED_RESOLUTION
from apps.orgs.models import ApiToken, Team
from apps.orgs.permissions import SCOPE_CHECK, token_has_scope
from spendctl.common.crypto import hash_token
from spendctl.urls import handler404, handler500  # noqa: F401
from spendctl.urls import urlpatterns as app_urlpatterns

TOKEN_TTL = 30.0
_RANK = {ALLOW: 0, WARN: 1, DENY: 2}
PROVIDER_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")
FIELDS = {
    "provider",
    "model",
    "team",
    "estimated_input_tokens",
    "estimated_cache_read_tokens",
    "estimated_output_tokens",
    "estimated_cost",
    "tags",
}
# KEYS[1] throttle counter, KEYS[2] config version, KEYS[3..] day hashes; ARGV[1] window seconds, ARGV[2..] fields.
# Returns: count, version, then per day hash: 1 and the field values, or 0 when the hash does not exist.
SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local out = {n, redis.call('GET', KEYS[2]) or '0'}
local fields = {unpack(ARGV, 2)}
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    table.insert(out, 1)
    local values = redis.call('HMGET', KEYS[i], unpack(fields))
    for _, v in ipairs(values) do table.insert(out, v or '0') end
  else
    table.insert(out, 0)
  end
end
return out
"""
_tokens: dict[str, tuple[float, ApiToken]] = {}
_snapshots: dict[int, dict] = {}
_versions: dict[int, str] = {}  # the config version last seen in Redis, per org
_script = None
_rate = None


def _rate_limit() -> tuple[int, int]:
    global _rate
    if _rate is None:
        rate = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["token"]
        num, period = rate.split("/")
        _rate = (int(num), {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[0]])
    return _rate


def _token(raw: str):
    h = hash_token(raw)
    hit = _tokens.get(h)
    now = time.monotonic()
    if hit and hit[0] > now:
        return hit[1]
    token = ApiToken.objects.usable().select_related("org", "team", "created_by").filter(token_hash=h).first()
    if token is None:
        return None
    stamp = timezone.now()
    if token.last_used_at is None or stamp - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=stamp)
    _tokens[h] = (now + TOKEN_TTL, token)
    return token


def _snapshot(org) -> dict:
    snap = _snapshots.get(org.pk)
    if snap is None:
        snap = {
            "version": _versions.get(org.pk, "0"),
            "teams": {n.lower(): i for i, n in Team.objects.for_org(org).values_list("id", "name")},
            "budgets": list(Budget.objects.for_org(org).filter(is_active=True)),
            "book": PriceBook(org),
        }
        _snapshots[org.pk] = snap
    return snap


def _clean(data):
    """The body when it is plainly valid (what CheckSerializer would accept unchanged), else None."""
    if type(data) is not dict or not data.keys() <= FIELDS:
        return None
    provider, model = data.get("provider"), data.get("model")
    if type(provider) is not str or not PROVIDER_RE.match(provider) or provider != provider.strip():
        return None
    if type(model) is not str or not MODEL_RE.match(model) or model != model.strip():
        return None
    out = {"provider": provider, "model": model, "team": None}
    if "team" in data:
        team = data["team"]
        if type(team) is not str or not team or team != team.strip() or len(team) > 100:
            return None
        out["team"] = team
    for name in ("estimated_input_tokens", "estimated_cache_read_tokens", "estimated_output_tokens"):
        value = data.get(name, 0)
        if type(value) is not int or not 0 <= value <= 10**9:
            return None
        out[name] = value
    if data.get("estimated_cost") is not None:
        return None  # rare: the serializer parses it
    tags = data.get("tags", {})
    if type(tags) is not dict:
        return None
    for k, v in tags.items():
        if type(k) is not str or type(v) is not str or not v or v != v.strip() or len(v) > 128:
            return None
    out["tags"] = tags
    if not (out["estimated_input_tokens"] or out["estimated_output_tokens"]):
        return None
    if out["estimated_cache_read_tokens"] > out["estimated_input_tokens"]:
        return None
    return out


def _q(value: Decimal, places: str) -> str:
    return format(value.quantize(Decimal(places)), "f")  # as DRF's DecimalField: no exponent


def _slow(request):
    return CheckView.as_view()(request)


@csrf_exempt
def fast_check(request):
    global _script
    if request.method != "POST":
        return _slow(request)
    parts = request.META.get("HTTP_AUTHORIZATION", "").split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return _slow(request)
    token = _token(parts[1])
    if token is None or not token_has_scope(token.scopes, SCOPE_CHECK):
        return _slow(request)
    try:
        v = _clean(json.loads(request.body))
    except ValueError:
        v = None
    if v is None:
        return _slow(request)
    org = token.org
    snap = _snapshot(org)
    team_id = None
    if v["team"] is not None:
        team, teams = v["team"], snap["teams"]
        team_id = int(team) if team.isdigit() and int(team) in teams.values() else teams.get(team.lower())
        if team_id is None:
            return _slow(request)
    if token.team_id:
        if team_id is not None and team_id != token.team_id:
            return _slow(request)
        team_id = token.team_id
    provider = v["provider"]
    model = normalise_model(provider, v["model"])
    price = snap["book"].price(provider=provider, model=model, at=datetime.now(UTC))
    if price is None:
        cost, priced = Decimal(0), False
    else:
        counts = pricing.TokenCounts(
            input_tokens=v["estimated_input_tokens"],
            cache_read_tokens=v["estimated_cache_read_tokens"],
            output_tokens=v["estimated_output_tokens"],
        )
        cost, priced = pricing.cost_of(price.resolved, counts), True
    today = org_today(org)
    budgets = [
        b
        for b in snap["budgets"]
        if _applies(b, team_id=team_id, provider=provider, model=model, tags=v["tags"], token_id=token.pk)
    ]
    tomorrow = today + timedelta(days=1)
    periods = {b.pk: budget_period(b, today) for b in budgets}
    fast = [b for b in budgets if budget_field(b)]
    days = sorted(
        {
            start + timedelta(days=i)
            for b in fast
            for start, end in [periods[b.pk]]
            for i in range((min(end, tomorrow) - start).days)
        }
    )
    fields = sorted({budget_field(b) for b in fast})
    num, duration = _rate_limit()
    window = int(time.time() // duration)
    prefix = settings.SPEND_COUNTER_PREFIX
    keys = [f"{prefix}:throttle:{token.pk}:{window}", f"{prefix}:cfgver:{org.pk}"]
    keys += [counters.day_key(org.pk, org.counter_epoch, d) for d in days]
    source = "redis"
    spent: dict[int, Decimal] = {}
    try:
        client = counters.client()
        if _script is None:
            _script = client.register_script(SCRIPT)
        flat = _script(keys=keys, args=[duration + 1, *fields])
        if int(flat[0]) > num:
            return _slow(request)  # the real view answers 429 (its own throttle decides the wait)
        version = flat[1].decode() if isinstance(flat[1], bytes) else str(flat[1])
        if version != snap["version"]:  # config changed: this request takes the full path, the next rebuilds
            _versions[org.pk] = version
            _snapshots.pop(org.pk, None)
            _tokens.clear()
            return _slow(request)
        per_day: dict = {}
        i, missing = 2, False
        for d in days:
            exists = int(flat[i])
            i += 1
            if not exists:
                missing = True
                continue
            per_day[d] = {f: int(flat[i + j]) for j, f in enumerate(fields)}
            i += len(fields)
        for b in fast:
            start, end = periods[b.pk]
            field = budget_field(b)
            if missing:
                spent[b.pk] = counters.read(org, [field], start, min(end, tomorrow))[field]
            else:
                total = 0
                for d, values in per_day.items():
                    if start <= d < end:
                        total += values[field]
                spent[b.pk] = Decimal(total) / counters.NANO
    except Exception:  # noqa: BLE001 - as the real check: Redis trouble, the database answers
        spent.clear()
        counters.reset_client()
        _script = None
        source = "database"
    for b in budgets:
        if b.pk not in spent:
            start, end = periods[b.pk]
            spent[b.pk] = sum(scope_daily(b, start, min(end, tomorrow)).values(), Decimal(0))
            if source == "redis" and budget_field(b) is None:
                source = "redis+database"
    decision, rows = ALLOW, []
    for b in budgets:
        start, end = periods[b.pk]
        if not (start <= today < end):
            continue
        used = spent[b.pk]
        projected = used + cost
        d = ALLOW
        if b.hard_cap is not None and projected > b.hard_cap:
            d = DENY
        elif projected > b.amount:
            d = WARN
        if _RANK[d] > _RANK[decision]:
            decision = d
        rows.append(
            {
                "id": b.pk,
                "name": b.name,
                "scope": b.scope,
                "period_start": start.isoformat(),
                "period_end": end.isoformat(),
                "amount": _q(b.amount, "0.01"),
                "hard_cap": None if b.hard_cap is None else _q(b.hard_cap, "0.01"),
                "spent": _q(used, "0.0001"),
                "remaining": _q(b.amount - used, "0.0001"),
                "projected": _q(projected, "0.0001"),
                "decision": d,
            }
        )
    rows.sort(key=lambda r: -_RANK[r["decision"]])
    body = {
        "decision": decision,
        "estimated_cost": _q(cost, "0.0000000001"),
        "currency": "USD",
        "priced": priced,
        "budgets": rows,
        "recommended_model": None,
        "source": source,
    }
    return HttpResponse(json.dumps(body, separators=(",", ":")), content_type="application/json")


urlpatterns = [path("api/v1/fast-check", fast_check), *app_urlpatterns]
