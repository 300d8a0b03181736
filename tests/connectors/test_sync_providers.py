"""OpenAI and OpenRouter syncs end to end over loopback, totals checked against the recorded pages."""

from collections import defaultdict
from decimal import Decimal

import pytest
from django.db.models import Sum

from apps.connectors import services
from apps.connectors.models import ProviderCostRecord, SyncRun
from apps.usage.models import DailyRollup, UsageRecord
from tests.connectors import test_provider_openai as oa
from tests.connectors import test_provider_openrouter as orr
from tests.connectors.conftest import sample_json

pytestmark = pytest.mark.django_db
SYNC = {"start": "2026-11-16", "end": "2026-11-20"}


@pytest.fixture(autouse=True)
def replay(monkeypatch, http_settings):
    monkeypatch.setattr(services, "HTTP_SETTINGS", http_settings)
    monkeypatch.setattr(
        services,
        "CLIENT_OPTIONS",
        {
            "openai": {"usage_page_limit": 2, "cost_page_limit": 2, "usage_endpoints": ("completions",)},
        },
    )


def _sync(api, org, connection, capture):
    with capture(execute=True):
        response = api(org).post(f"/api/v1/connectors/{connection.pk}/sync", SYNC, format="json")
    assert response.status_code == 202, response.content
    run = SyncRun.objects.get(pk=response.json()["id"])
    assert run.status == "succeeded", run.error
    return run


def by_day_model(org, value):
    out = defaultdict(dict)
    for r in UsageRecord.objects.filter(org=org):
        out[r.day.isoformat()][r.model_raw] = out[r.day.isoformat()].get(r.model_raw, 0) + value(r)
    return dict(out)


def test_openai_sync_matches_the_recorded_totals(api, org, server, django_capture_on_commit_callbacks):
    oa.serve_completions(server)
    oa.serve_costs(server)
    connection = services.connection_create(
        org=org,
        provider="openai",
        label="OpenAI",
        api_key=oa.API_KEY,
        base_url=server.url_for(""),
        test=False,
    )
    run = _sync(api, org, connection, django_capture_on_commit_callbacks)
    assert run.pages == 4
    expected = sample_json("openai-usage-completions-expected.json")["by_day_model"]
    for name, value in {
        "input_tokens": lambda r: r.input_tokens,
        "input_cached_tokens": lambda r: r.cache_read_tokens,
        "output_tokens": lambda r: r.output_tokens,
        "num_model_requests": lambda r: r.requests,
    }.items():
        want = {d: {m: v[name] for m, v in models.items()} for d, models in expected.items()}
        assert by_day_model(org, value) == want, name
    # batch rows keep their tier and are priced at the batch price
    assert UsageRecord.objects.filter(org=org, service_tier="batch").exists()
    costs = sample_json("openai-costs-expected.json")
    per_day = dict(
        ProviderCostRecord.objects.filter(connection=connection)
        .values("day")
        .annotate(s=Sum("amount"))
        .values_list("day", "s")
    )
    want_days = costs.get("cost_by_day") or costs.get("cost_usd_by_day")
    assert {d.isoformat(): v for d, v in per_day.items()} == {
        d: Decimal(str(v)) for d, v in want_days.items()
    }
    assert (
        DailyRollup.objects.filter(org=org).aggregate(s=Sum("requests"))["s"]
        == UsageRecord.objects.filter(org=org).aggregate(s=Sum("requests"))["s"]
    )


def test_openrouter_sync_stores_reported_cost(api, org, server, django_capture_on_commit_callbacks):
    orr.serve_days(server)
    connection = services.connection_create(
        org=org,
        provider="openrouter",
        label="OpenRouter",
        api_key=orr.API_KEY,
        base_url=server.url_for(""),
        test=False,
    )
    _sync(api, org, connection, django_capture_on_commit_callbacks)
    expected = sample_json("openrouter-activity-expected.json")["by_day_model"]
    cost = by_day_model(org, lambda r: r.reported_cost)
    want = {d: {m: Decimal(v["usage_usd"]) for m, v in models.items()} for d, models in expected.items()}
    assert cost == want
    requests = by_day_model(org, lambda r: r.requests)
    assert requests == {d: {m: v["requests"] for m, v in models.items()} for d, models in expected.items()}
    assert set(UsageRecord.objects.filter(org=org).values_list("cost_basis", flat=True)) == {"reported"}
    total = sum(Decimal(v["usage_usd"]) for models in expected.values() for v in models.values())
    assert UsageRecord.objects.filter(org=org).aggregate(s=Sum("cost"))["s"] == total
    assert DailyRollup.objects.filter(org=org).aggregate(s=Sum("cost"))["s"] == total
