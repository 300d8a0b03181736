"""Fixtures of the fault tests: real processes on loopback against pytest-django's PostgreSQL test database.

They need PostgreSQL and Redis (`DATABASE_URL=postgres://… REDIS_URL=redis://…`, as in CI) and are skipped on the
embedded SQLite default, where there is no server to lose. Tests use `django_db(transaction=True)` so what they set
up is committed and visible to the processes they start.
"""

import os
import uuid

import pytest
from django.conf import settings

from tests.faults import procs

POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
needs_servers = pytest.mark.skipif(
    not (POSTGRES and settings.REDIS_URL),
    reason="fault tests start gunicorn/Celery against PostgreSQL and Redis: set DATABASE_URL=postgres://… and "
    "REDIS_URL (CI does); the embedded SQLite default has no server to lose",
)


def database_url(port: int | None = None) -> str:
    """pytest-django's test database, optionally through another port (the cuttable proxy)."""
    from django.db import connection

    s = connection.settings_dict
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    host = s.get("HOST") or "127.0.0.1"
    return f"postgres://{user}{password}@{host}:{port or s.get('PORT') or 5432}/{s['NAME']}"


@pytest.fixture
def counter_prefix() -> str:
    return f"spc-faults{os.getpid()}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def private_redis():
    """redis-server on a free loopback port, AOF fsynced on every write, thrown away afterwards."""
    server = procs.RedisServer(persist=True)
    yield server
    server.stop()


@pytest.fixture
def started():
    """Register anything with a stop(); everything registered is stopped at the end, last started first."""
    items = []

    def add(item):
        items.append(item)
        return item

    yield add
    for item in reversed(items):
        item.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the last lines of every process log the test wrote (gunicorn, worker, redis)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for proc in list(procs.Process.registry):
            report.sections.append((f"log of {proc.name}", proc.output()))
        procs.Process.registry.clear()
    elif report.when == "teardown":
        procs.Process.registry.clear()
