"""Queueing a task after a commit without letting a broker outage turn a successful write into a 500.

The write is committed before the task is sent. If the broker or the result store (Redis) cannot be reached, the
task is not sent, a warning is logged, and the periodic job that owns the work picks it up: queued sync runs (hourly
`connectors.sync_due`), budget evaluation (hourly `budgets.evaluate_all`), pricing of unpriced usage (daily
`usage.price_unpriced_all`). Tasks that run in process (no REDIS_URL, tests) are not guarded: their own errors
propagate as before.
"""

import logging

logger = logging.getLogger(__name__)


def enqueue(task, *args, **options) -> bool:
    """task.apply_async(args, **options); False (logged) when it could not be sent."""
    if task.app.conf.task_always_eager:
        task.apply_async(args, **options)
        return True
    try:
        task.apply_async(args, **options)
    except Exception as exc:  # noqa: BLE001 - sending only publishes: any error is the broker's or result store's
        logger.warning(
            "task %s not queued (%s: %s); its periodic job will pick it up",
            task.name,
            type(exc).__name__,
            exc,
        )
        return False
    return True
