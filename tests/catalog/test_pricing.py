"""apps.catalog.pricing must reproduce genai_prices.calc_price exactly (Decimal ==, no quantising).

Every comparison below is exact ``Decimal`` equality against ``calc_price(...)`` (input, output and total).
No database is used.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot

from apps.catalog.pricing import (
    ResolvedPrice,
    TokenCounts,
    cost_breakdown,
    cost_of,
    normalise_model,
    resolve_price,
    to_usage,
    with_discount,
    with_rates,
)

M = 1_000_000


def ts(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def spec_usage(c: TokenCounts) -> Usage:
    """Ledger row -> genai_prices.Usage, written out from SPEC 5.1 independently of the module."""
    kwargs = {
        "input_tokens": c.input_tokens,
        "cache_read_tokens": c.cache_read_tokens,
        "cache_write_tokens": c.cache_write_tokens,
        "cache_write_5m_tokens": c.cache_write_tokens - c.cache_write_1h_tokens,
        "cache_write_1h_tokens": c.cache_write_1h_tokens,
        "output_tokens": c.output_tokens,
        "output_reasoning_tokens": c.reasoning_tokens,
        "input_audio_tokens": c.input_audio_tokens,
        "output_audio_tokens": c.output_audio_tokens,
        "web_searches": c.web_searches,
    }
    return Usage(**{k: v for k, v in kwargs.items() if v})


def reference(provider: str, model: str, at: datetime, c: TokenCounts, ctx: dict[str, str] | None = None):
    return calc_price(
        spec_usage(c), model, provider_id=provider, genai_request_timestamp=at, price_context=ctx or None
    )


def ctx_of(service_tier: str | None, batch: bool) -> dict[str, str]:
    ctx: dict[str, str] = {}
    if service_tier in ("flex", "priority", "fast"):
        ctx["service_tier"] = service_tier
    if batch or service_tier == "batch":
        ctx["processing"] = "batch"
    return ctx


CACHED = TokenCounts(input_tokens=120_000, cache_read_tokens=80_000, output_tokens=3_000)
ANTHROPIC_FULL = TokenCounts(
    input_tokens=180_000,
    cache_read_tokens=100_000,
    cache_write_tokens=40_000,
    cache_write_1h_tokens=15_000,
    output_tokens=4_000,
    web_searches=3,
)
REASONING = TokenCounts(
    input_tokens=50_000,
    cache_read_tokens=20_000,
    output_tokens=30_000,
    reasoning_tokens=25_000,
    web_searches=2,
)
AUDIO = TokenCounts(
    input_tokens=9_000, input_audio_tokens=6_000, output_tokens=7_000, output_audio_tokens=5_000
)
LONG = TokenCounts(
    input_tokens=250_000, cache_read_tokens=50_000, cache_write_tokens=10_000, output_tokens=2_000
)

NOV = ts(2026, 11, 20, 12)

CASES = [
    # provider, model ref, at, counts, service_tier, batch
    ("openai", "gpt-4o-mini-2024-07-18", ts(2025, 1, 15, 12), CACHED, None, False),
    ("openai", "gpt-5-mini", ts(2025, 9, 1, 12), REASONING, None, False),
    ("openai", "o3", ts(2025, 6, 9, 12), REASONING, None, False),  # before the 2025-06-10 price cut
    ("openai", "o3", ts(2025, 6, 10, 12), REASONING, None, False),  # after it
    ("openai", "gpt-audio", ts(2026, 1, 5, 12), AUDIO, None, False),  # audio priced separately
    ("openai", "gpt-4o-audio-preview", ts(2025, 3, 1, 12), AUDIO, None, False),  # audio at text rate
    ("openai", "gpt-realtime", ts(2026, 2, 1, 12), AUDIO, None, False),
    ("openai", "gpt-5-mini", NOV, REASONING, "flex", False),
    ("openai", "gpt-5-mini", NOV, REASONING, "priority", False),
    ("openai", "gpt-5-mini", NOV, REASONING, None, True),
    ("openai", "gpt-4o-mini", NOV, CACHED, "batch", False),
    ("openai", "gpt-5.6-luna", NOV, LONG, "flex", False),  # tiered (272k) + flex
    ("anthropic", "claude-sonnet-4-5-20250929", ts(2025, 11, 3, 9), ANTHROPIC_FULL, None, False),
    ("anthropic", "claude-sonnet-4-5", ts(2025, 11, 3, 9), LONG, None, False),
    ("anthropic", "claude-haiku-4-5", NOV, ANTHROPIC_FULL, None, True),
    ("anthropic", "claude-opus-4-6", ts(2026, 3, 12, 12), LONG, None, False),
    ("anthropic", "claude-opus-4-6", ts(2026, 3, 13, 12), LONG, None, False),
    ("google", "gemini-2.5-pro", ts(2025, 8, 1), CACHED, None, False),
    ("google", "gemini-2.5-pro", ts(2025, 8, 1), LONG, None, False),
    ("google", "gemini-2.5-pro", NOV, LONG, None, True),
    ("google", "gemini-2.5-flash", ts(2025, 8, 1), AUDIO, None, False),
    ("google", "claude-sonnet-4-5", ts(2025, 11, 3), ANTHROPIC_FULL, None, False),
    ("openrouter", "openai/gpt-4.1", ts(2025, 7, 1), CACHED, None, False),
    ("openrouter", "anthropic/claude-sonnet-4.5", ts(2025, 11, 3), LONG, None, False),
    ("deepseek", "deepseek-chat", ts(2025, 5, 1, 12), CACHED, None, False),  # standard hours
    ("deepseek", "deepseek-chat", ts(2025, 5, 1, 20), CACHED, None, False),  # off-peak
    ("deepseek", "deepseek-v4-flash", ts(2026, 8, 16, 12), CACHED, None, False),
    ("deepseek", "deepseek-v4-flash", ts(2026, 8, 17, 12), CACHED, None, False),
    ("deepseek", "deepseek-v4-flash", ts(2026, 9, 10, 12), CACHED, None, False),
    ("deepseek", "deepseek-v4-flash", ts(2026, 9, 10, 2), CACHED, None, False),  # time-of-day window
    ("azure", "gpt-4o", NOV, CACHED, "priority", True),  # fallback model: genai-prices ignores the context
    ("mistral", "mistral-large-latest", ts(2025, 4, 1), CACHED, None, False),
    ("x-ai", "grok-4", ts(2025, 9, 1), CACHED, None, False),
]


@pytest.mark.parametrize(("provider", "model", "at", "counts", "service_tier", "batch"), CASES)
def test_cost_equals_calc_price_exactly(provider, model, at, counts, service_tier, batch):
    price = resolve_price(provider=provider, model=model, at=at, service_tier=service_tier, batch=batch)
    assert price is not None
    expected = reference(provider, model, at, counts, ctx_of(service_tier, batch))
    assert expected.total_price > 0
    assert cost_of(price, counts) == expected.total_price
    parts = cost_breakdown(price, counts)
    assert (parts.input, parts.output, parts.total) == (
        expected.input_price,
        expected.output_price,
        expected.total_price,
    )
    assert price.model_price == expected.model_price
    assert price.model_id == expected.model.id
    assert price.provider_id == expected.provider.id


def test_module_usage_mapping_matches_spec_mapping():
    for counts in (CACHED, ANTHROPIC_FULL, REASONING, AUDIO, LONG):
        assert to_usage(counts) == spec_usage(counts)


def test_every_token_class_is_charged_at_its_own_rate():
    # claude-sonnet-4-5 list: input 3, cache read 0.3, cache write (5m) 3.75, 1h write 6, output 15, search $10/k
    price = resolve_price(provider="anthropic", model="claude-sonnet-4-5", at=ts(2025, 11, 3))
    c = ANTHROPIC_FULL  # 40k uncached, 100k read, 25k 5m write, 15k 1h write, 4k out, 3 searches
    expected = (
        (Decimal(40_000) * 3 + Decimal(100_000) * Decimal("0.3") + Decimal(25_000) * Decimal("3.75")) / M
        + (Decimal(15_000) * 6 + Decimal(4_000) * 15) / M
        + Decimal(3) * 10 / 1000
    )
    assert cost_of(price, c) == expected == Decimal("0.42375")
    # reasoning: gpt-5-mini has no separate reasoning rate, so reasoning is output (2/M)
    gpt = resolve_price(provider="openai", model="gpt-5-mini", at=ts(2025, 9, 1))
    assert cost_of(gpt, TokenCounts(output_tokens=M, reasoning_tokens=M)) == Decimal(2)
    # audio: gpt-audio input audio 32/M vs text 2.5/M, output audio 64/M vs text 10/M
    audio = resolve_price(provider="openai", model="gpt-audio", at=ts(2026, 1, 5))
    assert (
        cost_of(audio, AUDIO)
        == (Decimal(3_000) * Decimal("2.5") + Decimal(6_000) * 32 + Decimal(2_000) * 10 + Decimal(5_000) * 64)
        / M
    )


def test_ambiguous_cached_audio_raises_like_calc_price():
    # gpt-realtime prices cached audio separately; cached + audio input cannot be split -> both raise
    c = TokenCounts(input_tokens=9_000, cache_read_tokens=1_000, input_audio_tokens=6_000, output_tokens=10)
    price = resolve_price(provider="openai", model="gpt-realtime", at=ts(2026, 2, 1))
    with pytest.raises(ValueError, match="cache_audio_read_tokens"):
        reference("openai", "gpt-realtime", ts(2026, 2, 1), c)
    with pytest.raises(ValueError, match="cache_audio_read_tokens"):
        cost_of(price, c)


# ---- batch and service tiers ---------------------------------------------------------------------------

ONE_M_EACH = TokenCounts(input_tokens=M, output_tokens=M)


@pytest.mark.parametrize(
    ("at", "service_tier", "batch", "expected_cost", "expected_ctx"),
    [
        (ts(2026, 10, 11, 23, 59), "flex", False, Decimal("2.25"), ()),  # flex rates not yet in force
        (ts(2026, 10, 11, 23, 59), "priority", False, Decimal("2.25"), ()),
        (ts(2026, 10, 12), "flex", False, Decimal("1.125"), (("service_tier", "flex"),)),
        (ts(2026, 10, 12), "priority", False, Decimal("4.05"), (("service_tier", "priority"),)),
        (ts(2026, 10, 12), "default", False, Decimal("2.25"), ()),
        (ts(2026, 10, 12), "auto", False, Decimal("2.25"), ()),
        (ts(2026, 10, 13, 12), None, True, Decimal("2.25"), ()),  # batch rates from 2026-10-14
        (ts(2026, 10, 14), None, True, Decimal("1.125"), (("processing", "batch"),)),
        (ts(2026, 10, 14), "batch", False, Decimal("1.125"), (("processing", "batch"),)),
    ],
)
def test_openai_service_tiers_and_batch_by_date(at, service_tier, batch, expected_cost, expected_ctx):
    price = resolve_price(
        provider="openai", model="gpt-5-mini", at=at, service_tier=service_tier, batch=batch
    )
    assert cost_of(price, ONE_M_EACH) == expected_cost
    assert (
        cost_of(price, ONE_M_EACH)
        == reference("openai", "gpt-5-mini", at, ONE_M_EACH, ctx_of(service_tier, batch)).total_price
    )
    assert price.context == expected_ctx


def test_anthropic_batch_halves_rates_from_2026_10_14_only():
    c = ANTHROPIC_FULL
    before = resolve_price(provider="anthropic", model="claude-haiku-4-5", at=ts(2026, 10, 13), batch=True)
    after = resolve_price(provider="anthropic", model="claude-haiku-4-5", at=ts(2026, 10, 14), batch=True)
    standard = resolve_price(provider="anthropic", model="claude-haiku-4-5", at=ts(2026, 10, 14))
    assert cost_of(before, c) == cost_of(standard, c)
    search_cost = Decimal(3) * 10 / 1000  # web search has no batch rate
    assert cost_of(after, c) - search_cost == (cost_of(standard, c) - search_cost) / 2
    assert (
        cost_of(after, c)
        == reference("anthropic", "claude-haiku-4-5", ts(2026, 10, 14), c, ctx_of(None, True)).total_price
    )
    assert after.valid_from == ts(2026, 10, 14)
    assert before.context == () and after.context == (("processing", "batch"),)


def test_fallback_model_ignores_context_like_calc_price():
    # azure serves gpt-4o from openai's list; genai-prices then ignores price_context entirely
    price = resolve_price(provider="azure", model="gpt-4o", at=NOV, batch=True)
    standard = resolve_price(provider="azure", model="gpt-4o", at=NOV)
    assert price.context_ignored is True and price.context == ()
    assert cost_of(price, CACHED) == cost_of(standard, CACHED)
    assert (
        cost_of(price, CACHED)
        == reference("azure", "gpt-4o", NOV, CACHED, {"processing": "batch"}).total_price
    )
    openai_batch = resolve_price(provider="openai", model="gpt-4o", at=NOV, batch=True)
    assert cost_of(openai_batch, CACHED) < cost_of(price, CACHED)


# ---- historical price changes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "input_rate", "valid_from"),
    [
        (ts(2026, 8, 16, 12), Decimal("0.14"), ts(2026, 8, 16, 10)),
        (ts(2026, 8, 17, 12), Decimal("0.22"), ts(2026, 8, 17, 10)),  # slot after the 06-10 UTC window
        (ts(2026, 9, 9, 23), Decimal("0.22"), ts(2026, 9, 9, 10)),
        (ts(2026, 9, 10, 12), Decimal("0.15"), ts(2026, 9, 10, 10)),
        (ts(2026, 7, 1, 2), Decimal("0.3"), ts(2026, 7, 1, 1)),  # 01-04 UTC window applies on any date
    ],
)
def test_deepseek_v4_flash_price_history(at, input_rate, valid_from):
    price = resolve_price(provider="deepseek", model="deepseek-v4-flash", at=at)
    assert price.model_price.input_mtok == input_rate
    c = TokenCounts(input_tokens=M)
    assert cost_of(price, c) == input_rate == reference("deepseek", "deepseek-v4-flash", at, c).total_price
    # a time-of-day priced model: the period is the UTC slot of that day, bounded by the date changes
    assert price.valid_from == valid_from
    assert price.valid_from <= at < price.valid_until


def test_claude_opus_4_6_drops_long_context_tier_on_2026_03_13():
    c = TokenCounts(input_tokens=250_000)
    before = resolve_price(provider="anthropic", model="claude-opus-4-6", at=ts(2026, 3, 12, 23, 59))
    after = resolve_price(provider="anthropic", model="claude-opus-4-6", at=ts(2026, 3, 13))
    assert cost_of(before, c) == Decimal("2.5")  # 250k * $10 tier rate (cliff)
    assert cost_of(after, c) == Decimal("1.25")  # 250k * $5 flat
    assert after.valid_from == ts(2026, 3, 13) and before.valid_until == ts(2026, 3, 13)
    for price, at in ((before, ts(2026, 3, 12, 23, 59)), (after, ts(2026, 3, 13))):
        assert cost_of(price, c) == reference("anthropic", "claude-opus-4-6", at, c).total_price


def test_timezone_of_at_is_respected():
    # 2026-03-13 00:30 in +02:00 is still 2026-03-12 in UTC -> old (tiered) price
    at = datetime(2026, 3, 13, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    price = resolve_price(provider="anthropic", model="claude-opus-4-6", at=at)
    c = TokenCounts(input_tokens=250_000)
    assert cost_of(price, c) == Decimal("2.5") == reference("anthropic", "claude-opus-4-6", at, c).total_price


# ---- tiers ----------------------------------------------------------------------------------------------


def test_single_long_call_uses_cliff_like_calc_price():
    at = ts(2025, 11, 3)
    price = resolve_price(provider="anthropic", model="claude-sonnet-4-5", at=at)
    long_call = TokenCounts(input_tokens=250_000, output_tokens=1_000)
    short_call = TokenCounts(input_tokens=150_000, output_tokens=1_000)
    assert (
        cost_of(price, long_call)
        == Decimal("1.5225")
        == reference("anthropic", "claude-sonnet-4-5", at, long_call).total_price
    )
    assert (
        cost_of(price, short_call)
        == Decimal("0.465")
        == reference("anthropic", "claude-sonnet-4-5", at, short_call).total_price
    )
    edge = TokenCounts(input_tokens=200_000)  # cliff is strictly above the tier start
    assert (
        cost_of(price, edge)
        == Decimal("0.6")
        == reference("anthropic", "claude-sonnet-4-5", at, edge).total_price
    )


def test_aggregate_bucket_never_tiers_from_its_total():
    at = ts(2025, 11, 3)
    price = resolve_price(provider="anthropic", model="claude-sonnet-4-5", at=at)
    one = TokenCounts(input_tokens=150_000, output_tokens=1_000)
    bucket = TokenCounts(input_tokens=1_500_000, output_tokens=10_000, requests=10)  # 10 x 150k calls
    per_call = reference("anthropic", "claude-sonnet-4-5", at, one).total_price
    assert cost_of(price, bucket, per_request=False) == 10 * per_call == Decimal("4.65")
    assert cost_of(price, bucket, per_request=False, context_window="0-200k") == Decimal("4.65")
    # the same bucket reported as the long-context group is priced at the tier rates ($6 in, $22.5 out)
    assert cost_of(price, bucket, per_request=False, context_window="200k-1M") == Decimal("9.225")
    # what calc_price would wrongly do on the aggregate (cliff from 1.5M input)
    assert reference("anthropic", "claude-sonnet-4-5", at, bucket).total_price == Decimal("9.225")


def test_long_context_bucket_equals_sum_of_its_calls():
    at = ts(2025, 11, 3)
    price = resolve_price(provider="anthropic", model="claude-sonnet-4-5", at=at)
    call = TokenCounts(input_tokens=250_000, cache_read_tokens=100_000, output_tokens=2_000)
    bucket = TokenCounts(input_tokens=1_000_000, cache_read_tokens=400_000, output_tokens=8_000, requests=4)
    calls_total = 4 * reference("anthropic", "claude-sonnet-4-5", at, call).total_price
    assert cost_of(price, bucket, per_request=False, context_window="200k-1M") == calls_total
    assert cost_of(price, bucket, per_request=False) < calls_total


def test_bad_context_window_and_misused_per_request_raise():
    price = resolve_price(provider="anthropic", model="claude-sonnet-4-5", at=ts(2025, 11, 3))
    with pytest.raises(ValueError, match="context_window"):
        cost_of(price, CACHED, per_request=False, context_window="long")
    with pytest.raises(ValueError, match="ONE call"):
        cost_of(price, TokenCounts(input_tokens=10, requests=2))


# ---- lookup and normalisation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "raw", "expected"),
    [
        ("openai", "gpt-4o-mini-2024-07-18", ("openai", "gpt-4o-mini")),
        ("anthropic", "claude-sonnet-4-5-20250929", ("anthropic", "claude-sonnet-4-5")),
        ("Anthropic", "  Claude-Sonnet-4-5-20250929 ", ("anthropic", "claude-sonnet-4-5")),
        ("openrouter", "openai/gpt-4.1", ("openrouter", "openai/gpt-4.1")),
        ("OpenRouter", "OpenAI/GPT-4.1", ("openrouter", "openai/gpt-4.1")),
        ("openai", "openai/gpt-4.1", ("openai", "gpt-4.1")),  # slug prefix naming the provider itself
        ("google", "models/gemini-2.5-pro", ("google", "gemini-2.5-pro")),
        ("openai", "GPT-4o-mini", ("openai", "gpt-4o-mini")),
        ("openai", "nonexistent-model-9", None),
        ("acme-llm", "gpt-4o", None),
        ("openai", "   ", None),
    ],
)
def test_normalise_model(provider, raw, expected):
    assert normalise_model(provider, raw) == expected


def test_unknown_model_or_provider_resolves_to_none():
    assert resolve_price(provider="openai", model="nonexistent-model-9", at=NOV) is None
    assert resolve_price(provider="acme-llm", model="gpt-4o", at=NOV) is None
    with pytest.raises(LookupError):
        calc_price(
            Usage(input_tokens=1), "nonexistent-model-9", provider_id="openai", genai_request_timestamp=NOV
        )
    with pytest.raises(LookupError):
        calc_price(Usage(input_tokens=1), "gpt-4o", provider_id="acme-llm", genai_request_timestamp=NOV)


def test_rejects_naive_datetime_and_unknown_tier():
    with pytest.raises(ValueError, match="aware"):
        resolve_price(provider="openai", model="gpt-4o", at=datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="service_tier"):
        resolve_price(provider="openai", model="gpt-4o", at=NOV, service_tier="scale")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_tokens": 10, "cache_read_tokens": 8, "cache_write_tokens": 5},
        {"input_tokens": 10, "cache_write_tokens": 2, "cache_write_1h_tokens": 3},
        {"output_tokens": 1, "reasoning_tokens": 2},
        {"input_tokens": 1, "input_audio_tokens": 2},
        {"input_tokens": -1},
        {"input_tokens": 1.0},
        {"web_searches": True},
    ],
)
def test_token_counts_reject_inconsistent_or_non_int_values(kwargs):
    with pytest.raises(ValueError):
        TokenCounts(**kwargs)


# ---- negotiated prices ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model", "counts"),
    [
        ("openai", "gpt-4o-mini", CACHED),
        ("anthropic", "claude-sonnet-4-5", ANTHROPIC_FULL),
        ("anthropic", "claude-sonnet-4-5", LONG),
    ],
)
def test_discount_is_exactly_a_fraction_of_list_cost(provider, model, counts):
    price = resolve_price(provider=provider, model=model, at=ts(2025, 11, 3))
    discounted = with_discount(price, Decimal(20))
    assert cost_of(discounted, counts) == cost_of(price, counts) * Decimal("0.8")
    assert cost_of(discounted, counts) < cost_of(price, counts)
    assert discounted.discounts == (Decimal(20),)
    # the list price object is untouched
    assert cost_of(price, counts) == reference(provider, model, ts(2025, 11, 3), counts).total_price
    with pytest.raises(ValueError):
        with_discount(price, Decimal(120))


def test_with_rates_prices_an_unknown_self_hosted_model():
    price = with_rates(
        None,
        provider="selfhost",
        model="llama-3-70b-ft",
        input_mtok=Decimal("0.5"),
        output_mtok=Decimal("1.5"),
    )
    assert (price.provider_id, price.model_id, price.source) == ("selfhost", "llama-3-70b-ft", "override")
    c = TokenCounts(input_tokens=2 * M, cache_read_tokens=M, output_tokens=M)
    assert cost_of(price, c) == Decimal("2.5")  # no cache rate: cached input is charged as input
    assert cost_of(price, c) == price.model_price.calc_price(spec_usage(c))["total_price"]
    cached = with_rates(price, provider="selfhost", model="llama-3-70b-ft", cache_read_mtok=Decimal("0.05"))
    assert cost_of(cached, c) == Decimal("0.5") + Decimal("0.05") + Decimal("1.5")
    with pytest.raises(ValueError):  # genai-prices rejects a cache rate without an input rate
        with_rates(None, provider="selfhost", model="x", cache_read_mtok=Decimal(1))
    with pytest.raises(TypeError):
        with_rates(None, provider="selfhost", model="x", input_mtok=0.5)


def test_with_rates_overrides_only_the_given_list_rates():
    price = resolve_price(provider="openai", model="gpt-4o-mini", at=ts(2025, 1, 15))
    negotiated = with_rates(
        price, provider="OpenAI", model="gpt-4o-mini-2024-07-18", input_mtok=Decimal("0.1")
    )
    c = TokenCounts(input_tokens=M, cache_read_tokens=M // 2, output_tokens=M)
    # 500k uncached at 0.1, 500k cached at list 0.075, 1M output at list 0.6
    assert cost_of(negotiated, c) == Decimal("0.05") + Decimal("0.0375") + Decimal("0.6")
    assert cost_of(negotiated, c) == negotiated.model_price.calc_price(spec_usage(c))["total_price"]
    with pytest.raises(ValueError):
        with_rates(price, provider="openai", model="gpt-4o", input_mtok=Decimal("0.1"))


# ---- memoisation ----------------------------------------------------------------------------------------


def test_resolve_price_is_memoised_per_model_period_and_context():
    at = ts(2026, 11, 20, 9, 15)
    first = resolve_price(provider="anthropic", model="claude-sonnet-4-5-20250929", at=at)
    for i in range(100_000):
        assert (
            resolve_price(
                provider="anthropic", model="claude-sonnet-4-5-20250929", at=at + timedelta(seconds=i % 600)
            )
            is first
        )
    # other spellings of the same model and other days of the same price period hit the same entry
    assert resolve_price(provider="anthropic", model="claude-sonnet-4-5", at=at + timedelta(days=3)) is first
    assert resolve_price(provider="anthropic", model="claude-sonnet-4-5", at=at, batch=True) is not first
    assert isinstance(first, ResolvedPrice)


# ---- the whole bundled catalogue --------------------------------------------------------------------------

SWEEP_COUNTS = (
    TokenCounts(
        input_tokens=120_000,
        cache_read_tokens=30_000,
        cache_write_tokens=20_000,
        cache_write_1h_tokens=5_000,
        output_tokens=9_000,
        reasoning_tokens=2_000,
        web_searches=3,
    ),
    TokenCounts(
        input_tokens=300_001,
        cache_read_tokens=100_000,
        cache_write_tokens=50_000,
        cache_write_1h_tokens=50_000,
        output_tokens=7,
        input_audio_tokens=1_000,
        output_audio_tokens=7,
    ),
)


@pytest.mark.parametrize(
    ("at", "service_tier", "batch"),
    [(ts(2026, 3, 12, 2, 30), None, False), (NOV, "priority", False), (NOV, None, True)],
)
def test_every_bundled_model_matches_calc_price(at, service_tier, batch):
    compared = 0
    for provider in get_snapshot().providers:
        for model in provider.models:
            price = resolve_price(
                provider=provider.id, model=model.id, at=at, service_tier=service_tier, batch=batch
            )
            for counts in SWEEP_COUNTS:
                try:
                    expected = reference(
                        provider.id, model.id, at, counts, ctx_of(service_tier, batch)
                    ).total_price
                except LookupError:  # a few bundled ids do not match their own match rules
                    assert price is None
                    continue
                except ValueError:
                    with pytest.raises(ValueError):
                        cost_of(price, counts)
                    continue
                assert cost_of(price, counts) == expected, (provider.id, model.id, counts)
                compared += 1
    assert compared > 4_000
