"""The check's hot path: no SQL, one Redis round trip, cached tokens and configuration confirmed by the org version.

Most of these need a real Redis (CI runs them with REDIS_URL); the equality tests of the fast validation and the
answer writer run everywhere.
"""

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis
import time_machine
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.budgets import check as check_module
from apps.budgets import counters, services
from apps.budgets.check import CheckResult, result_data
from apps.budgets.serializers import CheckResultSerializer, CheckSerializer, check_body_fast
from apps.orgs import versions
from apps.orgs.authentication import forget_tokens
from apps.orgs.models import ApiToken, Membership
from apps.orgs.services import api_token_revoke, membership_remove, team_create
from apps.orgs.throttling import TokenRateThrottle
from tests.factories import TeamFactory
from tests.helpers import assert_error
from tests.usage.factories import event, ingest

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 20, 15, tzinfo=UTC)
needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs a real Redis (CI sets REDIS_URL)")
BODY = {"provider": "openai", "model": "gpt-4o-mini", "team": "Support", "estimated_cost": "15"}


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def fresh_caches():
    """Each test starts with empty worker caches (another test's org may have had the same id on SQLite)."""
    forget_tokens()
    check_module.forget_configs()
    counters.reset_client()
    yield
    forget_tokens()
    check_module.forget_configs()
    counters.reset_client()


@pytest.fixture
def setup(org, api):
    support = TeamFactory(org=org, name="Support")
    services.budget_create(org=org, name="Company", amount=Decimal("1000"))
    services.budget_create(
        org=org, name="Support", scope="team", team=support, amount=Decimal("100"), hard_cap=Decimal("120")
    )
    services.budget_create(org=org, name="GPT-4.1", scope="model", model="gpt-4.1", amount=Decimal("50"))
    ingest(
        org,
        [
            event(1, ts=datetime(2026, 11, 19, 9, tzinfo=UTC), cost="90", team="Support"),
            event(2, ts=datetime(2026, 11, 19, 9, tzinfo=UTC), cost="45", model="gpt-4.1"),
        ],
    )
    return org, api(org, scopes=["check"]), support


def post(client, body=BODY, **extra):
    return client.post("/api/v1/check", body, format="json", **extra)


class RedisCalls:
    """Counts commands and pipelines sent to Redis (they still run: nothing is mocked)."""

    def __init__(self, monkeypatch):
        self.n = 0
        execute, pipeline = redis.Redis.execute_command, redis.client.Pipeline.execute

        def counted(client, *args, **kwargs):
            self.n += 1
            return execute(client, *args, **kwargs)

        def counted_pipeline(pipe, *args, **kwargs):
            self.n += 1
            return pipeline(pipe, *args, **kwargs)

        monkeypatch.setattr(redis.Redis, "execute_command", counted)
        monkeypatch.setattr(redis.client.Pipeline, "execute", counted_pipeline)


@needs_redis
def test_a_warm_check_runs_no_sql_and_one_redis_round_trip(setup, monkeypatch):
    org, client, _ = setup
    first = post(client)
    assert first.status_code == 200 and first.json()["source"] == "redis"
    calls = RedisCalls(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        again = post(client)
    assert again.status_code == 200 and again.json() == first.json()
    assert [q["sql"] for q in queries.captured_queries] == []
    assert calls.n == 1
    assert again.json()["decision"] == "warn"  # 90 + 15 > 100


@needs_redis
def test_revoking_a_cached_token_takes_effect_on_the_next_check(setup):
    org, client, _ = setup
    assert post(client).status_code == 200  # cached now
    api_token_revoke(token=ApiToken.objects.get(pk=client.token.pk))
    assert_error(post(client), 401, "not_authenticated")


@needs_redis
def test_removing_the_creator_or_deactivating_them_takes_effect_at_once(setup, api, member_of):
    org, client, _ = setup
    assert post(client).status_code == 200
    owner = Membership.objects.get(org=org, user=member_of(org, "owner"))
    membership_remove(membership=Membership.objects.get(user=client.token.created_by, org=org), actor=owner)
    assert_error(post(client), 401)

    other = api(org, scopes=["check"])
    assert post(other).status_code == 200
    user = other.token.created_by
    user.is_active = False
    user.save()
    assert_error(post(other), 401)


@needs_redis
def test_an_expiry_passing_is_seen_without_a_reload(setup, api):
    org, _, _ = setup
    client = api(org, scopes=["check"], expires_at=NOW + timedelta(minutes=5))
    assert post(client).status_code == 200
    with time_machine.travel(NOW + timedelta(minutes=6), tick=False):
        assert_error(post(client), 401)


@needs_redis
def test_a_change_that_bypasses_signals_is_seen_within_the_cache_bound(setup, monkeypatch):
    """queryset.update() sends no signal, so the version does not move: the worker's copy is read again after
    CACHE_SECONDS (0 here), not later."""
    org, client, _ = setup
    assert post(client).status_code == 200
    ApiToken.objects.filter(pk=client.token.pk).update(revoked_at=NOW)
    assert post(client).status_code == 200  # still the cached copy: the documented bound
    monkeypatch.setattr(versions, "CACHE_SECONDS", 0.0)
    assert_error(post(client), 401)


@needs_redis
def test_a_version_bump_from_another_process_reloads_token_and_configuration(setup):
    """Another worker's change arrives only as a new org version in Redis (simulated with a direct SET)."""
    org, client, _ = setup
    assert post(client, {**BODY, "team": "Growth"}).status_code == 400  # no such team yet (and cached)
    from apps.orgs.models import Team

    Team.objects.bulk_create([Team(org=org, name="Growth")])  # no signal: this process does not know
    assert post(client, {**BODY, "team": "Growth"}).status_code == 400
    redis.Redis.from_url(settings.REDIS_URL).set(versions.key(org.pk), "from-another-process")
    assert post(client, {**BODY, "team": "Growth"}).status_code == 200


@needs_redis
def test_a_new_team_and_a_new_budget_apply_to_the_next_check(setup):
    org, client, _ = setup
    assert post(client).json()["decision"] == "warn"
    team_create(org=org, name="Growth")
    assert post(client, {**BODY, "team": "Growth"}).json()["decision"] == "allow"
    services.budget_create(org=org, name="Tight", amount=Decimal("10"), hard_cap=Decimal("20"))
    assert post(client).json()["decision"] == "deny"


@needs_redis
def test_last_used_is_written_at_most_once_a_minute(setup):
    org, client, _ = setup
    assert ApiToken.objects.get(pk=client.token.pk).last_used_at is None
    assert post(client).status_code == 200
    assert ApiToken.objects.get(pk=client.token.pk).last_used_at == NOW
    with time_machine.travel(NOW + timedelta(seconds=30), tick=False):
        with CaptureQueriesContext(connection) as queries:
            assert post(client).status_code == 200
        assert not queries.captured_queries
    assert ApiToken.objects.get(pk=client.token.pk).last_used_at == NOW
    # the minute's marker expires (Redis keeps real time): the next check writes it again
    redis.Redis.from_url(settings.REDIS_URL).delete(f"{versions.key(org.pk)}:used:{client.token.pk}")
    with time_machine.travel(NOW + timedelta(seconds=90), tick=False):
        assert post(client).status_code == 200
    assert ApiToken.objects.get(pk=client.token.pk).last_used_at == NOW + timedelta(seconds=90)


@needs_redis
def test_throttle_counts_in_the_round_trip_and_answers_429_with_retry_after(setup, api, monkeypatch):
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "3/min", "check": "3/min"})
    org, client, _ = setup
    assert post(client).status_code == 200
    assert_error(post(client, {"provider": "openai"}), 400)  # bad input counts too
    assert post(client).status_code == 200
    throttled = post(client)
    assert_error(throttled, 429, "throttled")
    assert int(throttled["Retry-After"]) >= 1
    assert_error(post(client, {"provider": "openai"}), 429)  # throttling comes before validation
    other = api(org, scopes=["check"])
    assert post(other).status_code == 200  # per token


@needs_redis
def test_a_revoked_cached_token_gets_401_even_with_a_bad_body(setup):
    org, client, _ = setup
    assert post(client).status_code == 200
    api_token_revoke(token=ApiToken.objects.get(pk=client.token.pk))
    assert_error(post(client, {"provider": "openai"}), 401)


@needs_redis
def test_redis_down_answers_equal_every_budget_scope(org, api, settings):
    """Every scope (org, team, provider, model, feature and customer tags, another tag, token), from the counters
    and from the database: the same spent per budget; the fallback runs a handful of queries."""
    token_client = api(org, scopes=["check", "ingest"])
    team = TeamFactory(org=org, name="Search")
    made = [
        services.budget_create(org=org, name="org", amount=Decimal("500")),
        services.budget_create(org=org, name="team", scope="team", team=team, amount=Decimal("50")),
        services.budget_create(
            org=org, name="prov", scope="provider", provider="openai", amount=Decimal("60")
        ),
        services.budget_create(
            org=org, name="model", scope="model", model="gpt-4o-mini", amount=Decimal("70")
        ),
        services.budget_create(
            org=org, name="feat", scope="tag", tag_key="feature", tag_value="chat", amount=Decimal("20")
        ),
        services.budget_create(
            org=org, name="cust", scope="tag", tag_key="customer", tag_value="acme", amount=Decimal("20")
        ),
        services.budget_create(
            org=org, name="env", scope="tag", tag_key="environment", tag_value="prod", amount=Decimal("20")
        ),
        services.budget_create(
            org=org, name="tok", scope="token", token=token_client.token, amount=Decimal("20")
        ),
    ]
    rng = random.Random(3)
    events = [
        event(
            i,
            ts=datetime(2026, 11, rng.randint(1, 20), rng.randint(0, 14), tzinfo=UTC),
            cost=str(Decimal(rng.randint(1, 10**6)) / 10**5),
            model=rng.choice(["gpt-4o-mini", "gpt-4.1"]),
            team=rng.choice(["Search", None]),
            tags={"feature": rng.choice(["chat", "rag"]), "customer": rng.choice(["acme", "beta"])},
            environment=rng.choice(["prod", "dev"]),
        )
        for i in range(60)
    ]
    for e in events:
        if e["team"] is None:
            del e["team"]
    ingest(org, events[:30], token=token_client.token)
    ingest(org, events[30:])
    body = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "team": "Search",
        "estimated_cost": "1",
        "tags": {"feature": "chat", "customer": "acme", "environment": "prod"},
    }
    fast = post(token_client, body).json()
    assert fast["source"] == "redis+database"  # the environment tag has no counter
    assert {b["name"] for b in fast["budgets"]} == {b.name for b in made}
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    counters.reset_client()
    with CaptureQueriesContext(connection) as queries:
        slow = post(token_client, body).json()
    assert slow["source"] == "database" and slow["budgets"] == fast["budgets"]
    # token, budgets, teams, price overrides, rollup sums, ledger sums (token), the other tag (spend_by) — no more
    assert len(queries.captured_queries) <= 8, [q["sql"][:80] for q in queries.captured_queries]


# --- equal to the serializers (no Redis needed) -----------------------------------------------------------------------

BODIES = [
    {"provider": "openai", "model": "gpt-4o", "estimated_input_tokens": 5},
    {"provider": "openai", "model": "gpt-4o", "estimated_cost": "1.5"},
    {"provider": "openai", "model": "gpt-4o", "estimated_cost": 3},
    {"provider": "openai", "model": "gpt-4o", "estimated_cost": None, "estimated_output_tokens": 2},
    {
        "provider": "openai",
        "model": "gpt-4o",
        "estimated_cost": "0.00000000001",
    },  # 11 places: serializer's error
    {"provider": "openai", "model": "gpt-4o", "estimated_cost": "123456789"},  # 9 whole digits: error
    {"provider": "openai", "model": "gpt-4o", "estimated_cost": "12345678.0123456789"},
    {"provider": "openai", "model": "gpt-4o", "estimated_cost": 1.5},  # float: serializer decides
    {"provider": "openai", "model": "gpt-4o", "estimated_input_tokens": "5"},  # string: serializer coerces
    {"provider": "openai", "model": "gpt-4o", "estimated_input_tokens": True},
    {"provider": "openai", "model": "gpt-4o", "estimated_input_tokens": 10**9 + 1},
    {"provider": " openai", "model": "gpt-4o", "estimated_input_tokens": 5},
    {"provider": "openai", "model": "gpt-4o ", "estimated_input_tokens": 5},
    {"provider": "openai\n", "model": "gpt-4o", "estimated_input_tokens": 5},
    {"provider": "Open AI", "model": "gpt-4o", "estimated_input_tokens": 5},
    {"provider": "openai", "model": "gpt-4o", "team": "", "estimated_input_tokens": 5},
    {"provider": "openai", "model": "gpt-4o", "team": None, "estimated_input_tokens": 5},
    {"provider": "openai", "model": "gpt-4o", "team": "Süd", "estimated_input_tokens": 5},
    {"provider": "openai", "model": "gpt-4o", "team": "a\x00b", "estimated_input_tokens": 5},
    {"provider": "openai", "model": "gpt-4o", "team": "x" * 101, "estimated_input_tokens": 5},
    {"provider": "openai", "model": "gpt-4o", "tags": {"feature": "chat"}, "estimated_input_tokens": 5},
    {"provider": "openai", "model": "gpt-4o", "tags": {"feature": ""}, "estimated_input_tokens": 5},
    {"provider": "openai", "model": "gpt-4o", "tags": {"feature": 5}, "estimated_input_tokens": 5},
    {"provider": "openai", "model": "gpt-4o", "tags": [], "estimated_input_tokens": 5},
    {"provider": "openai", "model": "gpt-4o", "extra": 1, "estimated_input_tokens": 5},
    {"provider": "openai", "model": "gpt-4o"},
    {"provider": "openai", "model": "gpt-4o", "estimated_input_tokens": 5, "estimated_cache_read_tokens": 6},
    {"provider": "openai", "model": "gpt-4o", "estimated_input_tokens": 6, "estimated_cache_read_tokens": 6},
    {"model": "gpt-4o", "estimated_input_tokens": 5},
    [],
    "x",
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: json.dumps(b)[:60])
def test_fast_validation_accepts_only_what_the_serializer_accepts_unchanged(body):
    fast = check_body_fast(body)
    serializer = CheckSerializer(data=body)
    if fast is not None:
        assert serializer.is_valid(), serializer.errors
        assert fast == dict(serializer.validated_data)


def test_the_fast_path_takes_the_common_bodies():
    assert check_body_fast(BODIES[0]) is not None and check_body_fast(BODIES[1]) is not None
    assert check_body_fast(BODIES[2])["estimated_cost"] == Decimal("3.0000000000")


def test_the_answer_is_written_as_the_serializer_writes_it():
    rng = random.Random(7)
    for _ in range(300):
        budgets = []
        for i in range(rng.randint(0, 4)):
            amount = Decimal(rng.randint(1, 10**9)) / 100
            spent = Decimal(rng.randint(-(10**12), 10**14)) / 10**9
            cost = Decimal(rng.randint(0, 10**12)) / 10 ** rng.randint(0, 14)
            budgets.append(
                {
                    "id": i + 1,
                    "name": f"b{i}",
                    "scope": "org",
                    "period_start": datetime(2026, 11, 1).date(),
                    "period_end": datetime(2026, 12, 1).date(),
                    "amount": amount,
                    "hard_cap": rng.choice([None, amount * 2]),
                    "spent": spent,
                    "remaining": amount - spent,
                    "projected": spent + cost,
                    "decision": rng.choice(["allow", "warn", "deny"]),
                }
            )
        result = CheckResult(
            decision=rng.choice(["allow", "warn", "deny"]),
            estimated_cost=Decimal(rng.randint(0, 10**12)) / 10 ** rng.randint(0, 14),
            priced=rng.choice([True, False]),
            budgets=budgets,
            source=rng.choice(["redis", "database"]),
        )
        expected = CheckResultSerializer(
            {
                "decision": result.decision,
                "estimated_cost": result.estimated_cost,
                "currency": "USD",
                "priced": result.priced,
                "budgets": result.budgets,
                "recommended_model": None,
                "source": result.source,
            }
        ).data
        assert json.loads(json.dumps(result_data(result))) == json.loads(json.dumps(expected))


def test_the_check_answers_json_whatever_the_accept_header(api, org):
    services.budget_create(org=org, name="Company", amount=Decimal("1000"))
    client = api(org, scopes=["check"])
    response = post(
        client, {"provider": "openai", "model": "gpt-4o", "estimated_cost": "1"}, HTTP_ACCEPT="text/html"
    )
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response.json()["decision"] == "allow"


@needs_redis
def test_a_redis_failure_drops_the_cached_configuration(setup):
    """While Redis is away, writes bump the org's counter epoch in the database but cannot bump the org version,
    and a Redis that comes back may hold the old version and the old, stale counters. A process that saw Redis fail
    reloads its cached configuration (and so the epoch) instead of trusting the old version (found by the fault test
    tests/faults/test_redis_outage.py: stale answers for up to versions.CACHE_SECONDS after the restart)."""
    from apps.orgs.models import Organization
    from spendctl.common import redis_client

    org, client, _ = setup
    first = post(client)
    assert first.status_code == 200
    truth = {b["id"]: b["spent"] for b in first.json()["budgets"]}
    # The old epoch's counters go stale (usage the counters never saw), and the epoch moves on in the database only.
    old = Organization.objects.get(pk=org.pk).counter_epoch
    stale = counters.client()
    for key in stale.keys(f"{settings.SPEND_COUNTER_PREFIX}:{org.pk}:{old}:*"):
        stale.hincrby(key, "all", 7 * 10**9)
    Organization.objects.filter(pk=org.pk).update(counter_epoch=old + 1)

    cached = post(client).json()["budgets"]
    assert {b["id"]: b["spent"] for b in cached} != truth  # the cached epoch: the stale counters

    redis_client.mark_down(force=True)  # this process sees Redis fail ...
    redis_client._down_until = 0.0  # ... and come back
    again = post(client)
    assert again.status_code == 200 and again.json()["source"] == "redis"
    assert {b["id"]: b["spent"] for b in again.json()["budgets"]} == truth
