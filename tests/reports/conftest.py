"""A two-month ledger with known costs (the events carry their cost), pushed through the real ingest path so the
rollups the report reads are the ones production keeps."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from apps.orgs import services as org_services
from apps.usage.services import usage_events_ingest

PREV, MONTH = date(2026, 9, 1), date(2026, 10, 1)


def ev(i, day: date, model: str, tokens: int, cost: str, team=None, feature="", hour=12):
    event = {
        "id": f"r-{i}",
        "timestamp": datetime(day.year, day.month, day.day, hour, tzinfo=UTC).isoformat(),
        "provider": "openai",
        "model": model,
        "input_tokens": tokens,
        "output_tokens": 0,
        "cost": cost,
        "tags": {"feature": feature} if feature else {},
    }
    if team:
        event["team"] = team
    return event


# (day, model, tokens, cost, team, feature). Alpha: gpt-4o-mini 0.01/token -> 0.012, gpt-4.1 steady at 0.03 with half
# the tokens, gpt-5-mini new. Beta: only last month. Unattributed: only this month.
LEDGER = [
    (date(2026, 9, 3), "gpt-4o-mini", 600, "6.00", "Alpha", "chat"),
    (date(2026, 9, 20), "gpt-4o-mini", 400, "4.00", "Alpha", "chat"),
    (date(2026, 9, 10), "gpt-4.1", 1000, "30.00", "Alpha", "drafts"),
    (date(2026, 9, 11), "gpt-4o-mini", 100, "2.00", "Beta", "search"),
    (date(2026, 10, 2), "gpt-4o-mini", 1500, "18.00", "Alpha", "chat"),
    (date(2026, 10, 9), "gpt-4.1", 500, "15.00", "Alpha", "drafts"),
    (date(2026, 10, 15), "gpt-5-mini", 700, "35.0000000001", "Alpha", "chat"),
    (date(2026, 10, 31), "gpt-5-mini", 300, "14.9999999999", "Alpha", "chat"),
    (date(2026, 10, 20), "gpt-4o-mini", 200, "1.00", None, ""),
    # the next month: must not count in October
    (date(2026, 11, 1), "gpt-4o-mini", 999, "99.00", "Alpha", "chat"),
]


@pytest.fixture
def ledger_org(org):
    org_services.team_create(org=org, name="Alpha")
    org_services.team_create(org=org, name="Beta")
    events = [ev(i, *row) for i, row in enumerate(LEDGER)]
    result = usage_events_ingest(org=org, events=events, now=datetime(2026, 11, 25, tzinfo=UTC))
    assert result.accepted == len(events), result
    return org


def D(value) -> Decimal:
    return Decimal(value)
