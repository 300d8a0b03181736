"""The health task through a real broker and worker: needs REDIS_URL (set in CI's PostgreSQL + Redis run)."""

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings

from spendctl.celery import app, ping


def test_health_task_runs_eagerly_without_redis():
    assert ping.delay().get(timeout=5) == "pong"


@pytest.mark.redis
@pytest.mark.skipif(not settings.REDIS_URL, reason="needs a real Redis: set REDIS_URL (CI does)")
def test_health_task_round_trips_through_real_redis():
    app.conf.update(task_always_eager=False, broker_url=settings.REDIS_URL, result_backend=settings.REDIS_URL)
    try:
        with start_worker(
            app, perform_ping_check=False, pool="solo", loglevel="WARNING", shutdown_timeout=10
        ):
            result = ping.delay()
            assert result.get(timeout=20) == "pong"
            assert result.status == "SUCCESS"
    finally:
        app.conf.update(task_always_eager=True)


def test_celery_is_configured_for_safety():
    conf = app.conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_acks_late is True and conf.task_time_limit > conf.task_soft_time_limit > 0
    assert "core-heartbeat" in conf.beat_schedule
