"""OpenRouter /api/v1/activity (one request per UTC day) and /api/v1/key, replayed over loopback."""

import json
from decimal import Decimal

import pytest

from apps.connectors.providers import MalformedPage, ProviderAuthError, registry
from apps.connectors.providers.openrouter import OpenRouterClient
from tests.connectors.conftest import (
    WINDOW,
    Query,
    by_day,
    requests_to,
    sample_bytes,
    sample_json,
    serve_envelope,
)

API_KEY = "sk-or-v1-test-0123456789abcdef0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
ACTIVITY = "/api/v1/activity"
KEY = "/api/v1/key"
DAYS = ("2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19")


def client_for(server, settings) -> OpenRouterClient:
    return registry.get("openrouter")(api_key=API_KEY, base_url=server.url_for(""), http=settings)


def day_body(day: str) -> bytes:
    """The recorded per-day response for 2026-11-18; for the other days, that day's items of the recorded full
    response (the numbers are short decimals, so json round-trips them to the same text)."""
    if day == "2026-11-18":
        return sample_bytes("openrouter-activity-date-2026-11-18.json")
    items = [i for i in json.loads(sample_bytes("openrouter-activity.json"))["data"] if i["date"] == day]
    return json.dumps({"data": items}).encode()


def serve_days(server, body=day_body):
    for day in DAYS:
        server.expect_request(ACTIVITY, query_string=Query([("date", day)]), headers=AUTH).respond_with_data(
            body(day), content_type="application/json"
        )


def rows_of(pages):
    return [row for page in pages for row in page.rows]


FIELDS = {
    "usage_usd": lambda r: r.reported_cost,
    "byok_usage_inference_usd": lambda r: r.units["byok_usage_inference_usd"],
    "requests": lambda r: r.requests,
    "prompt_tokens": lambda r: r.input_tokens,
    "completion_tokens": lambda r: r.output_tokens,
    "reasoning_tokens": lambda r: r.reasoning_tokens,
}


def assert_matches_expected(rows):
    expected = sample_json("openrouter-activity-expected.json")
    for name, value in FIELDS.items():
        want = {
            day: {
                model: (Decimal(v[name]) if name.endswith("_usd") else v[name]) for model, v in models.items()
            }
            for day, models in expected["by_day_model"].items()
        }
        assert by_day(rows, lambda r: r.model_raw, value) == want, name
        total = expected["grand_total"][name]
        assert sum(value(r) for r in rows) == (Decimal(total) if name.endswith("_usd") else total), name


def test_one_request_per_day_and_totals_match_expected(server, http_settings):
    assert json.loads(day_body("2026-11-18")) == {
        "data": [
            i
            for i in json.loads(sample_bytes("openrouter-activity.json"))["data"]
            if i["date"] == "2026-11-18"
        ]
    }
    serve_days(server)
    pages = list(client_for(server, http_settings).fetch_usage(WINDOW))
    assert [(p.number, p.next_cursor) for p in pages] == [
        (1, "2026-11-17"),
        (2, "2026-11-18"),
        (3, "2026-11-19"),
        (4, None),
    ]
    assert requests_to(server, ACTIVITY) == [[("date", d)] for d in DAYS]
    rows = rows_of(pages)
    assert_matches_expected(rows)
    assert all(isinstance(r.reported_cost, Decimal) for r in rows)
    assert {(r.provider, r.endpoint, r.bucket_width) for r in rows} == {("openrouter", "activity", "1d")}


def test_a_response_with_all_30_days_is_filtered_to_the_requested_day(server, http_settings):
    # If ?date= were ignored the full recorded response comes back for every day; nothing may be counted twice.
    serve_days(server, body=lambda day: sample_bytes("openrouter-activity.json"))
    rows = rows_of(client_for(server, http_settings).fetch_usage(WINDOW))
    assert len(rows) == 16
    assert_matches_expected(rows)


def test_rows_of_one_model_on_two_provider_endpoints_stay_apart(server, http_settings):
    serve_days(server)
    rows = rows_of(client_for(server, http_settings).fetch_usage(WINDOW))
    llama = [
        r for r in rows if r.model_raw == "meta-llama/llama-3.3-70b-instruct" and r.bucket_start.day == 18
    ]
    assert {r.extra_dimensions["provider_name"] for r in llama} == {"DeepInfra", "Groq"}
    assert len({r.dimensions_key for r in llama}) == 2
    assert len({(r.bucket_start, r.dimensions_key) for r in rows}) == len(rows)
    first = rows[0]
    assert (first.input_tokens, first.output_tokens, first.reasoning_tokens) == (2312000, 311000, 190500)
    assert first.reported_cost == Decimal("1.284375")


def test_dimensions_key_is_identical_when_the_window_is_fetched_twice(server, http_settings):
    serve_days(server)
    client = client_for(server, http_settings)
    first = [(r.bucket_start, r.dimensions_key) for r in rows_of(client.fetch_usage(WINDOW))]
    second = [(r.bucket_start, r.dimensions_key) for r in rows_of(client.fetch_usage(WINDOW))]
    assert first == second


def test_resume_from_a_day_cursor(server, http_settings):
    serve_days(server)
    client = client_for(server, http_settings)
    pages = list(client.fetch_usage(WINDOW, cursor="2026-11-18"))
    assert [p.number for p in pages] == [1, 2]
    assert requests_to(server, ACTIVITY) == [[("date", "2026-11-18")], [("date", "2026-11-19")]]
    with pytest.raises(ValueError, match="outside the window"):
        client.fetch_usage(WINDOW, cursor="2026-12-01")
    with pytest.raises(ValueError, match="cursor"):
        client.fetch_usage(WINDOW, cursor="page_abc")


def test_no_separate_cost_endpoint(server, http_settings):
    assert list(client_for(server, http_settings).fetch_costs(WINDOW)) == []
    assert server.log == []


def test_recorded_429_is_retried_after_retry_after(server, http_settings, sleeps):
    serve_envelope(server, "openrouter-error-429.http.json", ACTIVITY)
    serve_days(server)
    assert len(rows_of(client_for(server, http_settings).fetch_usage(WINDOW))) == 16
    assert sleeps == [15.0]


def test_malformed_day_after_earlier_days_were_yielded(server, http_settings):
    def body(day):
        if day != "2026-11-17":
            return day_body(day)
        page = json.loads(day_body(day))
        del page["data"][1]["usage"]
        return json.dumps(page).encode()

    serve_days(server, body=body)
    yielded = []
    with pytest.raises(MalformedPage) as exc:
        for page in client_for(server, http_settings).fetch_usage(WINDOW):
            yielded.append(page)
    assert exc.value.page_number == 2
    assert "'usage'" in exc.value.reason and "2026-11-17" in exc.value.reason
    assert [p.next_cursor for p in yielded] == ["2026-11-17"]


def test_non_json_day_is_malformed(server, http_settings):
    serve_days(server, body=lambda day: b"<html>oops</html>" if day == "2026-11-16" else day_body(day))
    with pytest.raises(MalformedPage) as exc:
        list(client_for(server, http_settings).fetch_usage(WINDOW))
    assert exc.value.page_number == 1


def test_validate_credentials_accepts_a_management_key(server, http_settings):
    server.expect_oneshot_request(KEY, headers=AUTH).respond_with_data(sample_bytes("openrouter-key.json"))
    client_for(server, http_settings).validate_credentials()


def test_validate_credentials_rejects_a_non_management_key(server, http_settings):
    body = json.loads(sample_bytes("openrouter-key.json"))
    body["data"].update(is_management_key=False, is_provisioning_key=False)
    server.expect_oneshot_request(KEY).respond_with_json(body)
    with pytest.raises(ProviderAuthError, match="management key"):
        client_for(server, http_settings).validate_credentials()


@pytest.mark.parametrize("name", ["openrouter-error-401.http.json", "openrouter-error-403.http.json"])
def test_recorded_401_and_403_raise_auth_error(server, http_settings, sleeps, name):
    env = serve_envelope(server, name, KEY)
    with pytest.raises(ProviderAuthError) as exc:
        client_for(server, http_settings).validate_credentials()
    assert exc.value.status == env["status"]
    assert env["body"]["error"]["message"] in str(exc.value)
    assert API_KEY not in str(exc.value)
    assert sleeps == []
