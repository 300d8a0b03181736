"""Queueing after a commit survives a broker outage (spendctl.common.queue)."""

import logging

from celery import Celery

from spendctl.common.queue import enqueue


def test_a_task_that_cannot_reach_the_broker_is_logged_not_raised(caplog):
    app = Celery("queue-test", broker="redis://127.0.0.1:1/0", set_as_current=False)
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_max_retries = 0
    app.conf.task_publish_retry = False

    @app.task(name="queue_test.noop")
    def noop(x):
        return x

    with caplog.at_level(logging.WARNING, logger="spendctl.common.queue"):
        assert enqueue(noop, 1) is False
    assert "queue_test.noop not queued" in caplog.text
    app.close()


def test_a_task_run_in_process_still_raises_its_own_errors():
    app = Celery("queue-test-eager", set_as_current=False)
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True

    @app.task(name="queue_test.fails")
    def fails():
        raise ValueError("a bug in the task")

    try:
        enqueue(fails)
    except ValueError as exc:
        assert str(exc) == "a bug in the task"
    else:
        raise AssertionError("the task's own error was swallowed")
