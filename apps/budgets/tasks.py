import random

from celery import shared_task
from django.core.cache import cache

from apps.budgets import services
from apps.budgets.models import WebhookDelivery
from apps.orgs.models import Organization

DEBOUNCE_SECONDS = 30
WEBHOOK_RETRIES = 5


def budgets_evaluate_debounced(org_id: int) -> None:
    """After every ingest batch and sync page: one evaluation per org per 30 seconds, whatever the write rate."""
    if cache.add(f"budgets-evaluate:{org_id}", 1, timeout=DEBOUNCE_SECONDS):
        budgets_evaluate.apply_async((org_id,), countdown=DEBOUNCE_SECONDS)


@shared_task(name="budgets.evaluate")
def budgets_evaluate(org_id: int) -> int:
    org = Organization.objects.filter(pk=org_id).first()
    return len(services.budgets_evaluate(org=org)) if org else 0


@shared_task(name="budgets.evaluate_all")
def budgets_evaluate_all() -> int:
    """Hourly: forecasts move and new days start even when nothing is ingested."""
    ids = list(Organization.objects.values_list("pk", flat=True))
    for org_id in ids:
        budgets_evaluate.delay(org_id)
    return len(ids)


@shared_task(bind=True, name="budgets.webhook_deliver", max_retries=WEBHOOK_RETRIES, acks_late=True)
def budgets_webhook_deliver(self, delivery_id: int) -> str:
    delivery = WebhookDelivery.objects.select_related("channel", "alert__org").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != WebhookDelivery.PENDING:
        return "skipped"
    if services.webhook_attempt(delivery=delivery):
        return "delivered"
    if self.request.retries >= WEBHOOK_RETRIES:
        services.delivery_give_up(delivery=delivery)
        return "failed"
    countdown = random.uniform(0, min(3600, 30 * 2**self.request.retries))  # noqa: S311 - jitter
    raise self.retry(countdown=countdown)
