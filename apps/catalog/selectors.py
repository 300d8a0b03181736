"""Prices in force for an org: genai-prices list prices, then the org's negotiated overrides."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal

from django.db.models import QuerySet

from apps.catalog import pricing
from apps.catalog.models import PriceOverride


@dataclass(frozen=True)
class Price:
    resolved: pricing.ResolvedPrice
    ref: str  # short description of what was applied, stored on each record


def override_list(*, org) -> QuerySet[PriceOverride]:
    return PriceOverride.objects.for_org(org)


def normalise_model(provider: str, model_raw: str) -> str:
    """The catalog's model id when it knows the model, else the raw name tidied (lower case, trimmed)."""
    known = pricing.normalise_model(provider, model_raw)
    return known[1] if known else model_raw.strip().lower()


class PriceBook:
    """Resolves prices for one org, memoised per (provider, model, day, tier): build one per batch or task."""

    def __init__(self, org):
        self.org = org
        self._overrides: dict[tuple[str, str], list[PriceOverride]] = {}
        for o in PriceOverride.objects.for_org(org).order_by("effective_from", "id"):
            self._overrides.setdefault((o.provider, o.model), []).append(o)
        self._memo: dict[tuple, Price | None] = {}

    def _in_force(self, provider: str, model: str, day: date) -> list[PriceOverride]:
        found = []
        for key in ((provider, ""), (provider, model)):  # provider-wide first, model-specific applies last
            for o in self._overrides.get(key, ()):
                if o.effective_from <= day and (o.effective_to is None or day < o.effective_to):
                    found.append(o)
        return found

    def price(
        self, *, provider: str, model: str, at: datetime, service_tier: str = "standard"
    ) -> Price | None:
        day = at.date() if at.tzinfo is UTC else at.astimezone(UTC).date()
        key = (provider, model, day, service_tier, at.hour if provider == "deepseek" else None)
        if key in self._memo:
            return self._memo[key]
        batch = service_tier == "batch"
        tier = None if service_tier in ("standard", "batch") else service_tier
        try:
            resolved = pricing.resolve_price(
                provider=provider, model=model, at=at, service_tier=tier, batch=batch
            )
        except ValueError:
            resolved = None
        ref = ""
        if resolved is not None:
            ref = f"{resolved.provider_id}/{resolved.model_id} list {resolved.valid_from.date() if resolved.valid_from else ''}"
            if resolved.context:
                ref += " " + ",".join(f"{k}={v}" for k, v in resolved.context)
        for o in self._in_force(provider, model, day):
            if o.has_rates and o.model:
                rates = {
                    name: getattr(o, name)
                    for name in ("input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok")
                    if getattr(o, name) is not None
                }
                try:
                    resolved = pricing.with_rates(resolved, provider=provider, model=model, **rates)
                except ValueError:
                    try:
                        resolved = pricing.with_rates(None, provider=provider, model=model, **rates)
                    except ValueError:  # a rate set that makes no price (saved before it was validated)
                        resolved = None
                        continue
                ref = f"override #{o.pk} rates"
            if o.discount_percent and resolved is not None:
                resolved = pricing.with_discount(resolved, Decimal(o.discount_percent))
                ref += f" -{o.discount_percent.normalize()}% (#{o.pk})"
        price = Price(resolved, ref.strip()[:160]) if resolved is not None else None
        self._memo[key] = price
        return price


def day_start_utc(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)
