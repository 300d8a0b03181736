from datetime import date
from decimal import Decimal

from django.db.models import QuerySet, Sum

from apps.connectors.models import ProviderConnection, ProviderCostRecord, SyncRun
from apps.usage.models import UsageRecord


def connection_list(*, org) -> QuerySet[ProviderConnection]:
    return ProviderConnection.objects.for_org(org)


def run_list(*, connection: ProviderConnection) -> QuerySet[SyncRun]:
    return SyncRun.objects.for_org(connection.org).filter(connection=connection)


def reconciliation(*, connection: ProviderConnection, start: date, end: date) -> list[dict]:
    """Per UTC day: what the provider reports it billed vs what our ledger holds for the connection.

    `ledger_cost` is the ledger's cost (reported where the usage came with a cost, else computed from the catalog);
    `difference` = ledger - reported: negative means usage the ledger does not price (non-token lines, unknown
    models) or does not see.
    """
    org = connection.org
    reported = dict(
        ProviderCostRecord.objects.for_org(org)
        .filter(connection=connection, day__gte=start, day__lt=end)
        .values("day")
        .annotate(s=Sum("amount"))
        .values_list("day", "s")
    )
    ledger_rows = (
        UsageRecord.objects.for_org(org)
        .filter(connection_id=connection.pk)
        .on_days(start, end)
        .values("day")
        .annotate(cost=Sum("cost"), computed=Sum("computed_cost"), own=Sum("reported_cost"))
    )
    ledger = {r["day"]: r for r in ledger_rows}
    days = sorted(set(reported) | set(ledger))
    out = []
    for day in days:
        row = ledger.get(day, {})
        provider = reported.get(day)
        cost = row.get("cost") or Decimal(0)
        if provider is None and row.get("own") is not None:
            provider = row["own"]  # the provider reported cost with the usage itself (OpenRouter)
        out.append(
            {
                "day": day,
                "reported_cost": provider,
                "computed_cost": row.get("computed") or Decimal(0),
                "ledger_cost": cost,
                "difference": None if provider is None else cost - provider,
            }
        )
    return out
