"""The ingest hot path's shortcuts give exactly what the general code gives: the fast validator, the hand-made COPY
text (on PostgreSQL), the integer pricing path, and the lean spend fold."""

import dataclasses
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction

from apps.catalog import pricing
from apps.usage import ledger
from apps.usage.events import _accept_fast, _validate_full
from apps.usage.models import DailyModelRollup, DailyRollup, UsageRecord
from tests.usage.factories import event, ingest, provider_row

WHEN = datetime(2026, 11, 18, 15, 30, 12, 345678, tzinfo=UTC)
NOW = datetime(2026, 11, 20, tzinfo=UTC)

# events the fast path must either refuse (None) or accept exactly as the full validator does
VARIANTS = [
    {},
    {"tags": {}},
    {"tags": None},
    {"tags": ""},
    {"tags": []},
    {"tags": {"feature": "chat", "customer": "acme", "prompt": "v2", "n": 3, "x": 1.5}},
    {"tags": {"feature": True}},
    {"tags": {"bad key!": "v"}},
    {"tags": {"k": "tab\tinside"}},
    {"cache_read_tokens": 100, "cache_write_tokens": 50, "cache_write_1h_tokens": 20},
    {"cache_read_tokens": 900, "cache_write_tokens": 200},  # more than the input
    {"cache_read_tokens": None},
    {"cache_write_1h_tokens": 5},  # more than cache writes
    {"reasoning_tokens": 150},
    {"reasoning_tokens": 250},
    {"reasoning_tokens": -1},
    {"input_audio_tokens": 10, "output_audio_tokens": 10},
    {"output_audio_tokens": 10**13},
    {"input_tokens": 10**12 + 1},
    {"input_tokens": 2.0},
    {"input_tokens": True},
    {"requests": 0},
    {"requests": None},
    {"requests": "3"},
    {"cost": "0.0123"},
    {"cost": 0.5},
    {"cost": "-1"},
    {"cost": "NaN"},
    {"currency": "usd"},
    {"currency": None},
    {"currency": "EUR"},
    {"team": "Support"},
    {"team": 7},
    {"team": ""},
    {"team": False},
    {"service_tier": "flex"},
    {"service_tier": "turbo"},
    {"batch": True},
    {"batch": 1},
    {"timestamp": "2026-11-18T15:30:12+02:00"},
    {"timestamp": "2026-11-18T15:30:12"},
    {"timestamp": "2030-01-01T00:00:00Z"},
    {"id": "a\\b"},
    {"id": "a\nb"},
    {"provider": "Open AI"},
    {"model": "gpt 4"},
    {"unknown": 1},
]


@pytest.mark.parametrize("extra", VARIANTS)
def test_fast_validator_accepts_only_what_the_full_one_does_and_the_same_way(extra):
    raw = event(1, ts="2026-11-18T15:30:12.5Z", input_tokens=1000, output_tokens=200)
    raw.update(extra)
    fast = _accept_fast(raw, NOW)
    full, errors = _validate_full(raw, now=NOW)
    if fast is not None:
        assert not errors
        assert fast == full


def test_integer_pricing_path_equals_the_decimal_one():
    """cost_of_counts adds integers where every rate allows it; the value must equal cost_of's Decimal sum."""
    rng = random.Random(5)
    at = datetime(2026, 11, 1, tzinfo=UTC)
    checked = integer = 0
    for provider, model in [
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4.1"),
        ("openai", "o4-mini"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-haiku-4-5"),
        ("google", "gemini-2.5-pro"),
        ("deepseek", "deepseek-chat"),
    ]:
        for tier, batch in ((None, False), ("flex", False), ("priority", False), (None, True)):
            listed = pricing.resolve_price(
                provider=provider, model=model, at=at, service_tier=tier, batch=batch
            )
            assert listed is not None
            # 7.5 % keeps short rates (integer path); 33.333 % makes long ones (the Decimal path)
            for price in (
                listed,
                pricing.with_discount(listed, Decimal("7.5")),
                pricing.with_discount(listed, Decimal("33.333")),
            ):
                integer += price._plan.int_terms is not None
                for _ in range(200):
                    inp = rng.choice((rng.randint(0, 5000), rng.randint(0, 400_000)))
                    cr = rng.randint(0, inp)
                    cw = rng.randint(0, inp - cr)
                    c1 = rng.randint(0, cw)
                    out = rng.randint(0, 30_000)
                    rs = rng.randint(0, out)
                    counts = pricing.TokenCounts(
                        input_tokens=inp,
                        cache_read_tokens=cr,
                        cache_write_tokens=cw,
                        cache_write_1h_tokens=c1,
                        output_tokens=out,
                        reasoning_tokens=rs,
                        requests=1,
                    )
                    fast = pricing.cost_of_counts(price, inp, cr, cw, c1, out, rs, 0, 0, 1)
                    assert fast == pricing.cost_of(price, counts)
                    bucket = pricing.cost_of_counts(
                        price, inp, cr, cw, c1, out, rs, 0, 0, 9, per_request=False, context_window="200k-1M"
                    )
                    aggregate = dataclasses.replace(counts, requests=9)
                    assert bucket == pricing.cost_of(
                        price, aggregate, per_request=False, context_window="200k-1M"
                    )
                    checked += 1
    assert integer > 0 and checked == 7 * 4 * 3 * 200


# --- the ledger write: what goes in comes out (PostgreSQL: the hand-made COPY text) ------------------------------

AWKWARD = [
    "back\\slash",
    "\\N",
    'quote"d',
    "tab\there",
    "new\nline",
    "cr\rhere",
    "ünïcödé ✓",
    "",
    "None",
    "{}",
]


@pytest.mark.django_db
def test_awkward_text_survives_the_write_path(org):
    """Event ids, tag keys and values with backslashes, quotes, '\\N', non-ASCII: stored exactly as sent."""
    values = [v for v in AWKWARD if not any(c in v for c in "\t\n\r")]  # events refuse control characters
    events = [
        event(
            i,
            ts=WHEN,
            id=f"id-{i}-{v}",
            model="gpt-4o-mini",
            tags={"feature": v, "customer": v, "free": v, "k.2": f"x{v}y"},
        )
        for i, v in enumerate(values)
    ]
    result = ingest(org, events)
    assert result.accepted == len(values), result.rejected_events
    stored = {r.key: r for r in UsageRecord.objects.filter(org=org)}
    for i, v in enumerate(values):
        rec = stored[f"id-{i}-{v}"]
        assert (rec.feature, rec.customer) == (v, v)
        assert rec.tags == {"free": v, "k.2": f"x{v}y"}
        assert rec.start_time == WHEN  # microseconds kept
        assert rec.model_raw == "gpt-4o-mini" and rec.project_id is None and rec.token_id is None
    assert ingest(org, events).accepted == 0  # the same ids again: all duplicates


@pytest.mark.django_db
def test_provider_rows_with_nulls_numbers_and_control_characters_in_tags(org):
    """The generic row shape (provider pulls): NULL text columns, non-string tag values, characters COPY escapes."""
    rows = []
    for i, text in enumerate(AWKWARD):
        rows.append(
            provider_row(
                org,
                f"k{i}:{text}",
                model_raw=text,
                project_id=None if i % 2 else text,
                workspace_id=text or None,
                tags={"endpoint": "completions", "text": text, "n": i, "f": 1.5, "nested": {"a": [1, text]}},
            )
        )
    with transaction.atomic():
        assert ledger.insert_records(rows) == {r["key"] for r in rows}
    stored = {r.key: r for r in UsageRecord.objects.filter(org=org)}
    for i, text in enumerate(AWKWARD):
        rec = stored[f"k{i}:{text}"]
        assert rec.model_raw == text
        assert rec.project_id == (None if i % 2 else text)
        assert rec.workspace_id == (text or None) and rec.api_key_id is None
        assert rec.tags == rows[i]["tags"]
        assert rec.cost == Decimal("0.0000012345") and rec.computed_cost is None
    assert DailyRollup.objects.get(org=org).records == len(AWKWARD)
    assert DailyModelRollup.objects.get(org=org).requests == 3 * len(AWKWARD)


@pytest.mark.django_db
def test_spend_month_and_day_together_fold_the_same_way(org):
    ingest(org, [event(i, ts=WHEN - timedelta(days=20 * i)) for i in range(4)])
    from apps.usage.selectors import SpendQuery, spend_by

    result = spend_by(
        org=org, query=SpendQuery(start=date(2026, 8, 1), end=date(2026, 12, 1), group_by=("month",))
    )
    months = [(g["month"], g["requests"]) for g in result["groups"]]
    assert months == [("2026-09", 1), ("2026-10", 2), ("2026-11", 1)]
    both = spend_by(
        org=org, query=SpendQuery(start=date(2026, 8, 1), end=date(2026, 12, 1), group_by=("month", "day"))
    )
    assert [(g["month"], g["day"]) for g in both["groups"]][:1] == [("2026-09", "2026-09-19")]
    assert both["totals"] == result["totals"]
    assert result["totals"]["requests"] == 4 and isinstance(result["totals"]["_cost"], Decimal)


@pytest.mark.django_db(transaction=True)
def test_an_error_after_chunks_were_streamed_writes_nothing(org, monkeypatch):
    """The batch streams to the COPY in chunks while it is validated: a failure half-way leaves no trace, and the
    connection is usable for the next batch."""
    from apps.usage import services

    real, calls = services.price_row, []

    def failing(book, row):
        calls.append(1)
        if len(calls) == ledger.RecordWriter.CHUNK * 2 + 10:
            raise RuntimeError("boom")
        return real(book, row)

    monkeypatch.setattr(services, "price_row", failing)
    events = [event(i, ts=WHEN) for i in range(ledger.RecordWriter.CHUNK * 2 + 50)]
    with pytest.raises(RuntimeError):
        ingest(org, events)
    assert not UsageRecord.objects.filter(org=org).exists()
    assert not DailyRollup.objects.filter(org=org).exists()
    monkeypatch.setattr(services, "price_row", real)
    result = ingest(org, events)
    assert result.accepted == len(events)
    assert DailyRollup.objects.get(org=org).records == len(events)


@pytest.mark.django_db
def test_spend_from_the_model_rollup_adds_up_a_model_sold_by_two_providers(org):
    """The coarse rollup's rows are added up in Python (no GROUP BY): one group per day and model whatever the
    provider, equal to the ledger."""
    ingest(
        org,
        [
            event(1, ts=WHEN, provider="openai", model="gpt-4o-mini", input_tokens=1000),
            event(2, ts=WHEN, provider="azure", model="gpt-4o-mini", input_tokens=3000),
            event(3, ts=WHEN, provider="openai", model="gpt-4.1", input_tokens=500),
            event(4, ts=WHEN + timedelta(days=1), provider="azure", model="gpt-4o-mini", input_tokens=7),
        ],
    )
    from apps.usage.selectors import SpendQuery, spend_by

    query = SpendQuery(start=date(2026, 11, 1), end=date(2026, 12, 1), group_by=("day", "model"))
    assert query.uses_model_rollup
    result = spend_by(org=org, query=query)
    assert result["source"] == "model_rollup"
    got = {(g["day"], g["model"]): (g["input_tokens"], g["requests"], g["_cost"]) for g in result["groups"]}
    ledger_rows = UsageRecord.objects.filter(org=org)
    expected = {}
    for r in ledger_rows:
        key = (r.day.isoformat(), r.model)
        tokens, requests, cost = expected.get(key, (0, 0, Decimal(0)))
        expected[key] = (tokens + r.input_tokens, requests + r.requests, cost + r.cost)
    assert got == expected and len(got) == 3
    assert result["totals"]["input_tokens"] == 4507 and result["totals"]["_cost"] == sum(
        r.cost for r in ledger_rows
    )


@pytest.mark.parametrize("odd", ["\x7f", "\x1f", "\u00a0", "\u2028", "\u200b", "é", "雪"])
def test_an_event_id_with_an_unusual_character_is_judged_as_the_full_check_does(odd):
    """The fast path refuses ids that are not printable (the full check then decides); what it accepts, the full
    check accepts the same way."""
    raw = event(1, ts=WHEN, id=f"id{odd}x")
    fast, (full, errors) = _accept_fast(raw, NOW), _validate_full(raw, now=NOW)
    if fast is not None:
        assert fast == full and not errors
    assert (full is None) == bool(errors) == (odd in "\x7f\x1f")
