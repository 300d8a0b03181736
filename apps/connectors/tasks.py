"""Celery tasks for syncs. They take ids, call the services, and retry only the provider part with backoff."""

import random

from celery import shared_task

from apps.connectors import services
from apps.connectors.models import SyncRun
from apps.connectors.providers.base import ProviderAuthError, ProviderError, ProviderRateLimited

MAX_RETRIES = 5


def backoff(
    attempt: int, *, base: float = 30.0, cap: float = 1800.0, retry_after: float | None = None
) -> float:
    """Exponential backoff with full jitter; a provider's Retry-After is a floor."""
    wait = random.uniform(0, min(cap, base * 2**attempt))  # noqa: S311 - jitter, not security
    return max(wait, retry_after or 0.0)


@shared_task(bind=True, name="connectors.sync_run", max_retries=MAX_RETRIES, acks_late=True)
def connectors_sync_run(self, run_id: int) -> str:
    run = SyncRun.objects.select_related("connection__org").filter(pk=run_id).first()
    if run is None or run.status in (SyncRun.SUCCEEDED, SyncRun.FAILED):
        return "skipped"
    try:
        services.run_execute(run=run)
    except ProviderAuthError:
        services.run_mark(run=run, status=SyncRun.FAILED)
        services.notify_admins_key_rejected(connection=run.connection)
        return "needs_key"
    except ProviderError as exc:
        if self.request.retries >= MAX_RETRIES:
            services.run_mark(run=run, status=SyncRun.FAILED)
            return "failed"
        services.run_mark(run=run, status=SyncRun.RETRYING)
        retry_after = exc.retry_after if isinstance(exc, ProviderRateLimited) else None
        raise self.retry(countdown=backoff(self.request.retries, retry_after=retry_after), exc=exc) from exc
    return "succeeded"


@shared_task(name="connectors.sync_due")
def connectors_sync_due() -> int:
    """Hourly: start the nightly run of every connection whose org has reached 02:00 local; revive stalled runs."""
    runs = services.runs_due() + services.runs_stalled()
    for run in runs:
        connectors_sync_run.delay(run.pk)
    return len(runs)
