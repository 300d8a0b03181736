"""The sandbox provider: deterministic, realistic demo rows without HTTP."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from apps.connectors.providers import CostRow, UsageRow, Window, registry
from apps.connectors.providers.sandbox import SandboxClient

WINDOW = Window.for_days(date(2026, 11, 9), date(2026, 11, 22))  # two full weeks, Monday to Sunday


def rows_of(pages):
    return [row for page in pages for row in page.rows]


def client() -> SandboxClient:
    return registry.get("sandbox")(api_key="")


def test_same_window_gives_identical_rows_and_costs():
    a, b = client(), client()
    assert rows_of(a.fetch_usage(WINDOW)) == rows_of(b.fetch_usage(WINDOW))
    assert rows_of(a.fetch_costs(WINDOW)) == rows_of(b.fetch_costs(WINDOW))
    assert [r.dimensions_key for r in rows_of(a.fetch_usage(WINDOW))] == [
        r.dimensions_key for r in rows_of(b.fetch_usage(WINDOW))
    ]


def test_a_day_looks_the_same_in_any_window():
    day = date(2026, 11, 18)
    inside = [r for r in rows_of(client().fetch_usage(WINDOW)) if r.bucket_start.date() == day]
    alone = rows_of(client().fetch_usage(Window.for_days(day, day)))
    assert inside == alone
    # any window works, also one that is not midnight-aligned: every overlapping day is one page
    odd = Window(datetime(2026, 11, 18, 13, tzinfo=UTC), datetime(2026, 11, 19, 2, tzinfo=UTC))
    assert [p.bucket_starts[0].date() for p in client().fetch_usage(odd)] == [day, date(2026, 11, 19)]


def test_rows_are_realistic():
    rows = rows_of(client().fetch_usage(WINDOW))
    assert all(isinstance(r, UsageRow) for r in rows)
    models = {(r.provider, r.model_raw) for r in rows}
    assert len({m for p, m in models if p == "openai"}) >= 3
    assert len({m for p, m in models if p == "anthropic"}) >= 3
    assert any(r.batch for r in rows if r.provider == "openai")
    assert any(r.batch and r.service_tier == "batch" for r in rows if r.provider == "anthropic")
    assert any(r.cache_read_tokens for r in rows) and any(r.cache_write_1h_tokens for r in rows)
    assert any(r.web_searches for r in rows) and any(r.reasoning_tokens for r in rows)
    for r in rows:  # the token convention holds
        assert r.input_tokens >= r.cache_read_tokens + r.cache_write_tokens
        assert r.cache_write_tokens >= r.cache_write_1h_tokens
        assert r.output_tokens >= r.reasoning_tokens
    assert len({(r.bucket_start, r.dimensions_key) for r in rows}) == len(rows)
    # weekends are quieter than weekdays
    per_day = {}
    for r in rows:
        per_day[r.bucket_start.date()] = per_day.get(r.bucket_start.date(), 0) + r.input_tokens
    weekday = [v for d, v in per_day.items() if d.weekday() < 5]
    weekend = [v for d, v in per_day.items() if d.weekday() >= 5]
    assert max(weekend) < min(weekday)


def test_costs_are_decimal_usd_in_both_report_shapes():
    costs = rows_of(client().fetch_costs(WINDOW))
    assert all(isinstance(c, CostRow) and isinstance(c.amount, Decimal) and c.amount > 0 for c in costs)
    assert {c.currency for c in costs} == {"USD"}
    assert {c.provider for c in costs} == {"openai", "anthropic"}
    openai_line = next(c for c in costs if c.provider == "openai")
    assert openai_line.line_item.startswith(f"{openai_line.model}, ")
    assert any(c.cost_type == "web_search" and c.model is None for c in costs)
    assert any(c.token_type == "cache_creation.ephemeral_1h_input_tokens" for c in costs)
    daily = sum(c.amount for c in costs) / len(WINDOW.days())
    assert Decimal(5) < daily < Decimal(500)
    assert len({(c.bucket_start, c.dimensions_key) for c in costs}) == len(costs)


def test_cursor_resumes_at_the_next_day():
    pages = list(client().fetch_usage(WINDOW))
    assert pages[0].next_cursor == "2026-11-10" and pages[-1].next_cursor is None
    resumed = list(client().fetch_usage(WINDOW, cursor=pages[5].next_cursor))
    assert rows_of(resumed) == rows_of(pages[6:])
    assert [p.number for p in resumed] == list(range(1, len(pages) - 5))
    with pytest.raises(ValueError, match="cursor"):
        client().fetch_costs(WINDOW, cursor="2027-01-01")


def test_validate_credentials_needs_no_network():
    client().validate_credentials()
