from datetime import UTC, date, datetime, time
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.audit import services as audit
from apps.catalog import pricing
from apps.catalog.models import PriceOverride
from spendctl.common.queue import enqueue

RATE_FIELDS = ("input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok")
OVERRIDE_FIELDS = (
    "provider",
    "model",
    "discount_percent",
    *RATE_FIELDS,
    "effective_from",
    "effective_to",
    "note",
)


def _label(o: PriceOverride) -> str:
    return f"{o.provider}/{o.model or '*'} from {o.effective_from}"


def _validate(o: PriceOverride):
    errors = {}
    has_rates = any(getattr(o, f) is not None for f in RATE_FIELDS)
    if not has_rates and o.discount_percent is None:
        errors["discount_percent"] = ["Give a discount percentage or explicit prices."]
    if has_rates and not o.model:
        errors["model"] = ["Explicit prices need a model; use a discount for a whole provider."]
    if o.discount_percent is not None and not (Decimal(0) < o.discount_percent <= Decimal(100)):
        errors["discount_percent"] = ["Use a percentage above 0 and at most 100."]
    for f in RATE_FIELDS:
        value = getattr(o, f)
        if value is not None and value < 0:
            errors[f] = ["A price cannot be negative."]
    if o.effective_to is not None and o.effective_to <= o.effective_from:
        errors["effective_to"] = ["The end must be after the start."]
    if not errors and has_rates and o.model:
        _validate_rates(o)
    if errors:
        raise ValidationError(errors)


def _validate_rates(o: PriceOverride) -> None:
    """The rates must make a price the way the price book will combine them: over the catalog's list price, or on
    their own for a model it does not price (then cache prices need an input price to hang from, as in
    genai-prices). Found by the API fuzzing run: a cache-write price alone for an unknown model was a 500 on every
    later price lookup."""
    rates = {f: getattr(o, f) for f in RATE_FIELDS if getattr(o, f) is not None}
    at = datetime.combine(o.effective_from, time.min, tzinfo=UTC)
    try:
        listed = pricing.resolve_price(provider=o.provider, model=o.model, at=at)
    except ValueError:
        listed = None
    for base in (listed, None) if listed is not None else (None,):
        try:
            pricing.with_rates(base, provider=o.provider, model=o.model, **rates)
            return
        except ValueError:
            continue
    raise ValidationError(
        {
            "input_mtok": [
                "The catalog has no price for this model, so give an input price: cache prices are charged "
                "relative to it."
            ]
        }
    )


@transaction.atomic
def override_create(*, org, provider: str, effective_from: date, model: str = "", **fields) -> PriceOverride:
    from apps.usage.tasks import usage_price_unpriced

    o = PriceOverride(
        org=org,
        provider=provider.strip().lower(),
        model=model.strip(),
        effective_from=effective_from,
        **fields,
    )
    _validate(o)
    o.full_clean()
    o.save()
    audit.record(
        org=org,
        action="price_override.created",
        target=o,
        target_label=_label(o),
        changes=audit.created(audit.snapshot(o, OVERRIDE_FIELDS)),
    )
    # A model that gets a price here prices its unpriced usage automatically.
    transaction.on_commit(lambda: enqueue(usage_price_unpriced, org.pk))
    return o


@transaction.atomic
def override_update(*, override: PriceOverride, **fields) -> PriceOverride:
    from apps.usage.tasks import usage_price_unpriced

    before = audit.snapshot(override, OVERRIDE_FIELDS)
    for name, value in fields.items():
        setattr(override, name, value)
    _validate(override)
    override.full_clean()
    override.save()
    changes = audit.diff(before, audit.snapshot(override, OVERRIDE_FIELDS))
    if changes:
        audit.record(
            org=override.org,
            action="price_override.updated",
            target=override,
            target_label=_label(override),
            changes=changes,
        )
    transaction.on_commit(lambda: enqueue(usage_price_unpriced, override.org_id))
    return override


@transaction.atomic
def override_delete(*, override: PriceOverride) -> None:
    audit.record(
        org=override.org,
        action="price_override.deleted",
        target=override,
        target_label=_label(override),
        changes=audit.deleted(audit.snapshot(override, OVERRIDE_FIELDS)),
    )
    override.delete()
