import random

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from apps.orgs.models import Organization
from apps.reports import selectors, services
from apps.reports.models import MonthlyReport, ReportDelivery

DELIVERY_RETRIES = 5


@shared_task(name="reports.send_due")
def reports_send_due() -> int:
    """Every 15 minutes: orgs past the 1st 08:00 local whose last month's report has not gone out yet."""
    due = selectors.reports_due(now=timezone.now())
    for org_id, month in due:
        report_generate_and_dispatch.delay(org_id, month.isoformat())
    return len(due)


@shared_task(name="reports.generate_and_dispatch")
def report_generate_and_dispatch(org_id: int, month: str) -> int:
    from datetime import date

    org = Organization.objects.filter(pk=org_id).first()
    if org is None:
        return 0
    report = services.report_generate(org=org, month=date.fromisoformat(month))
    return deliver_all(report)


def deliver_all(report: MonthlyReport, ids: list[int] | None = None) -> int:
    with transaction.atomic():
        ids = services.report_dispatch(report=report) if ids is None else ids
        for delivery_id in ids:
            transaction.on_commit(lambda pk=delivery_id: report_deliver.delay(pk))
    return len(ids)


@shared_task(bind=True, name="reports.deliver", max_retries=DELIVERY_RETRIES, acks_late=True)
def report_deliver(self, delivery_id: int) -> str:
    """One recipient. A failure marks the row failed and retries it with backoff; the others are separate tasks.
    Run in process (no broker: the SQLite demo, tests) the retries happen at once, so a caller never sees Retry."""
    attempts = 0
    while True:
        try:
            return services.delivery_send(delivery_id=delivery_id)
        except services.DeliveryFailed:
            attempts += 1
            if self.request.retries + attempts > DELIVERY_RETRIES:
                return "failed"
            if not self.request.is_eager:
                countdown = 60 * 2**self.request.retries + random.uniform(0, 30)  # noqa: S311 - jitter
                raise self.retry(countdown=countdown) from None
        except ReportDelivery.DoesNotExist:
            return "gone"
