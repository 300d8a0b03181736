from celery import shared_task

from apps.orgs.models import Organization
from apps.usage import services


@shared_task(name="usage.price_unpriced")
def usage_price_unpriced(org_id: int) -> int:
    org = Organization.objects.filter(pk=org_id).first()
    if org is None:
        return 0
    run = services.usage_price_unpriced(org=org)
    return run.records_changed if run else 0


@shared_task(name="usage.price_unpriced_all")
def usage_price_unpriced_all() -> int:
    """Daily: a genai-prices upgrade or a new override may have given unpriced models a price."""
    for org_id in Organization.objects.values_list("pk", flat=True):
        usage_price_unpriced.delay(org_id)
    return 0
