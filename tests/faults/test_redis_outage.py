"""Fault: Redis stops while the pre-flight check is under load, usage arrives during the outage, Redis comes back.

Real processes on loopback: a private redis-server (append-only file, fsynced on every write, so it comes back with
the counters it had: stale ones), the app under gunicorn with 2 sync workers, and client threads calling
`POST /api/v1/check`. Every answer is compared with what the database says at that moment.
"""

import os
import signal
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone

from apps.budgets import services as budget_services
from apps.connectors import services as connection_services
from apps.orgs.models import Organization
from apps.usage.models import UsageRecord
from tests.factories import OrganizationFactory, TeamFactory, make_token
from tests.faults import procs
from tests.faults.conftest import database_url, needs_servers

pytestmark = [pytest.mark.faults, needs_servers, pytest.mark.django_db(transaction=True)]
NANO = Decimal("1e9")

# Check bodies that together touch every budget; estimated costs make the decision a pure function of spend.
BODIES = [
    {"provider": "openai", "model": "gpt-4o-mini", "team": "Support", "estimated_cost": "5"},
    {"provider": "openai", "model": "gpt-4o-mini", "tags": {"feature": "chat"}, "estimated_cost": "4"},
    {"provider": "anthropic", "model": "claude-sonnet-4-5", "team": "Search", "estimated_cost": "1"},
    {"provider": "openai", "model": "gpt-4.1", "estimated_cost": "0.25"},
]


def event(i: int, *, team: str, model: str = "gpt-4o-mini", provider: str = "openai", feature="", cost: str):
    ts = datetime.now(UTC) - timedelta(seconds=30)
    return {
        "id": f"outage-{i}",
        "timestamp": ts.isoformat(),
        "provider": provider,
        "model": model,
        "input_tokens": 1000,
        "output_tokens": 100,
        "team": team,
        "cost": cost,
        **({"tags": {"feature": feature}} if feature else {}),
    }


def events(first: int, n: int) -> list[dict]:
    out = []
    for i in range(first, first + n):
        kind = i % 4
        if kind == 0:
            out.append(event(i, team="Support", cost=f"{1 + i % 3}.1250"))
        elif kind == 1:
            out.append(event(i, team="Search", feature="chat", cost="0.7300"))
        elif kind == 2:
            out.append(
                event(i, team="Search", provider="anthropic", model="claude-sonnet-4-5", cost="1.0001")
            )
        else:
            out.append(event(i, team="Support", model="gpt-4.1", feature="chat", cost="0.0420"))
    return out


def expected_spent(org, budgets) -> dict[int, Decimal]:
    """Spend per budget straight from the ledger (this month, up to today), independent of the app's code."""
    today = datetime.now(UTC).date()
    rows = UsageRecord.objects.filter(org=org, day__gte=today.replace(day=1), day__lte=today)
    out = {}
    for b in budgets:
        q = rows
        if b.scope == "team":
            q = q.filter(team_id=b.team_id)
        elif b.scope == "provider":
            q = q.filter(provider=b.provider)
        elif b.scope == "model":
            q = q.filter(model=b.model)
        elif b.scope == "tag":
            q = q.filter(feature=b.tag_value)
        out[b.pk] = sum((r.cost for r in q), Decimal(0))
    return out


def expected_answer(body: dict, budget_map: dict, spent: dict) -> tuple[str, dict[int, Decimal]]:
    cost = Decimal(body["estimated_cost"])
    rank = {"allow": 0, "warn": 1, "deny": 2}
    decision, per_budget = "allow", {}
    for b in budget_map.values():
        applies = (
            b.scope == "org"
            or (b.scope == "team" and b.team.name == body.get("team"))
            or (b.scope == "provider" and b.provider == body["provider"])
            or (b.scope == "model" and b.model == body["model"])
            or (b.scope == "tag" and body.get("tags", {}).get(b.tag_key) == b.tag_value)
        )
        if not applies:
            continue
        projected = spent[b.pk] + cost
        d = "allow"
        if b.hard_cap is not None and projected > b.hard_cap:
            d = "deny"
        elif projected > b.amount:
            d = "warn"
        per_budget[b.pk] = spent[b.pk]
        decision = max(decision, d, key=rank.get)
    return decision, per_budget


class Load:
    """Client threads calling POST /api/v1/check until stopped; every answer is kept for checking."""

    def __init__(self, url: str, token: str, threads: int = 4):
        self.url, self.token, self.threads = url, token, threads
        self.answers: list[tuple[float, dict, int, dict | str]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, n: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        i = n
        while not self.stopping.is_set():
            body = BODIES[i % len(BODIES)]
            i += 1
            try:
                r = httpx.post(self.url + "/api/v1/check", json=body, headers=headers, timeout=20)
                status, payload = r.status_code, (r.json() if r.status_code < 500 else r.text[:500])
            except httpx.HTTPError as exc:
                status, payload = 0, repr(exc)
            with self.lock:
                self.answers.append((time.monotonic(), body, status, payload))

    def __enter__(self):
        for t in self.workers:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.workers:
            t.join(timeout=30)

    def count(self, source: str, since: float = 0.0) -> int:
        with self.lock:
            return sum(
                1
                for t, _, status, p in self.answers
                if t >= since and status == 200 and isinstance(p, dict) and p["source"] == source
            )


def assert_correct(answers, budget_map, spent) -> Counter:
    sources = Counter()
    for _, body, status, payload in answers:
        assert status == 200, (status, payload)
        decision, per_budget = expected_answer(body, budget_map, spent)
        got = {b["id"]: Decimal(b["spent"]) for b in payload["budgets"]}
        assert got == {k: v.quantize(Decimal("0.0001")) for k, v in per_budget.items()}, (body, payload)
        assert payload["decision"] == decision, (body, payload)
        sources[payload["source"]] += 1
    return sources


def db_counter_fields(org, day) -> dict[str, int]:
    """The counter hash a day should hold, computed from the ledger rows (nanodollars per field)."""
    values: dict[str, int] = defaultdict(int)
    for r in UsageRecord.objects.filter(org=org, day=day):
        nanos = int(r.cost * NANO)
        fields = ["all", f"team:{r.team_id or 0}", f"provider:{r.provider}", f"model:{r.model}"]
        fields += [f"tag:feature={r.feature}"] if r.feature else []
        fields += [f"tag:customer={r.customer}"] if r.customer else []
        fields += [f"token:{r.token_id}"] if r.token_id else []
        for f in fields:
            values[f] += nanos
    return {f: v for f, v in values.items() if v}


def redis_hash(redis_client, key: str) -> dict[str, int]:
    raw = redis_client.hgetall(key)
    return {k.decode(): int(v) for k, v in raw.items() if k != b"_built" and int(v)}


def test_check_answers_stay_correct_through_a_redis_outage_and_counters_are_rebuilt(
    private_redis, started, counter_prefix
):
    org = OrganizationFactory(timezone="UTC")
    support = TeamFactory(org=org, name="Support")
    TeamFactory(org=org, name="Search")
    create = budget_services.budget_create
    budgets = [
        create(org=org, name="Company", amount=Decimal("60")),
        create(
            org=org, name="Support", scope="team", team=support, amount=Decimal("20"), hard_cap=Decimal("30")
        ),
        create(org=org, name="Anthropic", scope="provider", provider="anthropic", amount=Decimal("12")),
        create(org=org, name="GPT-4.1", scope="model", model="gpt-4.1", amount=Decimal("1")),
        create(
            org=org,
            name="Chat",
            scope="tag",
            tag_key="feature",
            tag_value="chat",
            amount=Decimal("9"),
            hard_cap=Decimal("14"),
        ),
    ]
    budget_map = {b.pk: b for b in budgets}
    _, token = make_token(org=org, scopes=["ingest", "check"])
    headers = {"Authorization": f"Bearer {token}"}
    app = started(
        procs.Gunicorn(
            procs.app_env(
                database_url=database_url(), redis_url=private_redis.url, counter_prefix=counter_prefix
            )
        )
    )
    r = httpx.post(app.url + "/api/v1/events", json={"events": events(0, 24)}, headers=headers, timeout=30)
    assert r.status_code == 200 and r.json()["accepted"] == 24, r.text
    spent = expected_spent(org, budgets)

    # 1. Under load, Redis is SIGKILLed: answers switch to the database, none is wrong, none is an error.
    with Load(app.url, token) as load:
        procs.wait_until(lambda: load.count("redis") >= 24, timeout=60, what="24 answers from the Redis path")
        private_redis.kill()
        killed_at = time.monotonic()
        procs.wait_until(
            lambda: load.count("database", since=killed_at) >= 24,
            timeout=60,
            what="24 answers from the database",
        )
    sources = assert_correct(load.answers, budget_map, spent)
    assert sources["redis"] >= 24 and sources["database"] >= 24, sources
    epoch_before = Organization.objects.get(pk=org.pk).counter_epoch

    # 2. Usage arrives while Redis is down: stored, and the very next checks (from the database) include it.
    r = httpx.post(app.url + "/api/v1/events", json={"events": events(100, 16)}, headers=headers, timeout=30)
    assert r.status_code == 200 and r.json()["accepted"] == 16, r.text
    assert Organization.objects.get(pk=org.pk).counter_epoch > epoch_before  # the counters are marked stale
    new_spent = expected_spent(org, budgets)
    assert new_spent != spent
    decisions_before = [expected_answer(b, budget_map, spent)[0] for b in BODIES]
    decisions_after = [expected_answer(b, budget_map, new_spent)[0] for b in BODIES]
    assert decisions_before != decisions_after  # the outage's usage changes what the check must answer
    with Load(app.url, token, threads=2) as load:
        procs.wait_until(lambda: load.count("database") >= 12, timeout=60, what="12 more database answers")
    assert set(assert_correct(load.answers, budget_map, new_spent)) == {"database"}
    # Writes whose follow-up task cannot be queued (Redis is also the broker) still succeed: a budget (its
    # evaluation waits for the hourly run) and a "sync now" (the run waits, queued, for the hourly recovery).
    _, admin = make_token(org=org, scopes=["admin"])
    admin_headers = {"Authorization": f"Bearer {admin}"}
    t0 = time.monotonic()
    r = httpx.post(
        app.url + "/api/v1/budgets",
        json={"name": "Mistral", "scope": "provider", "provider": "mistral", "amount": "5"},
        headers=admin_headers,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    assert time.monotonic() - t0 < 5  # not held up by the broker's reconnect loop
    connection = connection_services.connection_create(
        org=org,
        provider="openai",
        label="OpenAI",
        api_key="sk-admin-x",
        base_url="http://127.0.0.1:9",
        test=False,
    )
    t0 = time.monotonic()
    r = httpx.post(
        app.url + f"/api/v1/connectors/{connection.pk}/sync", json={}, headers=admin_headers, timeout=30
    )
    assert time.monotonic() - t0 < 5
    assert r.status_code == 202 and r.json()["status"] == "queued", r.text
    later = timezone.now() + timedelta(minutes=31)
    assert [run.pk for run in connection_services.runs_stalled(now=later)] == [r.json()["id"]]

    # 3. Redis comes back on the same port with the counters it had before the outage (stale: without the usage
    #    above). Answers come from Redis again, are right, and the rebuilt counters equal the database.
    stale_keys = []
    private_redis.start()
    stale_keys = [k.decode() for k in private_redis.client().keys(f"{counter_prefix}:{org.pk}:*")]
    assert stale_keys, "the restarted Redis should have kept the pre-outage counters"
    with Load(app.url, token) as load:
        procs.wait_until(lambda: load.count("redis") >= 24, timeout=60, what="24 answers from Redis again")
    sources = assert_correct(load.answers, budget_map, new_spent)
    assert sources["redis"] >= 24, sources
    today = datetime.now(UTC).date()
    epoch = Organization.objects.get(pk=org.pk).counter_epoch
    live = f"{counter_prefix}:{org.pk}:{epoch}:{today:%Y%m%d}"
    assert live not in stale_keys
    assert redis_hash(private_redis.client(), live) == db_counter_fields(org, today)
    # the stale hash is still there but nobody reads it: it lacks exactly the outage's usage
    stale = redis_hash(private_redis.client(), f"{counter_prefix}:{org.pk}:{epoch_before}:{today:%Y%m%d}")
    assert stale["all"] < redis_hash(private_redis.client(), live)["all"]

    # 4. New usage now goes into the live counters (the increment path works again) and checks see it.
    r = httpx.post(app.url + "/api/v1/events", json={"events": events(200, 8)}, headers=headers, timeout=30)
    assert r.status_code == 200 and r.json()["accepted"] == 8, r.text
    assert Organization.objects.get(pk=org.pk).counter_epoch == epoch
    assert redis_hash(private_redis.client(), live) == db_counter_fields(org, today)
    final = expected_spent(org, budgets)
    assert "deny" in [expected_answer(b, budget_map, final)[0] for b in BODIES]
    answers = [
        (
            0.0,
            body,
            (
                resp := httpx.post(app.url + "/api/v1/check", json=body, headers=headers, timeout=20)
            ).status_code,
            resp.json(),
        )
        for body in BODIES
    ]
    assert set(assert_correct(answers, budget_map, final)) == {"redis"}


def test_a_hung_redis_delays_checks_and_ingest_by_at_most_its_timeouts(
    private_redis, started, counter_prefix
):
    """Redis stopped with SIGSTOP: connections open but nothing ever answers (a hung or partitioned server). The
    check and ingest answer from the database within the client timeouts instead of waiting forever."""
    org = OrganizationFactory(timezone="UTC")
    support = TeamFactory(org=org, name="Support")
    TeamFactory(org=org, name="Search")
    budget = budget_services.budget_create(
        org=org, name="Support", scope="team", team=support, amount=Decimal("3")
    )
    _, token = make_token(org=org, scopes=["ingest", "check"])
    headers = {"Authorization": f"Bearer {token}"}
    app = started(
        procs.Gunicorn(
            procs.app_env(
                database_url=database_url(), redis_url=private_redis.url, counter_prefix=counter_prefix
            )
        )
    )
    body = BODIES[0]
    r = httpx.post(app.url + "/api/v1/check", json=body, headers=headers, timeout=20)
    assert r.status_code == 200 and r.json()["source"] == "redis", r.text
    os.kill(private_redis.process.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = httpx.post(app.url + "/api/v1/events", json={"events": events(0, 4)}, headers=headers, timeout=20)
        assert r.status_code == 200 and r.json()["accepted"] == 4, r.text
        for _ in range(4):  # both workers, each with its own connections to the hung server
            r = httpx.post(app.url + "/api/v1/check", json=body, headers=headers, timeout=20)
            assert r.status_code == 200 and r.json()["source"] == "database", r.text
            spent = {b["id"]: Decimal(b["spent"]) for b in r.json()["budgets"]}
            assert spent[budget.pk] == expected_spent(org, [budget])[budget.pk]
        assert time.monotonic() - t0 < 15, "requests waited on the hung Redis"
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
