"""Fast, exact LLM pricing on top of ``genai-prices`` (pure Python, no Django ORM).

``genai_prices.calc_price`` costs ~100 µs per call, far too slow for ingesting 100k+ events per second.
This module resolves the price ONCE per (provider, model, price period, request context) with
:func:`resolve_price` (memoised) and applies it to any number of records with plain ``Decimal`` arithmetic
in :func:`cost_of`, reproducing ``calc_price`` exactly (same formula, same order, same Decimal context).

How ``genai-prices`` 0.2.3 prices a call (read from its source; mirrored here):

* ``ModelInfo.get_prices(ts, ctx)`` picks the *last* ``ConditionalPrice`` whose constraint is active
  (``StartDateConstraint``: UTC date >= start; ``TimeOfDateConstraint``: daily UTC window) and then overlays
  ``price_variants`` whose ``when`` matches the context and whose constraint is active (first match wins
  per price key). If the model was found through a provider's ``fallback_model_providers`` (e.g. Azure ->
  OpenAI) the context is ignored entirely.
* Usage keys form a hierarchy (``input_tokens`` ⊃ ``cache_read_tokens`` ...). Only *priced* units are
  charged and each is charged on its "leaf" count: its own count minus the leaf counts of the more specific
  priced units below it. An unpriced part falls back into its parent (e.g. cache writes of a model without
  ``cache_write_mtok`` are charged at the input rate).
* ``TieredPrices`` is a cliff: when the call's ``input_tokens`` exceeds a tier start, the tier rate applies
  to ALL tokens of that unit (also output / cache units, still keyed on input tokens).
* ``requests_kcount`` is charged for exactly one request per ``calc_price`` call.

Ledger token convention (OpenAI / OpenTelemetry, identical to ``genai_prices.Usage``): ``input_tokens`` is
ALL input including cache reads and writes; ``cache_read_tokens`` / ``cache_write_tokens`` are parts of
it; ``cache_write_1h_tokens`` is the 1-hour-TTL part of ``cache_write_tokens``; ``output_tokens`` includes
``reasoning_tokens``; audio counts are parts of input / output.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final

from genai_prices import Usage
from genai_prices.data_snapshot import DataSnapshot, find_provider_by_id, get_snapshot
from genai_prices.data_units import unit_data
from genai_prices.types import (
    ModelInfo,
    ModelPrice,
    Provider,
    StartDateConstraint,
    Tier,
    TieredPrices,
    TimeOfDateConstraint,
)
from genai_prices.units import UnitDef, UnitRegistry
from genai_prices.validation import validate_priced_units

__all__ = [
    "CostBreakdown",
    "ResolvedPrice",
    "TokenCounts",
    "clear_caches",
    "cost_breakdown",
    "cost_of",
    "cost_of_counts",
    "normalise_model",
    "resolve_price",
    "to_usage",
    "with_discount",
    "with_rates",
]

Rate = Decimal | TieredPrices
Context = tuple[tuple[str, str], ...]

_ZERO: Final = Decimal(0)
_HUNDRED: Final = Decimal(100)
_REGISTRY: Final = UnitRegistry(unit_data)

# service_tier -> price_context entries. "standard"/"default"/"auto" are list price (genai-prices' own
# {"service_tier": "default"} variants are empty, so omitting the key prices identically).
_SERVICE_TIERS: Final[dict[str | None, Context]] = {
    None: (),
    "standard": (),
    "default": (),
    "auto": (),
    "flex": (("service_tier", "flex"),),
    "priority": (("service_tier", "priority"),),
    "fast": (("service_tier", "fast"),),
    "batch": (("processing", "batch"),),
}
_BATCH: Final[Context] = (("processing", "batch"),)


# --------------------------------------------------------------------------------------------------------
# Token counts
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """Counts for one call (``per_request=True``) or an aggregate bucket of calls (``per_request=False``).

    Parts must not exceed their wholes (``cache_read + cache_write <= input``, ``cache_write_1h <=
    cache_write``, ``reasoning <= output``, audio <= input / output); violations raise ``ValueError``.
    """

    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    web_searches: int = 0
    requests: int = 0

    def __post_init__(self) -> None:
        values = (
            self.input_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.cache_write_1h_tokens,
            self.output_tokens,
            self.reasoning_tokens,
            self.input_audio_tokens,
            self.output_audio_tokens,
            self.web_searches,
            self.requests,
        )
        for name, value in zip(_COUNT_FIELDS, values, strict=True):
            if type(value) is not int or value < 0:  # bool, float and Decimal are rejected on purpose
                raise ValueError(f"TokenCounts.{name} must be a non-negative int, got {value!r}")
        if (
            self.cache_read_tokens + self.cache_write_tokens > self.input_tokens
            or self.cache_write_1h_tokens > self.cache_write_tokens
            or self.reasoning_tokens > self.output_tokens
            or self.input_audio_tokens > self.input_tokens
            or self.output_audio_tokens > self.output_tokens
        ):
            raise ValueError(
                "TokenCounts parts exceed their totals (need cache_read + cache_write <= input, "
                f"cache_write_1h <= cache_write, reasoning <= output, audio <= input/output): {self!r}"
            )


_COUNT_FIELDS: Final = tuple(f.name for f in dataclasses.fields(TokenCounts))

# genai-prices usage keys we can feed from TokenCounts, in slot order (see _slot_values).
_SLOT_KEYS: Final = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "output_reasoning_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "web_searches",
)
_SLOT_INDEX: Final = {key: i for i, key in enumerate(_SLOT_KEYS)}


def _slot_values(c: TokenCounts) -> tuple[int, ...]:
    return (
        c.input_tokens,
        c.cache_read_tokens,
        c.cache_write_tokens,
        c.cache_write_tokens - c.cache_write_1h_tokens,
        c.cache_write_1h_tokens,
        c.output_tokens,
        c.reasoning_tokens,
        c.input_audio_tokens,
        c.output_audio_tokens,
        c.web_searches,
    )


def to_usage(counts: TokenCounts) -> Usage:
    """The ``genai_prices.Usage`` equivalent of ``counts`` (zero counts omitted; ``requests`` has no Usage key)."""
    return Usage(**{key: value for key, value in zip(_SLOT_KEYS, _slot_values(counts), strict=True) if value})


# --------------------------------------------------------------------------------------------------------
# Pricing plan: ModelPrice compiled into a few tuples so cost_of is a handful of Decimal operations
# --------------------------------------------------------------------------------------------------------

_IN, _OUT, _OTHER = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _Leaf:
    usage_key: str
    slot: int  # index into _slot_values, or -1 when TokenCounts cannot express this unit (inferred as 0)
    descendants: tuple[int, ...]  # indexes (into the leaf tuple) of more specific priced units
    # inferred units only: genai-prices' Usage raises when these reported slots are > 0 (single slots = a
    # more specific key was reported; pairs = two overlapping keys were reported)
    raise_if_any: tuple[int, ...] = ()
    raise_if_both: tuple[tuple[int, int], ...] = ()


# (leaf index or -1 for requests, per, direction, base rate, ((tier start, tier rate), ...) highest start first)
_Term = tuple[int, int, int, Decimal, tuple[tuple[int, Decimal], ...]]


@dataclass(frozen=True, slots=True)
class _Plan:
    leaves: tuple[_Leaf, ...]
    terms: tuple[_Term, ...]
    # The same terms with every rate as an integer number of 1e-12 USD per unit counted, or None when a rate does not
    # fit (see _integer_terms): lets cost_of_counts add integers instead of Decimals, with the same exact result.
    int_terms: tuple[tuple[int, int, tuple[tuple[int, int], ...]], ...] | None = None
    # int_terms and the leaves compiled into one function (slot values, cut, requests) -> int total or None
    int_fn: Any = field(default=None, compare=False, repr=False)


# cost_of_counts' integer path: amounts in units of 1e-12 USD. It applies only where the Decimal arithmetic is exact
# too (so both give the same value): rates with at most 6 decimals and below 1,000 USD per unit, per 1,000 or
# 1,000,000, counts at most 10**12. Then each Decimal term has at most 22 digits and the sum at most 26 (< 28).
_INT_EXP: Final = 12
_INT_MAX_COUNT: Final = 10**12
_INT_PERS: Final = frozenset((1_000, 1_000_000))


def _int_rate(rate: Decimal, per: int) -> int | None:
    if not isinstance(rate, Decimal) or not rate.is_finite() or rate < 0 or rate >= 1000:
        return None
    exponent = rate.as_tuple().exponent
    if not isinstance(exponent, int) or exponent < -6 or per not in _INT_PERS:
        return None
    return int(rate.scaleb(_INT_EXP) / per)  # exact: a whole number by the bounds above


def _integer_function(leaves: tuple[_Leaf, ...], int_terms):
    """_leaf_counts_or_none and the integer sum of int_terms as one generated function of (slot values, cut,
    requests): None where _leaf_counts_or_none is None. Generated from the plan's own tuples (no outside input)."""
    lines = [
        "def total(v, cut, n_requests):",
        f"    {', '.join(f'v{i}' for i in range(len(_SLOT_KEYS)))} = v",
    ]
    for i, leaf in enumerate(leaves):
        if leaf.slot < 0:
            for slot in leaf.raise_if_any:
                lines.append(f"    if v{slot} > 0: return None")
            for a, b in leaf.raise_if_both:
                lines.append(f"    if v{a} > 0 and v{b} > 0: return None")
        expr = f"v{leaf.slot}" if leaf.slot >= 0 else "0"
        expr += "".join(f" - l{d}" for d in leaf.descendants)
        lines.append(f"    l{i} = {expr}")
        lines.append(f"    if l{i} < 0: return None")
    parts = []
    for leaf, rate, tiers_desc in int_terms:
        rate_expr = str(rate)
        for start, tier_rate in reversed(tiers_desc):  # the first tier (highest start) that applies wins
            rate_expr = f"({tier_rate} if cut > {start} else {rate_expr})"
        parts.append(f"{'n_requests' if leaf < 0 else f'l{leaf}'} * {rate_expr}")
    lines.append(f"    return {' + '.join(parts) or '0'}")
    namespace: dict = {}
    exec(compile("\n".join(lines) + "\n", "<integer price>", "exec"), namespace)  # noqa: S102 - our own plan
    return namespace["total"]


def _integer_terms(terms: tuple[_Term, ...]):
    out = []
    for leaf, per, _direction, rate, tiers_desc in terms:
        base = _int_rate(rate, per)
        tiers = tuple((start, _int_rate(tier_rate, per)) for start, tier_rate in tiers_desc)
        if base is None or any(r is None for _s, r in tiers):
            return None
        out.append((leaf, base, tiers))
    return tuple(out)


def _compile(model_price: ModelPrice) -> _Plan:
    """Mirror ``ModelPrice.calc_price`` (types.py / decompose.py) for usage built from TokenCounts."""
    items: list[tuple[UnitDef, Rate]] = []
    for key, value in model_price.__dict__.items():
        if key.startswith("_") or value is None:
            continue
        try:
            unit = _REGISTRY.unit_for_price_key(key)
        except KeyError:
            continue  # calc_price warns and ignores unknown price keys
        if not isinstance(value, Decimal | TieredPrices):
            raise ValueError(f"Invalid price value for {key}: {value!r}")
        items.append((unit, value))
    validate_priced_units(tuple(unit for unit, _ in items), _REGISTRY)  # same ValueError as calc_price

    priced = sorted(
        (unit for unit, _ in items if unit.usage_key != "requests"),
        key=lambda unit: (-len(unit.dimensions), unit.usage_key),
    )
    slot_units = [_REGISTRY.units[key] for key in _SLOT_KEYS]
    leaves: list[_Leaf] = []
    for unit in priced:
        descendants = tuple(
            j for j, other in enumerate(priced) if other is not unit and _is_descendant_or_self(unit, other)
        )
        if unit.usage_key in _SLOT_INDEX:
            leaves.append(_Leaf(unit.usage_key, _SLOT_INDEX[unit.usage_key], descendants))
            continue
        # Usage._infer_missing_value: a missing key is 0 unless a more specific key (or a pair of overlapping
        # keys whose join is exactly this unit) was reported with a value > 0, in which case it raises.
        below = tuple(
            s for s, su in enumerate(slot_units) if su is not unit and _is_descendant_or_self(unit, su)
        )
        pairs = tuple(
            (a, b)
            for a in range(len(slot_units))
            for b in range(a + 1, len(slot_units))
            if slot_units[a].is_compatible_with(slot_units[b])
            and not _is_descendant_or_self(slot_units[a], slot_units[b])
            and not _is_descendant_or_self(slot_units[b], slot_units[a])
            and dict(unit.dimensions) == {**slot_units[a].dimensions, **slot_units[b].dimensions}
        )
        leaves.append(_Leaf(unit.usage_key, -1, descendants, below, pairs))

    leaf_index = {leaf.usage_key: i for i, leaf in enumerate(leaves)}
    terms: list[_Term] = []
    for unit, value in items:
        direction = {"input": _IN, "output": _OUT}.get(unit.dimensions.get("direction", ""), _OTHER)
        leaf = -1 if unit.usage_key == "requests" else leaf_index[unit.usage_key]
        if isinstance(value, TieredPrices):
            # calc_unit_price walks reversed(tiers sorted by start): keep that exact order, ties included
            tiers = sorted(((tier.start, tier.price) for tier in value.tiers), key=lambda t: t[0])
            terms.append((leaf, unit.per, direction, value.base, tuple(reversed(tiers))))
        else:
            terms.append((leaf, unit.per, direction, value, ()))
    int_terms = _integer_terms(tuple(terms))
    leaves_t = tuple(leaves)
    int_fn = _integer_function(leaves_t, int_terms) if int_terms is not None else None
    return _Plan(leaves_t, tuple(terms), int_terms, int_fn)


def _is_descendant_or_self(ancestor: UnitDef, descendant: UnitDef) -> bool:
    return ancestor.dimensions.items() <= descendant.dimensions.items()


# --------------------------------------------------------------------------------------------------------
# Resolved price
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedPrice:
    """The rates in force for one provider/model/price period/context; apply with :func:`cost_of`.

    ``context`` is the part of the requested price context that actually changed the rates (e.g.
    ``(("processing", "batch"),)``); it is ``()`` when list prices were used, e.g. batch requested before
    genai-prices has batch rates for the model, or ``context_ignored`` is true.
    ``[valid_from, valid_until)`` is an interval containing the resolution time in which these rates hold
    (``None`` = unbounded / unknown). ``requested_context`` is what the caller asked for.
    """

    provider_id: str
    model_id: str
    model_price: ModelPrice = field(hash=False)
    context: Context
    valid_from: datetime | None
    valid_until: datetime | None = None
    requested_context: Context = ()
    context_ignored: bool = (
        False  # genai-prices ignores price_context for fallback models (e.g. Azure -> OpenAI)
    )
    source: str = "genai-prices"  # "genai-prices" (list price) or "override" (with_rates)
    discounts: tuple[Decimal, ...] = ()  # percentages applied by with_discount, in order
    _plan: _Plan = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        # compiled once per resolved price (also after dataclasses.replace); raises ValueError for rate sets
        # genai-prices would reject
        object.__setattr__(self, "_plan", _compile(self.model_price))


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    input: Decimal
    output: Decimal
    total: Decimal  # input + output + direction-less units (web searches, requests)


def _leaf_counts(plan: _Plan, counts: TokenCounts) -> tuple[tuple[int, ...], list[int]]:
    """Slot values and the per-leaf counts genai-prices' ``compute_leaf_values`` would charge."""
    values = _slot_values(counts)
    leaf_counts: list[int] = []
    for leaf in plan.leaves:
        if leaf.slot >= 0:
            value = values[leaf.slot]
        else:
            value = 0
            if any(values[s] > 0 for s in leaf.raise_if_any) or any(
                values[a] > 0 and values[b] > 0 for a, b in leaf.raise_if_both
            ):
                raise ValueError(
                    f"Missing usage for {leaf.usage_key}: TokenCounts cannot say how much of the reported usage "
                    f"is {leaf.usage_key}, which this model prices separately (genai-prices raises too)"
                )
        for d in leaf.descendants:
            value -= leaf_counts[d]
        if value < 0:
            raise ValueError(f"Invalid usage data: more-specific usage exceeds {leaf.usage_key} ({counts})")
        leaf_counts.append(value)
    return values, leaf_counts


def _tier_cut(
    values: tuple[int, ...], counts: TokenCounts, context_window: str | None, per_request: bool
) -> tuple[int, int]:
    """(cut, requests): a tier applies when ``cut > tier.start``; requests is the request count to charge."""
    if per_request:
        if counts.requests > 1:
            raise ValueError("per_request=True prices ONE call; use per_request=False for aggregates")
        # cliff on this call's input_tokens (strict ">"), one request per call: exactly calc_price
        return values[0], 1
    # aggregate: tier only from the context-window group, floor >= start ("200k-1M" -> tier starting at 200k)
    floor = -1 if context_window is None else _context_window_floor(context_window)
    return floor + 1, counts.requests


def cost_breakdown(
    price: ResolvedPrice, counts: TokenCounts, *, context_window: str | None = None, per_request: bool = True
) -> CostBreakdown:
    """Like :func:`cost_of` but also split into input / output cost like ``PriceCalculation``."""
    plan = price._plan
    values, leaf_counts = _leaf_counts(plan, counts)
    cut, n_requests = _tier_cut(values, counts, context_window, per_request)
    inp = out = total = _ZERO
    for leaf, per, direction, rate, tiers_desc in plan.terms:
        count = n_requests if leaf < 0 else leaf_counts[leaf]
        if not count:
            continue
        for start, tier_rate in tiers_desc:
            if cut > start:
                rate = tier_rate
                break
        amount = rate * Decimal(count) / per
        total += amount
        if direction == _IN:
            inp += amount
        elif direction == _OUT:
            out += amount
    return CostBreakdown(inp, out, total)


def cost_of(
    price: ResolvedPrice, counts: TokenCounts, *, context_window: str | None = None, per_request: bool = True
) -> Decimal:
    """USD cost of ``counts`` at ``price`` as an exact Decimal (equal to ``calc_price(...).total_price``).

    per_request=True: ``counts`` is ONE call; tiered rates use genai-prices' cliff on this call's
    input_tokens and one request is charged for ``requests_kcount`` (identical to ``calc_price``);
    ``context_window`` is ignored.
    per_request=False: ``counts`` aggregates many calls; a tier is never chosen from the aggregate total.
    The base rate is used unless ``context_window`` (Anthropic style, e.g. ``"0-200k"`` / ``"200k-1M"``) has a
    lower bound >= a tier's start, in which case that tier's rate is used. ``counts.requests`` requests are
    charged.
    """
    plan = price._plan
    values, leaf_counts = _leaf_counts(plan, counts)
    cut, n_requests = _tier_cut(values, counts, context_window, per_request)
    return _total(plan, leaf_counts, cut, n_requests)


def _total(plan: _Plan, leaf_counts: list[int], cut: int, n_requests: int) -> Decimal:
    total = _ZERO
    for leaf, per, _direction, rate, tiers_desc in plan.terms:
        count = n_requests if leaf < 0 else leaf_counts[leaf]
        if not count:
            continue
        for start, tier_rate in tiers_desc:
            if cut > start:
                rate = tier_rate
                break
        total += rate * Decimal(count) / per
    return total


def cost_of_counts(
    price: ResolvedPrice,
    input_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
    cache_write_1h_tokens: int,
    output_tokens: int,
    reasoning_tokens: int,
    input_audio_tokens: int,
    output_audio_tokens: int,
    requests: int,
    *,
    context_window: str | None = None,
    per_request: bool = True,
) -> Decimal:
    """``cost_of(price, TokenCounts(...))`` without building the TokenCounts: the ingest hot path.

    The same value as :func:`cost_of` (compare with ==: the integer path's Decimal may carry more trailing zeros).
    Where every rate fits (the plan's ``int_terms``) the terms are added as integers of 1e-12 USD, exact like the
    Decimal arithmetic under the bounds checked in :func:`_integer_terms`. Counts that TokenCounts or
    :func:`cost_of` would refuse take that path, which raises the same ValueError.
    """
    if (
        type(input_tokens) is int
        and type(cache_read_tokens) is int
        and type(cache_write_tokens) is int
        and type(cache_write_1h_tokens) is int
        and type(output_tokens) is int
        and type(reasoning_tokens) is int
        and type(input_audio_tokens) is int
        and type(output_audio_tokens) is int
        and type(requests) is int
        and min(
            cache_read_tokens,
            cache_write_1h_tokens,
            reasoning_tokens,
            input_audio_tokens,
            output_audio_tokens,
            requests,
        )
        >= 0
        and cache_read_tokens + cache_write_tokens <= input_tokens
        and cache_write_1h_tokens <= cache_write_tokens
        and reasoning_tokens <= output_tokens
        and input_audio_tokens <= input_tokens
        and output_audio_tokens <= output_tokens
        and (requests <= 1 or not per_request)
    ):
        # (cache_write >= cache_write_1h >= 0, input >= cache_read + cache_write >= 0, output >= reasoning >= 0)
        plan = price._plan
        values = (
            input_tokens,
            cache_read_tokens,
            cache_write_tokens,
            cache_write_tokens - cache_write_1h_tokens,
            cache_write_1h_tokens,
            output_tokens,
            reasoning_tokens,
            input_audio_tokens,
            output_audio_tokens,
            0,
        )
        if per_request:
            cut, n_requests = input_tokens, 1
        else:
            cut = (-1 if context_window is None else _context_window_floor(context_window)) + 1
            n_requests = requests
        int_fn = plan.int_fn
        if int_fn is not None and max(input_tokens, output_tokens, n_requests) <= _INT_MAX_COUNT:
            total = int_fn(values, cut, n_requests)
            if total is not None:
                return Decimal(total).scaleb(-_INT_EXP)
        else:
            leaf_counts = _leaf_counts_or_none(plan, values)
            if leaf_counts is not None:
                return _total(plan, leaf_counts, cut, n_requests)
    counts = TokenCounts(
        input_tokens=input_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        cache_write_1h_tokens=cache_write_1h_tokens,
        output_tokens=output_tokens,
        reasoning_tokens=reasoning_tokens,
        input_audio_tokens=input_audio_tokens,
        output_audio_tokens=output_audio_tokens,
        requests=requests,
    )
    return cost_of(price, counts, context_window=context_window, per_request=per_request)


def _leaf_counts_or_none(plan: _Plan, values: tuple[int, ...]) -> list[int] | None:
    """:func:`_leaf_counts` for valid slot values; None where it would raise."""
    leaf_counts: list[int] = []
    for leaf in plan.leaves:
        if leaf.slot >= 0:
            value = values[leaf.slot]
        else:
            value = 0
            for s in leaf.raise_if_any:
                if values[s] > 0:
                    return None
            for a, b in leaf.raise_if_both:
                if values[a] > 0 and values[b] > 0:
                    return None
        for d in leaf.descendants:
            value -= leaf_counts[d]
        if value < 0:
            return None
        leaf_counts.append(value)
    return leaf_counts


_CW_RE: Final = re.compile(r"^\s*(?:(<=?)|>=?)?\s*(\d+(?:\.\d+)?)\s*([kKmM]?)")


@lru_cache(maxsize=256)
def _context_window_floor(context_window: str) -> int:
    """Lower bound in tokens of a context-window group: "200k-1M" -> 200000, "0-200k" -> 0, ">200k" -> 200000."""
    match = _CW_RE.match(context_window)
    if not match:
        raise ValueError(
            f"Unrecognised context_window {context_window!r} (expected e.g. '0-200k' or '200k-1M')"
        )
    if match.group(1):  # "<200k": everything below
        return 0
    multiplier = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(3).lower()]
    return int(Decimal(match.group(2)) * multiplier)


# --------------------------------------------------------------------------------------------------------
# Model lookup / normalisation
# --------------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _ModelEntry:
    """A (billing provider, ModelInfo) pair plus its price schedule; hashed by identity."""

    provider: Provider
    model: ModelInfo
    context_ignored: bool
    schedules: dict[Context, tuple[tuple[date, ...], tuple[time, ...]]] = field(default_factory=dict)

    def schedule(self, ctx: Context) -> tuple[tuple[date, ...], tuple[time, ...]]:
        """Sorted start dates and UTC time-of-day boundaries at which the rates for ``ctx`` can change."""
        found = self.schedules.get(ctx)
        if found is None:
            constraints: list[object] = []
            if not isinstance(self.model.prices, ModelPrice):
                constraints.extend(cp.constraint for cp in self.model.prices)
            if ctx:
                ctx_map = dict(ctx)
                constraints.extend(
                    variant.constraint
                    for variant in self.model.price_variants or ()
                    if all(ctx_map.get(k) == v for k, v in variant.when.items())
                )
            dates = sorted({c.start_date for c in constraints if isinstance(c, StartDateConstraint)})
            times: set[time] = set()
            for c in constraints:
                if isinstance(c, TimeOfDateConstraint):
                    times.add(_utc_naive_time(c.start_time))
                    times.add(_utc_naive_time(c.end_time))
            times.discard(time(0))
            found = self.schedules[ctx] = (tuple(dates), tuple(sorted(times)))
        return found


def _utc_naive_time(value: time) -> time:
    if value.tzinfo is not None:
        value = datetime.combine(date(1970, 1, 1), value).astimezone(UTC).timetz()
    return value.replace(tzinfo=None)


class _State:
    lock = threading.Lock()
    snapshot: DataSnapshot | None = None
    entries: dict[tuple[str, int], _ModelEntry] = {}
    resolved: dict[tuple[Any, ...], ResolvedPrice] = {}


_RESOLVED_MAX: Final = 100_000


def clear_caches() -> None:
    """Forget every memoised lookup and price (done automatically when genai-prices' snapshot changes)."""
    with _State.lock:
        _lookup.cache_clear()
        _State.entries = {}
        _State.resolved = {}
        _State.snapshot = get_snapshot()


def _current_snapshot() -> DataSnapshot:
    snapshot = get_snapshot()
    if snapshot is not _State.snapshot:  # UpdatePrices / set_custom_snapshot swapped the data
        clear_caches()
        snapshot = _State.snapshot or snapshot
    return snapshot


@lru_cache(maxsize=65_536)
def _lookup(provider: str, model_raw: str) -> _ModelEntry | None:
    snapshot = _State.snapshot or get_snapshot()
    if not isinstance(provider, str) or not isinstance(model_raw, str):
        return None
    p, m = provider.strip().lower(), model_raw.strip().lower()
    if not p or not m:
        return None
    try:
        found = snapshot.find_provider_model(m, None, p, None)
    except LookupError:
        found = None
        if "/" in m:  # "openai/gpt-4.1" asked of openai, "models/gemini-2.5-pro" asked of google
            try:
                prov = snapshot.find_provider(None, p, None)
            except LookupError:
                return None
            segments = m.split("/")
            while len(segments) > 1 and (
                segments[0] in ("models", "publishers")
                or find_provider_by_id(snapshot.providers, segments[0]) is prov
            ):
                segments.pop(0)
                try:
                    found = snapshot.find_provider_model("/".join(segments), None, p, None)
                    break
                except LookupError:
                    continue
    if found is None:
        return None
    prov, info = found
    key = (prov.id, id(info))
    with _State.lock:
        entry = _State.entries.get(key)
        if entry is None:
            # ModelInfo.calc_price ignores price_context when the model came from a fallback provider
            ignored = not any(info is candidate for candidate in prov.models)
            entry = _State.entries[key] = _ModelEntry(prov, info, ignored)
    return entry


def normalise_model(provider: str, model_raw: str) -> tuple[str, str] | None:
    """(provider_id, canonical model_id) as genai-prices knows them, or None if unknown.

    Handles dated refs (gpt-4o-mini-2024-07-18, claude-sonnet-4-5-20250929), OpenRouter slugs
    (``normalise_model("openrouter", "openai/gpt-4.1")``; a slug whose prefix names the provider itself, e.g.
    ``("openai", "openai/gpt-4.1")``, is stripped), case and surrounding whitespace.
    """
    _current_snapshot()
    entry = _lookup(provider, model_raw)
    return None if entry is None else (entry.provider.id, entry.model.id)


# --------------------------------------------------------------------------------------------------------
# resolve_price
# --------------------------------------------------------------------------------------------------------


def _context_for(service_tier: str | None, batch: bool) -> Context:
    try:
        ctx = _SERVICE_TIERS[service_tier.strip().lower() if isinstance(service_tier, str) else service_tier]
    except KeyError:
        raise ValueError(
            f"Unknown service_tier {service_tier!r}; expected one of {sorted(k for k in _SERVICE_TIERS if k)}"
        ) from None
    if batch and ctx != _BATCH:
        ctx = tuple(sorted({*ctx, *_BATCH}))
    return ctx


def resolve_price(
    *, provider: str, model: str, at: datetime, service_tier: str | None = None, batch: bool = False
) -> ResolvedPrice | None:
    """Price in force at ``at`` (aware datetime) for ``model`` billed by ``provider``; None if unknown.

    ``service_tier`` in {None, "standard", "default", "auto", "flex", "priority", "fast", "batch"} (other values
    raise ValueError); ``batch=True`` or ``service_tier="batch"`` selects genai-prices' processing=batch rates.
    Where genai-prices has no rate for the context at that date it silently uses list price (then
    ``ResolvedPrice.context == ()``). Memoised per (provider, model, price period, context): repeated calls for the
    same model and period return the same object.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("resolve_price needs an aware datetime (genai-prices would read a naive one as UTC)")
    _current_snapshot()
    entry = _lookup(provider, model)
    if entry is None:
        return None
    requested = _context_for(service_tier, batch)
    ctx = () if entry.context_ignored else requested
    dates, times = entry.schedule(ctx)
    at_utc = at.astimezone(UTC)
    day = at_utc.date()
    period = bisect_right(dates, day)
    if times:
        key: tuple[Any, ...] = (entry, ctx, requested, period, day, bisect_right(times, at_utc.time()))
    else:
        key = (entry, ctx, requested, period)
    resolved = _State.resolved.get(key)
    if resolved is None:
        resolved = _resolve(entry, ctx, requested, at_utc, dates, times)
        with _State.lock:
            if len(_State.resolved) >= _RESOLVED_MAX:
                _State.resolved.clear()
            resolved = _State.resolved.setdefault(key, resolved)
    return resolved


def _resolve(
    entry: _ModelEntry,
    ctx: Context,
    requested: Context,
    at_utc: datetime,
    dates: tuple[date, ...],
    times: tuple[time, ...],
) -> ResolvedPrice:
    model = entry.model
    model_price = model.get_prices(at_utc, dict(ctx) if ctx else None)

    # which requested context entries actually changed a rate
    used: set[tuple[str, str]] = set()
    if ctx:
        ctx_map = dict(ctx)
        for variant in model.price_variants or ():
            if variant.constraint is not None and not variant.constraint.active(at_utc):
                continue
            if all(ctx_map.get(k) == v for k, v in variant.when.items()) and any(
                v is not None for v in variant.prices.__dict__.values()
            ):
                used.update(variant.when.items())

    day = at_utc.date()
    i = bisect_right(dates, day)
    valid_from = datetime.combine(dates[i - 1], time(0), UTC) if i > 0 else None
    valid_until = datetime.combine(dates[i], time(0), UTC) if i < len(dates) else None
    if times:
        j = bisect_right(times, at_utc.time())
        slot_start = datetime.combine(day, times[j - 1] if j > 0 else time(0), UTC)
        slot_end = (
            datetime.combine(day, times[j], UTC)
            if j < len(times)
            else datetime.combine(day + timedelta(days=1), time(0), UTC)
        )
        valid_from = slot_start if valid_from is None else max(valid_from, slot_start)
        valid_until = slot_end if valid_until is None else min(valid_until, slot_end)

    return ResolvedPrice(
        provider_id=entry.provider.id,
        model_id=model.id,
        model_price=model_price,
        context=tuple(sorted(used)),
        valid_from=valid_from,
        valid_until=valid_until,
        requested_context=requested,
        context_ignored=entry.context_ignored and bool(requested),
    )


# --------------------------------------------------------------------------------------------------------
# Negotiated prices
# --------------------------------------------------------------------------------------------------------


def _scale(rate: Rate, factor: Decimal) -> Rate:
    if isinstance(rate, TieredPrices):
        return TieredPrices(
            base=rate.base * factor, tiers=[Tier(t.start, t.price * factor) for t in rate.tiers]
        )
    return rate * factor


def _rates(model_price: ModelPrice) -> dict[str, Rate]:
    return {k: v for k, v in model_price.__dict__.items() if not k.startswith("_") and v is not None}


def with_discount(price: ResolvedPrice, percent: Decimal) -> ResolvedPrice:
    """Negotiated discount: every rate (tiers included) multiplied by ``1 - percent/100`` (0 <= percent <= 100)."""
    if isinstance(percent, int) and not isinstance(percent, bool):
        percent = Decimal(percent)
    if not isinstance(percent, Decimal) or not percent.is_finite() or not _ZERO <= percent <= _HUNDRED:
        raise ValueError(f"percent must be a Decimal between 0 and 100, got {percent!r}")
    factor = 1 - percent / _HUNDRED
    new_price = ModelPrice(**{k: _scale(v, factor) for k, v in _rates(price.model_price).items()})
    return dataclasses.replace(price, model_price=new_price, discounts=(*price.discounts, percent))


def _check_rate(name: str, value: object) -> Rate:
    if isinstance(value, int) and not isinstance(value, bool):
        value = Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite() or value < 0:
            raise ValueError(f"{name} must be a finite non-negative Decimal, got {value!r}")
        return value
    if isinstance(value, TieredPrices):
        for rate in (value.base, *(t.price for t in value.tiers)):
            _check_rate(name, rate)
        return value
    raise TypeError(f"{name} must be a Decimal (or TieredPrices), not {type(value).__name__}: {value!r}")


def with_rates(
    price: ResolvedPrice | None,
    *,
    provider: str,
    model: str,
    input_mtok: Rate | None = None,
    cache_read_mtok: Rate | None = None,
    cache_write_mtok: Rate | None = None,
    cache_write_1h_mtok: Rate | None = None,
    output_mtok: Rate | None = None,
    output_reasoning_mtok: Rate | None = None,
    input_audio_mtok: Rate | None = None,
    output_audio_mtok: Rate | None = None,
    web_searches_kcount: Rate | None = None,
    requests_kcount: Rate | None = None,
) -> ResolvedPrice:
    """Explicit negotiated prices (USD per million tokens / per thousand searches or requests).

    With ``price`` (the list price from :func:`resolve_price`) the given rates replace the matching list rates and
    the others are kept; ``provider``/``model`` must name the same model. With ``price=None`` only the given
    rates exist (for models genai-prices does not know, e.g. self-hosted): as in genai-prices, a token class
    without its own rate is charged at its parent's rate (cache reads at ``input_mtok`` if no
    ``cache_read_mtok``). Raises ValueError for rate sets genai-prices would reject (e.g. a cache rate
    without ``input_mtok``).
    """
    given = {
        "input_mtok": input_mtok,
        "cache_read_mtok": cache_read_mtok,
        "cache_write_mtok": cache_write_mtok,
        "cache_write_1h_mtok": cache_write_1h_mtok,
        "output_mtok": output_mtok,
        "output_reasoning_mtok": output_reasoning_mtok,
        "input_audio_mtok": input_audio_mtok,
        "output_audio_mtok": output_audio_mtok,
        "web_searches_kcount": web_searches_kcount,
        "requests_kcount": requests_kcount,
    }
    overrides = {k: _check_rate(k, v) for k, v in given.items() if v is not None}
    ids = normalise_model(provider, model) or (provider.strip().lower(), model.strip().lower())
    if price is None:
        if not overrides:
            raise ValueError("with_rates(None, ...) needs at least one rate")
        new_price = ModelPrice(**overrides)
        return ResolvedPrice(
            provider_id=ids[0],
            model_id=ids[1],
            model_price=new_price,
            context=(),
            valid_from=None,
            source="override",
        )
    if ids != (price.provider_id, price.model_id):
        raise ValueError(
            f"{provider}/{model} is not the model of this price ({price.provider_id}/{price.model_id})"
        )
    new_price = ModelPrice(**{**_rates(price.model_price), **overrides})
    return dataclasses.replace(price, model_price=new_price, source="override")
