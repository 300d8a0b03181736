"""OpenAI Usage + Costs: the recorded pages replayed over loopback."""

import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.connectors.providers import (
    MalformedPage,
    ProviderAuthError,
    ProviderUnavailable,
    UsageRow,
    Window,
    registry,
)
from apps.connectors.providers.openai import OpenAIClient, parse_line_item
from tests.connectors.conftest import (
    END,
    START,
    WINDOW,
    Query,
    by_day,
    query_of,
    requests_to,
    sample_bytes,
    sample_json,
    serve_envelope,
)

API_KEY = "sk-admin-test-0123456789abcdefwxyz"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
USAGE = "/v1/organization/usage/completions"
COSTS = "/v1/organization/costs"
# The recorded query plus service_tier, which the client also groups by (the sample's service_tier is null).
COMPLETIONS_QUERY = [
    ("start_time", START),
    ("end_time", END),
    ("bucket_width", "1d"),
    ("group_by", "project_id"),
    ("group_by", "api_key_id"),
    ("group_by", "model"),
    ("group_by", "batch"),
    ("group_by", "service_tier"),
    ("limit", "2"),
]
COSTS_QUERY = [
    ("start_time", START),
    ("end_time", END),
    ("bucket_width", "1d"),
    ("group_by", "project_id"),
    ("group_by", "line_item"),
    ("limit", "2"),
]
NEXT_USAGE = sample_json("openai-usage-completions-page1.json")["next_page"]
NEXT_COSTS = sample_json("openai-costs-page1.json")["next_page"]


def client_for(server, settings, *, endpoints=("completions",)) -> OpenAIClient:
    client = registry.get("openai")(api_key=API_KEY, base_url=server.url_for(""), http=settings)
    client.usage_page_limit = 2  # the samples were recorded with limit=2
    client.cost_page_limit = 2
    client.usage_endpoints = endpoints
    return client


def serve_pages(server, path, query, page1: bytes, page2: bytes, next_page: str):
    server.expect_request(path, query_string=Query(query), headers=AUTH).respond_with_data(
        page1, content_type="application/json"
    )
    server.expect_request(
        path, query_string=Query([*query, ("page", next_page)]), headers=AUTH
    ).respond_with_data(page2, content_type="application/json")


def serve_completions(server, page2: bytes | None = None):
    serve_pages(
        server,
        USAGE,
        COMPLETIONS_QUERY,
        sample_bytes("openai-usage-completions-page1.json"),
        page2 if page2 is not None else sample_bytes("openai-usage-completions-page2.json"),
        NEXT_USAGE,
    )


def serve_costs(server, page1: bytes | None = None):
    serve_pages(
        server,
        COSTS,
        COSTS_QUERY,
        page1 if page1 is not None else sample_bytes("openai-costs-page1.json"),
        sample_bytes("openai-costs-page2.json"),
        NEXT_COSTS,
    )


def rows_of(pages):
    return [row for page in pages for row in page.rows]


# ---- usage ------------------------------------------------------------------------------------------------------


def test_completions_follow_pagination_and_match_expected_totals(server, http_settings):
    serve_completions(server)
    pages = list(client_for(server, http_settings).fetch_usage(WINDOW))

    assert [p.number for p in pages] == [1, 2]
    assert [p.next_cursor for p in pages] == [f"completions:{NEXT_USAGE}", None]
    assert [len(p.bucket_starts) for p in pages] == [2, 2]
    assert len(requests_to(server, USAGE)) == 2

    rows = rows_of(pages)
    expected = sample_json("openai-usage-completions-expected.json")
    fields = {
        "input_tokens": lambda r: r.input_tokens,
        "input_cached_tokens": lambda r: r.cache_read_tokens,
        "input_cache_write_tokens": lambda r: r.cache_write_tokens,
        "input_uncached_tokens": lambda r: r.input_tokens - r.cache_read_tokens - r.cache_write_tokens,
        "output_tokens": lambda r: r.output_tokens,
        "input_audio_tokens": lambda r: r.input_audio_tokens - r.units.get("input_cached_audio_tokens", 0),
        "input_cached_audio_tokens": lambda r: r.units.get("input_cached_audio_tokens", 0),
        "output_audio_tokens": lambda r: r.output_audio_tokens,
        "num_model_requests": lambda r: r.requests,
    }
    for name, value in fields.items():
        got = by_day(rows, lambda r: r.model_raw, value)
        want = {
            day: {model: sums[name] for model, sums in models.items()}
            for day, models in expected["by_day_model"].items()
        }
        assert got == want, name
        assert sum(value(r) for r in rows) == expected["grand_total"][name], name


def test_completion_rows_keep_every_dimension(server, http_settings):
    serve_completions(server)
    rows = rows_of(client_for(server, http_settings).fetch_usage(WINDOW))
    first = rows[0]
    assert first == UsageRow(
        provider="openai",
        endpoint="completions",
        bucket_start=datetime(2026, 11, 16, tzinfo=UTC),
        bucket_width="1d",
        model_raw="gpt-5-mini-2025-08-07",
        project_id="proj_4Qm8ZtR1vWb7nKc2Ly9Hs3Ed",
        api_key_id="key_R7pLm2QxV9sTn4Wb",
        requests=4250,
        input_tokens=4280953,
        cache_read_tokens=2382892,
        output_tokens=631311,
    )
    assert first.user_id is None and first.service_tier is None and first.batch is False
    assert sum(r.batch for r in rows) == 4  # one batch row per day
    # every (bucket, dimensions) pair is unique, so an upsert never merges two rows
    assert len({(r.bucket_start, r.dimensions_key) for r in rows}) == len(rows)


def test_dimensions_key_is_identical_when_the_window_is_fetched_twice(server, http_settings):
    serve_completions(server)
    client = client_for(server, http_settings)
    first = [(r.bucket_start, r.dimensions_key) for r in rows_of(client.fetch_usage(WINDOW))]
    second = [(r.bucket_start, r.dimensions_key) for r in rows_of(client.fetch_usage(WINDOW))]
    assert first == second
    assert len(requests_to(server, USAGE)) == 4


def test_resuming_with_the_cursor_of_page_2_fetches_only_page_2(server, http_settings):
    serve_completions(server)
    client = client_for(server, http_settings)
    cursor = next(iter(client.fetch_usage(WINDOW))).next_cursor
    server.clear_log()

    pages = list(client.fetch_usage(WINDOW, cursor=cursor))
    assert len(pages) == 1 and pages[0].next_cursor is None
    assert {r.bucket_start.day for r in pages[0].rows} == {18, 19}
    assert requests_to(server, USAGE) == [[*COMPLETIONS_QUERY, ("page", NEXT_USAGE)]]


OTHER_ENDPOINTS = (
    "embeddings",
    "moderations",
    "images",
    "audio_speeches",
    "audio_transcriptions",
    "vector_stores",
    "code_interpreter_sessions",
)


def test_other_usage_endpoints_map_units_and_chain_cursors(server, http_settings):
    queries = json.loads(sample_bytes("openai-usage-other-endpoints-queries.json"))
    for name in OTHER_ENDPOINTS:
        path, query = query_of(queries[name])
        server.expect_request(
            path, query_string=Query([*query, ("limit", "2")]), headers=AUTH
        ).respond_with_data(sample_bytes(f"openai-usage-{name}.json"), content_type="application/json")
    window = Window(datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 18, tzinfo=UTC))
    pages = list(client_for(server, http_settings, endpoints=OTHER_ENDPOINTS).fetch_usage(window))

    assert [p.endpoint for p in pages] == list(OTHER_ENDPOINTS)
    assert [p.number for p in pages] == list(range(1, 8))
    assert [p.next_cursor for p in pages] == [f"{name}:" for name in OTHER_ENDPOINTS[1:]] + [None]

    def results(name):
        return [r for b in sample_json(f"openai-usage-{name}.json")["data"] for r in b["results"]]

    def rows(name):
        return [r for p in pages if p.endpoint == name for r in p.rows]

    for name in ("embeddings", "moderations"):
        assert [(r.model_raw, r.input_tokens, r.requests) for r in rows(name)] == [
            (x["model"], x["input_tokens"], x["num_model_requests"]) for x in results(name)
        ]
    assert [(r.units, r.extra_dimensions, r.requests) for r in rows("images")] == [
        ({"images": x["images"]}, {"size": x["size"], "source": x["source"]}, x["num_model_requests"])
        for x in results("images")
    ]
    for name, field, unit in (
        ("audio_speeches", "characters", "characters"),
        ("audio_transcriptions", "seconds", "seconds"),
        ("vector_stores", "usage_bytes", "usage_bytes"),
        ("code_interpreter_sessions", "num_sessions", "sessions"),
    ):
        assert [r.units for r in rows(name)] == [{unit: x[field]} for x in results(name)], name
        assert all(r.input_tokens == r.output_tokens == 0 for r in rows(name))
    assert {r.model_raw for r in rows("vector_stores")} == {""}
    assert all(r.project_id for p in pages for r in p.rows)


def test_resume_at_the_start_of_another_endpoint(server, http_settings):
    queries = json.loads(sample_bytes("openai-usage-other-endpoints-queries.json"))
    for name in ("vector_stores", "code_interpreter_sessions"):
        path, query = query_of(queries[name])
        server.expect_request(path, query_string=Query([*query, ("limit", "2")])).respond_with_data(
            sample_bytes(f"openai-usage-{name}.json")
        )
    window = Window(datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 18, tzinfo=UTC))
    client = client_for(server, http_settings, endpoints=OTHER_ENDPOINTS)
    pages = list(client.fetch_usage(window, cursor="vector_stores:"))
    assert [p.endpoint for p in pages] == ["vector_stores", "code_interpreter_sessions"]
    assert {req.path for req, _ in server.log} == {
        "/v1/organization/usage/vector_stores",
        "/v1/organization/usage/code_interpreter_sessions",
    }
    with pytest.raises(ValueError, match="cursor"):
        client.fetch_usage(window, cursor="nonsense:abc")


# ---- costs ------------------------------------------------------------------------------------------------------


def test_costs_match_expected_totals_exactly(server, http_settings):
    serve_costs(server)
    pages = list(client_for(server, http_settings).fetch_costs(WINDOW))
    assert [p.next_cursor for p in pages] == [NEXT_COSTS, None]
    rows = rows_of(pages)
    expected = sample_json("openai-costs-expected.json")

    def dec(mapping):
        return {day: {k: Decimal(v) for k, v in values.items()} for day, values in mapping.items()}

    assert {r.currency for r in rows} == {"USD"}
    assert all(isinstance(r.amount, Decimal) for r in rows)
    assert {d: v["all"] for d, v in by_day(rows, lambda r: "all", lambda r: r.amount).items()} == {
        day: Decimal(v) for day, v in expected["cost_usd_by_day"].items()
    }
    assert by_day(rows, lambda r: r.model or "(non-model)", lambda r: r.amount) == dec(
        expected["cost_usd_by_day_model"]
    )
    assert by_day(rows, lambda r: r.line_item, lambda r: r.amount) == dec(
        expected["cost_usd_by_day_line_item"]
    )
    assert by_day(rows, lambda r: r.project_id, lambda r: r.amount) == dec(
        expected["cost_usd_by_day_project"]
    )
    assert sum(r.amount for r in rows) == Decimal(expected["grand_total_cost_usd"])


def test_cost_rows_parse_model_and_token_type_from_line_item(server, http_settings):
    serve_costs(server)
    rows = rows_of(client_for(server, http_settings).fetch_costs(WINDOW))
    first = rows[0]
    assert (first.line_item, first.model, first.token_type, first.cost_type) == (
        "gpt-5-2025-08-07, cached input",
        "gpt-5-2025-08-07",
        "cache_read_input_tokens",
        "tokens",
    )
    assert (first.quantity, first.quantity_unit) == (Decimal("194361.0"), "tokens")
    web = [r for r in rows if r.line_item == "web search tool calls"]
    assert web and all(r.model is None and r.token_type is None for r in web)
    assert len({(r.bucket_start, r.dimensions_key) for r in rows}) == len(rows)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("gpt-4o-mini-2024-07-18, input", ("gpt-4o-mini-2024-07-18", "input")),
        ("evals | gpt-4o-mini-2024-07-18, cached input", ("gpt-4o-mini-2024-07-18", "cached input")),
        ("gpt-audio-mini-2025-12-15 audio, input", ("gpt-audio-mini-2025-12-15", "input")),
        ("ft-gpt-4o-2024-08-06, output", ("ft-gpt-4o-2024-08-06", "output")),
        ("assistants api | file search", (None, None)),
        ("web search tool calls", (None, None)),
        (None, (None, None)),
    ],
)
def test_parse_line_item(label, expected):
    assert parse_line_item(label) == expected


def test_string_amounts_including_0E_6176_parse_to_exact_decimals(server, http_settings):
    # Live responses send amount.value as a JSON string and carry keys the spec does not list.
    page = json.loads(sample_bytes("openai-costs-page1.json"))
    results = page["data"][0]["results"]
    results[0]["amount"]["value"] = "0E-6176"
    results[1]["amount"]["value"] = "0.000004500000000000000000000000000000000"
    results[2]["amount"]["value"] = "12.50"
    results[3]["organization_id"] = "org-x"
    results[3]["project_name"] = "Default project"
    page["data"][0]["start_time_iso"] = "2026-11-16T00:00:00+00:00"
    serve_costs(server, page1=json.dumps(page).encode())

    rows = rows_of(client_for(server, http_settings).fetch_costs(WINDOW))
    assert rows[0].amount == Decimal(0) and rows[0].amount.is_zero()
    assert rows[1].amount == Decimal("0.0000045")
    assert rows[2].amount == Decimal("12.50")
    assert all(isinstance(r.amount, Decimal) for r in rows)


# ---- errors -----------------------------------------------------------------------------------------------------


def test_429_with_retry_after_is_retried_and_the_wait_honoured(server, http_settings, sleeps):
    serve_envelope(server, "openai-error-429.http.json", USAGE)
    serve_completions(server)
    client = client_for(server, http_settings)
    pages = list(client.fetch_usage(WINDOW))
    assert len(pages) == 2
    assert sleeps == [20.0]
    assert [a.status for a in client.attempts] == [429, 200, 200]


def test_500_then_success_is_retried(server, http_settings, sleeps):
    server.expect_oneshot_request(USAGE).respond_with_data("upstream error", status=500)
    serve_completions(server)
    assert len(list(client_for(server, http_settings).fetch_usage(WINDOW))) == 2
    assert sleeps == [0.75]


def test_persistent_5xx_raises_unavailable(server, http_settings):
    server.expect_request(USAGE).respond_with_data("down", status=503)
    with pytest.raises(ProviderUnavailable):
        list(client_for(server, http_settings).fetch_usage(WINDOW))


def test_401_raises_auth_error_without_the_key(server, http_settings, sleeps):
    serve_envelope(server, "openai-error-401.http.json", COSTS)
    client = client_for(server, http_settings)
    with pytest.raises(ProviderAuthError) as exc:
        client.validate_credentials()
    assert API_KEY not in str(exc.value) and "wxyz" not in str(exc.value)
    assert API_KEY not in repr(client)
    assert sleeps == []


def test_validate_credentials_succeeds_with_a_costs_page(server, http_settings):
    server.expect_request(COSTS, headers=AUTH).respond_with_data(sample_bytes("openai-costs-page2.json"))
    client_for(server, http_settings).validate_credentials()
    (query,) = requests_to(server, COSTS)
    assert dict(query)["limit"] == "1"


@pytest.mark.parametrize(
    ("page2", "reason"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "not valid JSON"),
        (sample_bytes("openai-usage-completions-page2.json")[:3000], "truncated"),
    ],
)
def test_non_json_or_truncated_page_is_malformed_after_earlier_pages_were_yielded(
    server, http_settings, page2, reason
):
    serve_completions(server, page2=page2)
    yielded = []
    with pytest.raises(MalformedPage) as exc:
        for page in client_for(server, http_settings).fetch_usage(WINDOW):
            yielded.append(page)
    assert exc.value.page_number == 2
    assert reason in str(exc.value) and "page 2" in str(exc.value)
    # page 1 was delivered before the failure: a sync that committed it resumes from its cursor
    assert [p.number for p in yielded] == [1]
    assert yielded[0].next_cursor == f"completions:{NEXT_USAGE}"
    assert len(yielded[0].rows) == 8


def _page2_with(mutate) -> bytes:
    page = json.loads(sample_bytes("openai-usage-completions-page2.json"))
    mutate(page)
    return json.dumps(page).encode()


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p["data"][1]["results"][2].pop("input_tokens"), "'input_tokens'"),
        (lambda p: p["data"][0]["results"][0].update(num_model_requests="many"), "num_model_requests"),
        (lambda p: p["data"][0].pop("start_time"), "'start_time'"),
        (lambda p: p.pop("has_more"), "has_more"),
        (lambda p: p["data"][0]["results"][0].update(model=42), "model"),
    ],
)
def test_missing_or_mistyped_required_field_is_malformed(server, http_settings, mutate, reason):
    serve_completions(server, page2=_page2_with(mutate))
    with pytest.raises(MalformedPage) as exc:
        list(client_for(server, http_settings).fetch_usage(WINDOW))
    assert exc.value.page_number == 2
    assert reason in exc.value.reason


def test_missing_optional_counters_default_to_zero(server, http_settings):
    # Older responses predate input_cache_write_tokens / modality splits.
    def strip(page):
        for bucket in page["data"]:
            for result in bucket["results"]:
                for key in ("input_cache_write_tokens", "input_uncached_tokens", "input_audio_tokens"):
                    result.pop(key)

    serve_completions(server, page2=_page2_with(strip))
    rows = rows_of(client_for(server, http_settings).fetch_usage(WINDOW))
    assert len(rows) == 16
    assert all(r.cache_write_tokens == 0 for r in rows)


def test_window_must_be_day_aligned_and_base_url_suffix_is_tolerated(server, http_settings):
    client = OpenAIClient(api_key=API_KEY, base_url=server.url_for("/v1/"), http=http_settings)
    assert client.base_url == server.url_for("").rstrip("/")
    with pytest.raises(ValueError, match="00:00 UTC"):
        client.fetch_costs(Window(datetime(2026, 11, 16, 5, tzinfo=UTC), datetime(2026, 11, 17, tzinfo=UTC)))


def test_all_usage_endpoints_are_read_by_default():
    client = OpenAIClient(api_key=API_KEY)
    assert client.base_url == "https://api.openai.com"
    assert client.usage_endpoints == ("completions", *OTHER_ENDPOINTS)
    assert Counter(client.usage_endpoints).most_common(1)[0][1] == 1


def test_costs_are_always_asked_in_daily_buckets_even_when_usage_is_hourly(server, http_settings):
    serve_costs(server)  # the recorded query has bucket_width=1d: an hourly client must still match it
    client = client_for(server, http_settings)
    client.bucket_width = "1h"
    rows = [row for page in client.fetch_costs(WINDOW) for row in page.rows]
    assert rows and all(q.get("bucket_width") == "1d" for q in map(dict, requests_to(server, COSTS)))
