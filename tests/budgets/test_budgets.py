from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError

from apps.budgets import services
from apps.budgets.models import Alert, Budget
from apps.budgets.selectors import budget_status
from tests.factories import TeamFactory
from tests.usage.factories import event, ingest

pytestmark = pytest.mark.django_db


def spend(org, day: date, amount: str, n=0, **extra):
    ts = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    with time_machine.travel(ts + timedelta(hours=1), tick=False):
        ingest(org, [event(f"{day}-{n}-{amount}", ts=ts, cost=amount, **extra)])


def test_a_month_of_usage_fires_each_threshold_exactly_once(org, django_capture_on_commit_callbacks):
    budget = services.budget_create(org=org, name="AI", amount=Decimal("300"), thresholds=[50, 80, 100])
    fired = {}
    for i in range(30):
        day = date(2026, 11, 1) + timedelta(days=i)
        spend(org, day, "11")
        with time_machine.travel(datetime(day.year, day.month, day.day, 20, tzinfo=UTC), tick=False):
            for alert in services.budgets_evaluate(org=org):
                fired.setdefault((alert.kind, alert.threshold), day)
            services.budgets_evaluate(org=org)  # evaluating twice raises nothing new
    assert fired[("threshold", 50)] == date(2026, 11, 14)  # 14 x 11 = 154 >= 150
    assert fired[("threshold", 80)] == date(2026, 11, 22)  # 242 >= 240
    assert fired[("threshold", 100)] == date(2026, 11, 28)  # 308 >= 300
    assert ("forecast", 100) in fired and fired[("forecast", 100)] < date(2026, 11, 14)
    counts = Alert.objects.filter(budget=budget).values_list("kind", "threshold")
    assert sorted(counts) == [("forecast", 100), ("threshold", 50), ("threshold", 80), ("threshold", 100)]


def test_steady_spend_under_budget_raises_nothing(org):
    services.budget_create(org=org, name="AI", amount=Decimal("1000"))
    for i in range(20):
        day = date(2026, 11, 1) + timedelta(days=i)
        spend(org, day, "10")
    with time_machine.travel(datetime(2026, 11, 20, 20, tzinfo=UTC), tick=False):
        assert services.budgets_evaluate(org=org) == []
        status = budget_status(Budget.objects.get(org=org))
    assert status.spent == Decimal("200") and status.percent == Decimal("20.0")
    assert status.forecast.low <= Decimal("300") <= status.forecast.high
    assert status.days_left == 11


def test_team_budget_counts_only_its_team(org):
    support = TeamFactory(org=org, name="Support")
    budget = services.budget_create(
        org=org, name="Support", scope="team", team=support, amount=Decimal("100")
    )
    spend(org, date(2026, 11, 3), "40", team="Support")
    spend(org, date(2026, 11, 3), "500")
    with time_machine.travel(datetime(2026, 11, 3, 20, tzinfo=UTC), tick=False):
        assert budget_status(budget).spent == Decimal("40")


def test_anomaly_alert_names_the_series_once(org):
    TeamFactory(org=org, name="Growth")
    for i in range(30):
        day = date(2026, 10, 20) + timedelta(days=i)
        spend(org, day, "10", team="Growth", model="gpt-4.1")
    spike = date(2026, 11, 19)
    for n in range(6):
        spend(org, spike, "10", n=n + 1, team="Growth", model="gpt-4.1")
    with time_machine.travel(datetime(2026, 11, 19, 21, tzinfo=UTC), tick=False):
        alerts = services.budgets_evaluate(org=org)
        assert services.budgets_evaluate(org=org) == []
    anomaly = [a for a in alerts if a.kind == "anomaly"]
    assert len(anomaly) == 1
    assert "Growth" in anomaly[0].title and "gpt-4.1" in anomaly[0].title and "6.0×" in anomaly[0].title


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"amount": Decimal("0")}, "amount"),
        ({"amount": Decimal("-5")}, "amount"),
        ({"amount": Decimal("10"), "thresholds": [0, 50]}, "thresholds"),
        ({"amount": Decimal("10"), "thresholds": [50, 1001]}, "thresholds"),
        ({"amount": Decimal("10"), "thresholds": [50, 50]}, "thresholds"),
        (
            {
                "amount": Decimal("10"),
                "period": "custom",
                "custom_start": date(2026, 12, 1),
                "custom_end": date(2026, 11, 1),
            },
            "custom_end",
        ),
        ({"amount": Decimal("10"), "scope": "team"}, "team"),
        ({"amount": Decimal("10"), "scope": "tag", "tag_key": "feature"}, "tag_value"),
        ({"amount": Decimal("10"), "hard_cap": Decimal("-1")}, "hard_cap"),
    ],
)
def test_budget_validation(org, fields, error):
    with pytest.raises(ValidationError) as exc:
        services.budget_create(org=org, name="B", **fields)
    assert error in exc.value.message_dict


def test_another_orgs_team_is_refused(org, other_org):
    foreign = TeamFactory(org=other_org)
    with pytest.raises(ValidationError) as exc:
        services.budget_create(org=org, name="B", scope="team", team=foreign, amount=Decimal("10"))
    assert "team" in exc.value.message_dict
