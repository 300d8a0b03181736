"""Anthropic Admin usage_report/messages + cost_report: the recorded pages replayed over loopback."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.connectors.providers import MalformedPage, ProviderAuthError, registry
from apps.connectors.providers.anthropic import AnthropicClient, cents_to_units
from tests.connectors.conftest import (
    WINDOW,
    Query,
    by_day,
    requests_to,
    sample_bytes,
    sample_json,
    serve_envelope,
)

API_KEY = "sk-ant-admin01-test-0123456789abcdef"
HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
USAGE = "/v1/organizations/usage_report/messages"
COSTS = "/v1/organizations/cost_report"
TIME = [
    ("starting_at", "2026-11-16T00:00:00Z"),
    ("ending_at", "2026-11-20T00:00:00Z"),
    ("bucket_width", "1d"),
]
# The recorded query plus context_window, which the client also groups by (the sample's context_window is null).
USAGE_QUERY = [
    *TIME,
    *[("group_by[]", g) for g in ("api_key_id", "workspace_id", "model", "service_tier", "context_window")],
    ("limit", "2"),
]
COSTS_QUERY = [*TIME, ("group_by[]", "workspace_id"), ("group_by[]", "description"), ("limit", "2")]
NEXT_USAGE = sample_json("anthropic-usage-report-messages-page1.json")["next_page"]
NEXT_COSTS = sample_json("anthropic-cost-report-page1.json")["next_page"]


def client_for(server, settings) -> AnthropicClient:
    client = registry.get("anthropic")(api_key=API_KEY, base_url=server.url_for(""), http=settings)
    client.usage_page_limit = client.cost_page_limit = 2  # the samples were recorded with limit=2
    return client


def serve(server, path, query, page1: bytes, page2: bytes, next_page: str):
    server.expect_request(path, query_string=Query(query), headers=HEADERS).respond_with_data(
        page1, content_type="application/json"
    )
    server.expect_request(
        path, query_string=Query([*query, ("page", next_page)]), headers=HEADERS
    ).respond_with_data(page2, content_type="application/json")


def serve_usage(server, page2: bytes | None = None):
    serve(
        server,
        USAGE,
        USAGE_QUERY,
        sample_bytes("anthropic-usage-report-messages-page1.json"),
        page2 if page2 is not None else sample_bytes("anthropic-usage-report-messages-page2.json"),
        NEXT_USAGE,
    )


def serve_costs(server, page2: bytes | None = None):
    serve(
        server,
        COSTS,
        COSTS_QUERY,
        sample_bytes("anthropic-cost-report-page1.json"),
        page2 if page2 is not None else sample_bytes("anthropic-cost-report-page2.json"),
        NEXT_COSTS,
    )


def rows_of(pages):
    return [row for page in pages for row in page.rows]


# ---- usage ------------------------------------------------------------------------------------------------------

USAGE_FIELDS = {
    "uncached_input_tokens": lambda r: r.input_tokens - r.cache_read_tokens - r.cache_write_tokens,
    "cache_creation_5m_input_tokens": lambda r: r.cache_write_tokens - r.cache_write_1h_tokens,
    "cache_creation_1h_input_tokens": lambda r: r.cache_write_1h_tokens,
    "cache_read_input_tokens": lambda r: r.cache_read_tokens,
    "total_input_tokens": lambda r: r.input_tokens,
    "output_tokens": lambda r: r.output_tokens,
    "web_search_requests": lambda r: r.web_searches,
}


def test_usage_follows_pagination_and_matches_expected_totals(server, http_settings):
    serve_usage(server)
    pages = list(client_for(server, http_settings).fetch_usage(WINDOW))
    assert [(p.number, p.next_cursor) for p in pages] == [(1, NEXT_USAGE), (2, None)]
    rows = rows_of(pages)
    expected = sample_json("anthropic-usage-report-messages-expected.json")
    for name, value in USAGE_FIELDS.items():
        want = {
            day: {model: sums[name] for model, sums in models.items()}
            for day, models in expected["by_day_model"].items()
        }
        assert by_day(rows, lambda r: r.model_raw, value) == want, name
        assert {d: v["all"] for d, v in by_day(rows, lambda r: "all", value).items()} == {
            day: sums[name] for day, sums in expected["by_day"].items()
        }, name
        assert sum(value(r) for r in rows) == expected["grand_total"][name], name


def test_usage_is_converted_to_the_total_input_convention(server, http_settings):
    serve_usage(server)
    rows = rows_of(client_for(server, http_settings).fetch_usage(WINDOW))
    raw = sample_json("anthropic-usage-report-messages-page1.json")["data"][0]["results"][0]
    row = rows[0]
    cc = raw["cache_creation"]
    assert row.input_tokens == (
        raw["uncached_input_tokens"]
        + raw["cache_read_input_tokens"]
        + cc["ephemeral_5m_input_tokens"]
        + cc["ephemeral_1h_input_tokens"]
    )
    assert row.input_tokens == 1004413 + 3968336 + 163145
    assert row.cache_write_tokens == 163145 and row.cache_write_1h_tokens == 0
    assert (row.provider, row.endpoint, row.bucket_start) == (
        "anthropic",
        "messages",
        datetime(2026, 11, 16, tzinfo=UTC),
    )
    assert (row.service_tier, row.batch, row.context_window) == ("standard", False, None)
    opus = [r for r in rows if r.model_raw == "claude-opus-4-6"]
    assert any(r.cache_write_1h_tokens for r in opus)
    assert any(r.batch and r.service_tier == "batch" for r in rows)
    # Console usage (api_key_id null) and the default workspace (workspace_id null) stay null, not dropped
    assert any(r.workspace_id is None for r in rows)
    assert any(r.api_key_id is None for r in rows)
    assert len({(r.bucket_start, r.dimensions_key) for r in rows}) == len(rows)


def test_usage_request_uses_bracket_arrays_and_admin_headers(server, http_settings):
    serve_usage(server)
    list(client_for(server, http_settings).fetch_usage(WINDOW))
    request, _ = server.log[0]
    assert b"group_by%5B%5D=api_key_id" in request.query_string
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in request.headers


def test_dimensions_key_is_identical_when_the_window_is_fetched_twice(server, http_settings):
    serve_usage(server)
    serve_costs(server)
    client = client_for(server, http_settings)
    for fetch in (client.fetch_usage, client.fetch_costs):
        first = [(r.bucket_start, r.dimensions_key) for r in rows_of(fetch(WINDOW))]
        second = [(r.bucket_start, r.dimensions_key) for r in rows_of(fetch(WINDOW))]
        assert first == second


def test_resuming_with_the_cursor_of_page_2_fetches_only_page_2(server, http_settings):
    serve_usage(server)
    client = client_for(server, http_settings)
    cursor = next(iter(client.fetch_usage(WINDOW))).next_cursor
    assert cursor == NEXT_USAGE
    server.clear_log()
    pages = list(client.fetch_usage(WINDOW, cursor=cursor))
    assert len(pages) == 1
    assert {r.bucket_start.day for r in pages[0].rows} == {18, 19}
    assert requests_to(server, USAGE) == [[*USAGE_QUERY, ("page", NEXT_USAGE)]]


# ---- costs ------------------------------------------------------------------------------------------------------


def test_costs_are_converted_from_cents_and_match_expected_totals(server, http_settings):
    serve_costs(server)
    pages = list(client_for(server, http_settings).fetch_costs(WINDOW))
    assert [p.next_cursor for p in pages] == [NEXT_COSTS, None]
    rows = rows_of(pages)
    expected = sample_json("anthropic-cost-report-expected.json")

    def dec(mapping):
        return {day: {k: Decimal(v) for k, v in values.items()} for day, values in mapping.items()}

    assert {d: v["all"] for d, v in by_day(rows, lambda r: "all", lambda r: r.amount).items()} == {
        day: Decimal(v) for day, v in expected["cost_usd_by_day"].items()
    }
    assert by_day(rows, lambda r: r.model or "(null)", lambda r: r.amount) == dec(
        expected["cost_usd_by_day_model"]
    )
    assert by_day(rows, lambda r: r.cost_type, lambda r: r.amount) == dec(
        expected["cost_usd_by_day_cost_type"]
    )
    assert by_day(rows, lambda r: r.workspace_id or "(default workspace)", lambda r: r.amount) == dec(
        expected["cost_usd_by_day_workspace"]
    )
    assert by_day(rows, lambda r: r.line_item, lambda r: r.amount) == dec(
        expected["cost_usd_by_day_description"]
    )
    assert sum(r.amount for r in rows) == Decimal(expected["grand_total_cost_usd"])
    assert sum(r.amount for r in rows) * 100 == Decimal(expected["grand_total_cost_cents"])


def test_cost_row_amount_is_cents_divided_by_100(server, http_settings):
    serve_costs(server)
    first = rows_of(client_for(server, http_settings).fetch_costs(WINDOW))[0]
    assert first.amount == Decimal("2.730102")  # "amount": "273.0102" cents
    assert (first.currency, first.model, first.token_type, first.cost_type, first.service_tier) == (
        "USD",
        "claude-haiku-4-5-20251001",
        "uncached_input_tokens",
        "tokens",
        "standard",
    )
    assert first.line_item == "Claude Haiku 4.5 Usage - Input Tokens"
    assert first.extra_dimensions == {"context_window": "0-200k", "inference_geo": "not_available"}


@pytest.mark.parametrize(
    ("cents", "usd"),
    [("123.45", "1.2345"), ("0", "0"), ("5", "0.05"), ("0.000000000000000000000000000000001", "1E-35")],
)
def test_cents_to_units_is_exact(cents, usd):
    assert cents_to_units(Decimal(cents)) == Decimal(usd)


# ---- errors -----------------------------------------------------------------------------------------------------


def test_recorded_429_is_retried_after_retry_after(server, http_settings, sleeps):
    serve_envelope(server, "anthropic-error-429.http.json", COSTS)
    serve_costs(server)
    assert len(list(client_for(server, http_settings).fetch_costs(WINDOW))) == 2
    assert sleeps == [30.0]


def test_recorded_529_is_retried(server, http_settings, sleeps):
    serve_usage(server)
    # fail page 2 once with 529: the retry happens inside the page, the cursor chain is unchanged
    serve_envelope(
        server,
        "anthropic-error-529.http.json",
        USAGE,
        query_string=Query([*USAGE_QUERY, ("page", NEXT_USAGE)]),
    )
    pages = list(client_for(server, http_settings).fetch_usage(WINDOW))
    assert [p.number for p in pages] == [1, 2]
    assert sleeps == [0.75]


def test_401_raises_auth_error_without_the_key(server, http_settings):
    serve_envelope(server, "anthropic-error-401.http.json", USAGE)
    with pytest.raises(ProviderAuthError) as exc:
        client_for(server, http_settings).validate_credentials()
    assert "authentication_error" in str(exc.value)
    assert API_KEY not in str(exc.value)


def test_validate_credentials_reads_one_usage_bucket(server, http_settings):
    server.expect_request(USAGE, headers=HEADERS).respond_with_data(
        sample_bytes("anthropic-usage-report-messages-page2.json")
    )
    client_for(server, http_settings).validate_credentials()
    (query,) = requests_to(server, USAGE)
    assert dict(query)["limit"] == "1"


def _page2_with(name, mutate) -> bytes:
    page = json.loads(sample_bytes(name))
    mutate(page)
    return json.dumps(page).encode()


def test_truncated_page_is_malformed_after_page_1_was_yielded(server, http_settings):
    serve_usage(server, page2=sample_bytes("anthropic-usage-report-messages-page2.json")[:-40])
    yielded = []
    with pytest.raises(MalformedPage) as exc:
        for page in client_for(server, http_settings).fetch_usage(WINDOW):
            yielded.append(page)
    assert exc.value.page_number == 2 and "truncated" in exc.value.reason
    assert [p.next_cursor for p in yielded] == [NEXT_USAGE]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p["data"][0]["results"][0].pop("cache_creation"), "cache_creation"),
        (lambda p: p["data"][0]["results"][0].pop("output_tokens"), "output_tokens"),
        (lambda p: p["data"][1].update(starting_at="yesterday"), "RFC 3339"),
        (lambda p: p.update(has_more=True, next_page=None), "next_page"),
    ],
)
def test_usage_page_missing_required_field_is_malformed(server, http_settings, mutate, reason):
    serve_usage(server, page2=_page2_with("anthropic-usage-report-messages-page2.json", mutate))
    with pytest.raises(MalformedPage) as exc:
        list(client_for(server, http_settings).fetch_usage(WINDOW))
    assert exc.value.page_number == 2
    assert reason in exc.value.reason


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p["data"][0]["results"][0].pop("amount"), "amount"),
        (lambda p: p["data"][0]["results"][0].update(amount="twelve"), "not a number"),
        (lambda p: p["data"][0]["results"][0].update(amount="NaN"), "finite"),
    ],
)
def test_cost_page_with_bad_amount_is_malformed(server, http_settings, mutate, reason):
    serve_costs(server, page2=_page2_with("anthropic-cost-report-page2.json", mutate))
    with pytest.raises(MalformedPage) as exc:
        list(client_for(server, http_settings).fetch_costs(WINDOW))
    assert exc.value.page_number == 2
    assert reason in exc.value.reason


def test_unknown_keys_and_older_rows_without_new_dimensions_are_accepted(server, http_settings):
    def mutate(page):
        for bucket in page["data"]:
            for row in bucket["results"]:
                row.pop("account_id")
                row.pop("service_account_id")
                row.pop("inference_geo")
                row["speed"] = "standard"
        page["something_new"] = {"x": 1}

    serve_usage(server, page2=_page2_with("anthropic-usage-report-messages-page2.json", mutate))
    rows = rows_of(client_for(server, http_settings).fetch_usage(WINDOW))
    assert len(rows) == 17
