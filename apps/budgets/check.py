"""The pre-flight check: "may I spend this?" answered from Redis counters, or the database when Redis is down."""

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.core.cache import cache
from django.core.exceptions import ValidationError

from apps.budgets import counters
from apps.budgets.models import Budget
from apps.budgets.selectors import budget_period, org_today, scope_daily
from apps.catalog import pricing
from apps.catalog.selectors import PriceBook, normalise_model
from apps.orgs.models import Team

ALLOW, WARN, DENY = "allow", "warn", "deny"
_RANK = {ALLOW: 0, WARN: 1, DENY: 2}


@dataclass
class CheckResult:
    decision: str
    estimated_cost: Decimal
    priced: bool
    budgets: list = field(default_factory=list)
    source: str = "redis"
    recommended_model: str | None = None


def budget_field(budget: Budget) -> str | None:
    if budget.scope == Budget.SCOPE_ORG:
        return "all"
    if budget.scope == Budget.SCOPE_TEAM:
        return f"team:{budget.team_id}"
    if budget.scope == Budget.SCOPE_PROVIDER:
        return f"provider:{budget.provider}"
    if budget.scope == Budget.SCOPE_MODEL:
        return f"model:{budget.model}"
    if budget.scope == Budget.SCOPE_TOKEN:
        return f"token:{budget.token_id}"
    if budget.scope == Budget.SCOPE_TAG and budget.tag_key in ("feature", "customer"):
        return f"tag:{budget.tag_key}={budget.tag_value}"
    return None  # other tags are only in the ledger: answered from the database


def _applies(budget: Budget, *, team_id, provider, model, tags, token_id) -> bool:
    return {
        Budget.SCOPE_ORG: True,
        Budget.SCOPE_TEAM: team_id is not None and budget.team_id == team_id,
        Budget.SCOPE_PROVIDER: budget.provider == provider,
        Budget.SCOPE_MODEL: budget.model == model,
        Budget.SCOPE_TAG: tags.get(budget.tag_key) == budget.tag_value,
        Budget.SCOPE_TOKEN: token_id is not None and budget.token_id == token_id,
    }[budget.scope]


@dataclass
class _OrgConfig:
    budgets: list
    teams: dict
    book: PriceBook
    loaded_at: float


_CONFIG: dict[tuple[int, str], _OrgConfig] = {}
CONFIG_TTL = 5.0


def config_version_key(org_id: int) -> str:
    return f"check-config:{org_id}"


def config_changed(org_id: int) -> None:
    """Budgets, teams or price overrides changed: every process reloads the org's check configuration."""
    try:
        cache.delete(config_version_key(org_id))
    except Exception:  # noqa: BLE001 - cache down: processes reload within CONFIG_TTL anyway
        _CONFIG.clear()


def _config(org) -> _OrgConfig:
    """Budgets, teams and prices of the org, kept per process for a few seconds and reloaded at once when they
    change (a version in the shared cache), so a check costs no database query for them."""
    try:
        version = cache.get(config_version_key(org.pk))
        if version is None:
            cache.add(config_version_key(org.pk), uuid.uuid4().hex, timeout=None)
            version = cache.get(config_version_key(org.pk)) or "none"
    except Exception:  # noqa: BLE001 - shared cache down: read the configuration fresh from the database
        version = uuid.uuid4().hex
    now = time.monotonic()
    found = _CONFIG.get((org.pk, version))
    if found is None or now - found.loaded_at > CONFIG_TTL:
        if len(_CONFIG) > 1000:
            _CONFIG.clear()
        found = _OrgConfig(
            budgets=list(Budget.objects.for_org(org).filter(is_active=True).select_related("org")),
            teams={n.lower(): i for i, n in Team.objects.for_org(org).values_list("id", "name")},
            book=PriceBook(org),
            loaded_at=now,
        )
        _CONFIG[(org.pk, version)] = found
    return found


def estimate(
    org,
    *,
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    book: PriceBook | None = None,
) -> tuple[Decimal, bool]:
    price = (book or PriceBook(org)).price(provider=provider, model=model, at=datetime.now(UTC))
    if price is None:
        return Decimal(0), False
    counts = pricing.TokenCounts(
        input_tokens=input_tokens, cache_read_tokens=cache_read_tokens, output_tokens=output_tokens
    )
    return pricing.cost_of(price.resolved, counts), True


def preflight_check(
    *,
    org,
    token,
    provider: str,
    model: str,
    team=None,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_read_tokens: int = 0,
    estimated_cost: Decimal | None = None,
    tags: dict | None = None,
) -> CheckResult:
    tags = tags or {}
    config = _config(org)
    team_id = None
    if team is not None:
        teams = config.teams
        team_id = (
            int(team) if str(team).isdigit() and int(team) in teams.values() else teams.get(str(team).lower())
        )
        if team_id is None:
            raise ValidationError({"team": ["No such team in this organisation."]})
    if token is not None and token.team_id:
        if team_id is not None and team_id != token.team_id:
            raise ValidationError({"team": ["This token may only check its own team's spend."]})
        team_id = token.team_id
    model = normalise_model(provider, model)
    if estimated_cost is not None:
        cost, priced = estimated_cost, True
    else:
        cost, priced = estimate(
            org,
            provider=provider,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read_tokens,
            book=config.book,
        )
    today = org_today(org)
    token_id = token.pk if token is not None else None
    budgets = [
        b
        for b in config.budgets
        if _applies(b, team_id=team_id, provider=provider, model=model, tags=tags, token_id=token_id)
    ]
    result = CheckResult(decision=ALLOW, estimated_cost=cost, priced=priced)
    spent = _spent(org, budgets, today, result)
    for budget in budgets:
        start, end = budget_period(budget, today)
        if not (start <= today < end):
            continue
        used = spent[budget.pk]
        projected = used + cost
        decision = ALLOW
        if budget.hard_cap is not None and projected > budget.hard_cap:
            decision = DENY
        elif projected > budget.amount:
            decision = WARN
        if _RANK[decision] > _RANK[result.decision]:
            result.decision = decision
        result.budgets.append(
            {
                "id": budget.pk,
                "name": budget.name,
                "scope": budget.scope,
                "period_start": start,
                "period_end": end,
                "amount": budget.amount,
                "hard_cap": budget.hard_cap,
                "spent": used,
                "remaining": budget.amount - used,
                "projected": projected,
                "decision": decision,
            }
        )
    result.budgets.sort(key=lambda b: -_RANK[b["decision"]])
    return result


def _spent(org, budgets, today, result: CheckResult) -> dict[int, Decimal]:
    out: dict[int, Decimal] = {}
    by_range: dict[tuple, list[Budget]] = {}
    for b in budgets:
        by_range.setdefault(budget_period(b, today), []).append(b)
    if counters.enabled():
        try:
            for (start, end), group in by_range.items():
                fast = [b for b in group if budget_field(b)]
                if fast:
                    totals = counters.read(
                        org,
                        sorted({budget_field(b) for b in fast}),
                        start,
                        min(end, today + timedelta(days=1)),
                    )
                    for b in fast:
                        out[b.pk] = totals[budget_field(b)]
        except Exception:  # noqa: BLE001 - Redis down or slow: the database answers instead
            out.clear()
            counters.reset_client()
            result.source = "database"
    else:
        result.source = "database"
    for b in budgets:
        if b.pk not in out:
            start, end = budget_period(b, today)
            out[b.pk] = sum(scope_daily(b, start, min(end, today + timedelta(days=1))).values(), Decimal(0))
            if counters.enabled() and result.source == "redis" and budget_field(b) is None:
                result.source = "redis+database"
    return out
