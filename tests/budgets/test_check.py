from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.conf import settings

from apps.budgets import counters, services
from tests.factories import TeamFactory
from tests.helpers import assert_error
from tests.usage.factories import event, ingest

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 20, 15, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def budgets(org):
    support = TeamFactory(org=org, name="Support")
    org_budget = services.budget_create(org=org, name="Company", amount=Decimal("1000"))
    team_budget = services.budget_create(
        org=org, name="Support", scope="team", team=support, amount=Decimal("100"), hard_cap=Decimal("120")
    )
    model_budget = services.budget_create(
        org=org, name="GPT-4.1", scope="model", model="gpt-4.1", amount=Decimal("50")
    )
    ingest(
        org,
        [
            event(1, ts=datetime(2026, 11, 19, 9, tzinfo=UTC), cost="90", team="Support"),
            event(2, ts=datetime(2026, 11, 19, 9, tzinfo=UTC), cost="45", model="gpt-4.1"),
        ],
    )
    return org, support, org_budget, team_budget, model_budget


def check(api, org, **body):
    return api(org, scopes=["check"]).post(
        "/api/v1/check", {"provider": "openai", "model": "gpt-4o-mini", **body}, format="json"
    )


def test_overlapping_budgets_decide_allow_warn_deny(api, budgets):
    org, support, org_budget, team_budget, model_budget = budgets
    allow = check(api, org, estimated_cost="5").json()
    assert allow["decision"] == "allow" and [b["name"] for b in allow["budgets"]] == ["Company"]
    warn = check(api, org, team="Support", estimated_cost="15").json()  # 90 + 15 > 100 soft, < 120 hard
    assert warn["decision"] == "warn"
    by_name = {b["name"]: b for b in warn["budgets"]}
    assert by_name["Support"]["decision"] == "warn" and by_name["Company"]["decision"] == "allow"
    assert (
        Decimal(by_name["Support"]["spent"]) == Decimal("90")
        and Decimal(by_name["Support"]["remaining"]) == 10
    )
    deny = check(api, org, team="Support", estimated_cost="31").json()  # 121 > hard cap 120
    assert deny["decision"] == "deny" and deny["budgets"][0]["name"] == "Support"
    model = check(api, org, model="gpt-4.1", estimated_cost="6").json()  # 45 + 6 > 50
    assert model["decision"] == "warn" and {b["name"] for b in model["budgets"]} == {"Company", "GPT-4.1"}


def test_estimate_from_tokens_uses_the_catalog(api, budgets):
    org = budgets[0]
    body = check(
        api, org, estimated_input_tokens=1_000_000, estimated_output_tokens=0, model="gpt-4.1"
    ).json()
    assert Decimal(body["estimated_cost"]) == Decimal("2") and body["priced"] is True
    unknown = check(api, org, provider="selfhosted", model="llama", estimated_input_tokens=10).json()
    assert unknown["priced"] is False and Decimal(unknown["estimated_cost"]) == 0


def test_new_usage_is_counted_by_the_next_check(api, budgets, django_capture_on_commit_callbacks):
    org = budgets[0]
    assert check(api, org, team="Support", estimated_cost="5").json()["decision"] == "allow"
    with django_capture_on_commit_callbacks(execute=True):
        ingest(org, [event(3, ts=datetime(2026, 11, 20, 10, tzinfo=UTC), cost="8", team="Support")])
    after = check(api, org, team="Support", estimated_cost="5").json()
    assert after["decision"] == "warn"  # 98 + 5 > 100
    assert Decimal({b["name"]: b for b in after["budgets"]}["Support"]["spent"]) == Decimal("98")


@pytest.mark.parametrize("team", ["³", "٣"])
def test_a_team_in_non_ascii_digits_is_a_field_error(api, budgets, team):
    response = check(api, budgets[0], team=team, estimated_cost="1")
    assert_error(response, 400, fields=["team"])


def test_a_team_bound_token_checks_its_own_team(api, budgets):
    org, support = budgets[0], budgets[1]
    client = api(org, scopes=["check"], team=support)
    body = client.post(
        "/api/v1/check", {"provider": "openai", "model": "gpt-4o-mini", "estimated_cost": "15"}, format="json"
    ).json()
    assert body["decision"] == "warn" and "Support" in {b["name"] for b in body["budgets"]}
    TeamFactory(org=org, name="Growth")
    other = client.post(
        "/api/v1/check",
        {"provider": "openai", "model": "gpt-4o-mini", "estimated_cost": "1", "team": "Growth"},
        format="json",
    )
    assert_error(other, 400, fields=["team"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "estimated_input_tokens"),
        ({"estimated_input_tokens": -1}, "estimated_input_tokens"),
        ({"estimated_cost": "-1"}, "estimated_cost"),
        ({"estimated_cost": "x"}, "estimated_cost"),
        ({"team": "Nobody", "estimated_cost": "1"}, "team"),
        ({"provider": "Bad Provider", "estimated_cost": "1"}, "provider"),
        ({"estimated_cost": "1", "extra": 1}, "extra"),
        ({"estimated_input_tokens": 5, "estimated_cache_read_tokens": 9}, "estimated_cache_read_tokens"),
    ],
)
def test_check_bad_input(api, budgets, body, field):
    assert_error(check(api, budgets[0], **body), 400, fields=[field])


def test_check_needs_the_check_scope(api, budgets):
    response = api(budgets[0], scopes=["read"]).post(
        "/api/v1/check", {"provider": "openai", "model": "x", "estimated_cost": "1"}, format="json"
    )
    assert_error(response, 403)


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs a real Redis (CI sets REDIS_URL)")
def test_redis_counters_equal_the_database_and_survive_an_outage(
    api, budgets, monkeypatch, django_capture_on_commit_callbacks
):
    org = budgets[0]
    fast = check(api, org, team="Support", estimated_cost="1").json()
    assert fast["source"] == "redis"
    monkeypatch.setattr(counters, "enabled", lambda: False)
    slow = check(api, org, team="Support", estimated_cost="1").json()
    assert slow["source"] == "database" and slow["budgets"] == fast["budgets"]
    monkeypatch.undo()
    # Redis refuses connections while usage arrives: the write succeeds, the org's counters are marked stale,
    # checks answer from the database, and once Redis is back the counters are rebuilt and include that usage.
    monkeypatch.setattr(settings, "REDIS_URL", "redis://127.0.0.1:1/0")
    counters.reset_client()
    with django_capture_on_commit_callbacks(execute=True):
        ingest(org, [event(9, ts=datetime(2026, 11, 20, 11, tzinfo=UTC), cost="7", team="Support")])
    down = check(api, org, team="Support", estimated_cost="1").json()
    assert down["source"] == "database"
    assert Decimal({b["name"]: b for b in down["budgets"]}["Support"]["spent"]) == Decimal("97")
    monkeypatch.undo()
    counters.reset_client()
    back = check(api, org, team="Support", estimated_cost="1").json()
    assert back["source"] == "redis"
    assert Decimal({b["name"]: b for b in back["budgets"]}["Support"]["spent"]) == Decimal("97")


def test_status_api_and_alerts_api(api, budgets):
    org, _, org_budget, team_budget, model_budget = budgets
    client = api(org)
    status = client.get(f"/api/v1/budgets/{team_budget.pk}/status").json()
    assert Decimal(status["spent"]) == Decimal("90") and Decimal(status["percent"]) == Decimal("90.0")
    assert status["thresholds_crossed"] == [50, 80] and status["days_left"] == 11
    assert status["period_start"] == "2026-11-01" and status["period_end"] == "2026-12-01"
    raised = services.budgets_evaluate(org=org, today=date(2026, 11, 20))
    assert {(a.budget_id, a.threshold) for a in raised if a.kind == "threshold"} == {
        (team_budget.pk, 50),
        (team_budget.pk, 80),
        (model_budget.pk, 50),
        (model_budget.pk, 80),
    }
    alerts = client.get("/api/v1/alerts?kind=threshold").json()["results"]
    assert len(alerts) == 4
    acked = client.post(f"/api/v1/alerts/{alerts[0]['id']}/acknowledge", {}, format="json").json()
    assert acked["acknowledged_at"] and acked["acknowledged_by"]
    assert len(client.get("/api/v1/alerts?open=true").json()["results"]) == len(raised) - 1


def test_budget_api_validation_and_cross_org(api, org, other_org):
    client = api(org)
    foreign = TeamFactory(org=other_org)
    assert_error(
        client.post("/api/v1/budgets", {"name": "x", "amount": "0"}, format="json"), 400, fields=["amount"]
    )
    assert_error(
        client.post(
            "/api/v1/budgets",
            {"name": "x", "amount": "5", "scope": "team", "team": foreign.pk},
            format="json",
        ),
        400,
        fields=["team"],
    )
    created = client.post(
        "/api/v1/budgets", {"name": "AI", "amount": "500", "thresholds": [90, 50]}, format="json"
    )
    assert created.status_code == 201 and created.json()["thresholds"] == [50, 90]
    assert_error(api(other_org).get(f"/api/v1/budgets/{created.json()['id']}/status"), 404)


def test_a_new_budget_applies_to_the_next_check_at_once(api, budgets):
    org = budgets[0]
    assert check(api, org, estimated_cost="5").json()["decision"] == "allow"
    # the org has spent 135 this month: a new org-wide budget of 100 with a hard cap of 130 denies at once
    services.budget_create(org=org, name="Tight", amount=Decimal("100"), hard_cap=Decimal("130"))
    assert check(api, org, estimated_cost="5").json()["decision"] == "deny"


def test_with_redis_down_the_check_and_ingest_still_answer(api, budgets, settings):
    """Cache, broker and counters all on an unreachable Redis: answers come from the database, writes succeed."""
    from django.core.cache import caches

    org = budgets[0]
    client = api(org, scopes=["check", "ingest"])
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    counters.reset_client()
    try:
        body = client.post(
            "/api/v1/check",
            {"provider": "openai", "model": "gpt-4o-mini", "team": "Support", "estimated_cost": "15"},
            format="json",
        )
        assert body.status_code == 200, body.content
        assert body.json()["source"] == "database" and body.json()["decision"] == "warn"
        pushed = client.post(
            "/api/v1/events",
            {"events": [event(77, ts=datetime(2026, 11, 20, 9, tzinfo=UTC), cost="1")]},
            format="json",
        )
        assert pushed.status_code == 200 and pushed.json()["accepted"] == 1
    finally:
        counters.reset_client()
        caches["default"].close()
