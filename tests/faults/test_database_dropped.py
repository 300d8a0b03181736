"""Fault: the database connection drops in the middle of ingest batches.

Real processes on loopback: the app under gunicorn (2 sync workers) reaches PostgreSQL only through a TCP proxy in
this test process, which cuts every connection (a) in the middle of an ingest transaction, after its COPY started,
(b) right after a COMMIT reached the server, so the client cannot know whether its batch was stored, and
(c) refuses new connections for a while (the database is gone). Client threads push batches to
`POST /api/v1/events` and retry a batch on any failure, as a well-behaved client does. Afterwards every event is
stored exactly once, costs and token sums equal what was sent, and both rollups equal the ledger.
"""

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from django.db.models import Count, Sum

from apps.usage.models import DailyModelRollup, DailyRollup, UsageRecord
from tests.factories import OrganizationFactory, make_token
from tests.faults import procs
from tests.faults.conftest import database_url, needs_servers

pytestmark = [pytest.mark.faults, needs_servers, pytest.mark.django_db(transaction=True)]
BATCHES, PER_BATCH, CLIENTS = 18, 300, 3
SUMMED = ("requests", "uncached_input_tokens", "cache_read_tokens", "output_tokens", "cost")


def batch(b: int) -> list[dict]:
    base = datetime.now(UTC) - timedelta(hours=2)
    return [
        {
            "id": f"b{b}-e{i}",
            "timestamp": (base - timedelta(days=i % 3, seconds=i)).isoformat(),
            "provider": "openai",
            "model": ("gpt-4o-mini", "gpt-4.1", "o3")[i % 3],
            "input_tokens": 1000 + i,
            "cache_read_tokens": i % 7 * 10,
            "output_tokens": 50 + b,
            "cost": f"0.{(b * PER_BATCH + i) % 9973:04d}",
            "tags": {"feature": f"f{i % 4}"},
        }
        for i in range(PER_BATCH)
    ]


def assert_clean_503(response: httpx.Response) -> None:
    """The database is unavailable: one error shape, a Retry-After, nothing of the exception leaks."""
    assert response.status_code == 503, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}, body
    assert body["error"]["code"] == "unavailable", body
    assert int(response.headers["retry-after"]) >= 1
    for leak in ("Traceback", "psycopg", "OperationalError", "Error", "127.0.0.1", "SELECT", "COPY"):
        assert leak not in body["error"]["message"], body


class Clients:
    """Threads that each push their share of the batches, retrying a batch until it is answered 200."""

    def __init__(self, url: str, token: str):
        self.url, self.headers = url, {"Authorization": f"Bearer {token}"}
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.results: dict[int, list[dict]] = {}
        self.problems: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(CLIENTS)]

    def _run(self, n: int) -> None:
        for b in range(n, BATCHES, CLIENTS):
            body = {"events": batch(b)}
            for _attempt in range(200):
                try:
                    r = httpx.post(self.url + "/api/v1/events", json=body, headers=self.headers, timeout=30)
                except httpx.TransportError as exc:
                    with self.lock:
                        self.statuses[type(exc).__name__] += 1
                    continue
                with self.lock:
                    self.statuses[r.status_code] += 1
                if r.status_code == 200:
                    with self.lock:
                        self.results.setdefault(b, []).append(r.json())
                    break
                try:
                    assert_clean_503(r)
                except AssertionError as exc:
                    with self.lock:
                        self.problems.append(str(exc)[:600])
            else:
                with self.lock:
                    self.problems.append(f"batch {b} never stored")

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        for t in self.threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in self.threads), "clients did not finish"

    def done(self) -> int:
        with self.lock:
            return len(self.results)


def test_ingest_batches_survive_dropped_database_connections_exactly_once(
    private_redis, started, counter_prefix
):
    org = OrganizationFactory(timezone="UTC")
    _, token = make_token(org=org, scopes=["ingest"])
    proxy = started(procs.TcpProxy(upstream_port=int(database_url().rsplit(":", 1)[1].split("/")[0])))
    env = procs.app_env(
        database_url=database_url(port=proxy.port), redis_url=private_redis.url, counter_prefix=counter_prefix
    )
    app = started(procs.Gunicorn(env))
    clients = Clients(app.url, token)

    proxy.arm_cut(b"COPY")  # (a) in the middle of an ingest transaction
    clients.start()
    procs.wait_until(proxy.fired.is_set, timeout=60, what="a cut in the middle of a COPY")
    proxy.arm_cut(
        b"Q\x00\x00\x00\x0bCOMMIT\x00", forward=True
    )  # (b) a COMMIT gets through; its answer is lost
    procs.wait_until(proxy.fired.is_set, timeout=60, what="a cut right after a COMMIT")
    proxy.refuse(True)  # (c) the database is gone for a while: requests get a clean 503
    seen = clients.statuses[503]
    procs.wait_until(
        lambda: clients.statuses[503] >= seen + 3, timeout=60, what="503s while the database is away"
    )
    proxy.refuse(False)
    clients.join()

    assert not clients.problems, clients.problems
    assert clients.done() == BATCHES
    assert proxy.cuts >= 3 and clients.statuses[503] >= 3, clients.statuses
    assert set(clients.statuses) <= {200, 503}, (
        clients.statuses
    )  # never a 500, never a dropped HTTP connection
    # Each batch is either wholly stored or not at all: a batch's final answer accepted all of it, or (its
    # COMMIT went through but the answer was lost) reported all of it as duplicates of itself.
    for b, answers in clients.results.items():
        final = answers[-1]
        assert final["rejected"] == 0 and final["accepted"] + final["duplicates"] == PER_BATCH, (b, final)
        assert final["accepted"] in (0, PER_BATCH), (b, final)
    ambiguous = [b for b, answers in clients.results.items() if answers[-1]["accepted"] == 0]
    # exactly one: the batch whose COMMIT answer was cut was stored, and its retry added nothing
    assert len(ambiguous) == 1, clients.results

    # Every event exactly once, with exactly the costs and tokens that were sent.
    sent = [e for b in range(BATCHES) for e in batch(b)]
    records = UsageRecord.objects.filter(org=org)
    assert records.count() == len(sent) == records.values("key").distinct().count()
    assert records.aggregate(s=Sum("cost"))["s"] == sum(Decimal(e["cost"]) for e in sent)
    assert records.aggregate(s=Sum("output_tokens"))["s"] == sum(e["output_tokens"] for e in sent)
    assert set(records.values_list("key", flat=True)) == {e["id"] for e in sent}
    # Both rollups equal the ledger, per day.
    ledger = {
        row.pop("day"): row
        for row in records.values("day").annotate(**{f: Sum(f) for f in SUMMED}).order_by("day")
    }
    for model in (DailyRollup, DailyModelRollup):
        rolled = {
            row.pop("day"): row
            for row in model.objects.filter(org=org)
            .values("day")
            .annotate(**{f: Sum(f) for f in SUMMED})
            .order_by("day")
        }
        assert rolled == ledger, model.__name__
    assert records.values("day").annotate(n=Count("id")).count() == 3


def test_a_connection_dropped_while_idle_is_replaced_and_a_missing_database_is_a_clean_503(
    private_redis, started, counter_prefix
):
    """One worker keeps its database connection between requests. Cut while idle, it is health-checked and
    replaced: the next request succeeds. While the database refuses connections, answers are a clean 503."""
    org = OrganizationFactory(timezone="UTC")
    _, token = make_token(org=org, scopes=["read"])
    headers = {"Authorization": f"Bearer {token}"}
    proxy = started(procs.TcpProxy(upstream_port=int(database_url().rsplit(":", 1)[1].split("/")[0])))
    env = procs.app_env(
        database_url=database_url(port=proxy.port), redis_url=private_redis.url, counter_prefix=counter_prefix
    )
    app = started(procs.Gunicorn(env, workers=1))
    assert httpx.get(app.url + "/api/v1/org", headers=headers, timeout=10).status_code == 200
    assert proxy.open_connections() == 1  # kept for the next request (CONN_MAX_AGE)
    assert proxy.cut() == 1
    r = httpx.get(app.url + "/api/v1/org", headers=headers, timeout=10)
    assert r.status_code == 200 and r.json()["slug"] == org.slug, r.text
    proxy.refuse(True)
    assert_clean_503(httpx.get(app.url + "/api/v1/org", headers=headers, timeout=10))
    assert_clean_503(
        httpx.post(app.url + "/api/v1/events", json={"events": batch(0)}, headers=headers, timeout=10)
    )
    proxy.refuse(False)
    assert httpx.get(app.url + "/api/v1/org", headers=headers, timeout=10).status_code == 200
