from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db.models import Sum

from apps.catalog import services as catalog
from apps.usage import services
from apps.usage.models import DailyRollup, RepriceRun, UsageRecord
from spendctl.common.exceptions import Conflict
from tests.usage.factories import event, ingest

pytestmark = pytest.mark.django_db
WHEN = datetime(2026, 11, 18, 12, tzinfo=UTC)


def total(org):
    return UsageRecord.objects.filter(org=org).aggregate(s=Sum("cost"))["s"]


def rollup_total(org):
    return DailyRollup.objects.filter(org=org).aggregate(s=Sum("cost"))["s"]


@pytest.fixture
def priced(org):
    ingest(
        org, [event(i, ts=WHEN, model="gpt-4.1", input_tokens=1_000_000, output_tokens=0) for i in range(4)]
    )
    ingest(org, [event(10, ts=WHEN, model="gpt-4o-mini", input_tokens=1_000_000, output_tokens=0, cost="9")])
    return org


def test_discount_is_previewed_then_applied_then_undone(priced, member_of):
    org, user = priced, member_of(priced, "finance")
    list_total = total(org)
    catalog.override_create(
        org=org,
        provider="openai",
        model="gpt-4.1",
        discount_percent=Decimal("25"),
        effective_from=date(2026, 11, 1),
    )
    run = services.reprice_preview(org=org, start=date(2026, 11, 1), end=date(2026, 12, 1), user=user)
    assert run.status == "previewed" and run.records_changed == 4
    assert total(org) == list_total  # a preview writes nothing to the ledger
    gpt41 = Decimal(4) * Decimal("2.00")  # 4 calls x 1M input tokens at $2.00 list
    assert run.old_total == gpt41 and run.new_total == gpt41 * Decimal("0.75")
    assert run.summary == [
        {
            "model": "gpt-4.1",
            "day": "2026-11-18",
            "records": 4,
            "old_cost": str(run.old_total),
            "new_cost": str(run.new_total),
            "difference": str(run.new_total - run.old_total),
        }
    ]
    services.reprice_apply(run=run, user=user)
    run.refresh_from_db()
    assert (run.status, run.applied_by) == ("applied", user) and run.applied_at
    assert total(org) == list_total - gpt41 * Decimal("0.25")
    assert rollup_total(org) == total(org)
    # the caller-reported cost stays what the caller said
    assert UsageRecord.objects.get(org=org, key="evt-10").cost == Decimal("9")
    services.reprice_undo(run=run, user=user)
    assert total(org) == list_total and rollup_total(org) == list_total
    assert RepriceRun.objects.get(pk=run.pk).status == "undone"


def test_apply_twice_or_undo_a_preview_is_refused(priced):
    run = services.reprice_preview(org=priced, start=date(2026, 11, 1), end=date(2026, 12, 1))
    with pytest.raises(Conflict):
        services.reprice_undo(run=run)
    services.reprice_apply(run=run)
    with pytest.raises(Conflict):
        services.reprice_apply(run=run)


def test_explicit_override_prices_an_unpriced_model_automatically(org, django_capture_on_commit_callbacks):
    ingest(
        org,
        [
            event(
                1,
                ts=WHEN,
                provider="selfhosted",
                model="llama-local",
                input_tokens=2_000_000,
                output_tokens=1_000_000,
            )
        ],
    )
    assert UsageRecord.objects.get(org=org).cost_basis == "unpriced"
    with django_capture_on_commit_callbacks(execute=True):
        catalog.override_create(
            org=org,
            provider="selfhosted",
            model="llama-local",
            input_mtok=Decimal("0.10"),
            output_mtok=Decimal("0.30"),
            effective_from=date(2026, 1, 1),
        )
    record = UsageRecord.objects.get(org=org)
    assert record.cost_basis == "computed" and record.cost == Decimal("0.50")
    assert rollup_total(org) == Decimal("0.50")
    run = RepriceRun.objects.get(org=org)
    assert run.status == "applied" and run.reason.startswith("automatic")


def test_override_dates_decide_which_records_change(org):
    ingest(
        org,
        [
            event(
                1,
                ts=datetime(2026, 10, 15, tzinfo=UTC),
                model="gpt-4.1",
                input_tokens=1_000_000,
                output_tokens=0,
            ),
            event(2, ts=WHEN, model="gpt-4.1", input_tokens=1_000_000, output_tokens=0),
        ],
    )
    catalog.override_create(
        org=org, provider="openai", discount_percent=Decimal("50"), effective_from=date(2026, 11, 1)
    )
    run = services.reprice_apply(
        run=services.reprice_preview(org=org, start=date(2026, 10, 1), end=date(2026, 12, 1))
    )
    costs = dict(UsageRecord.objects.filter(org=org).values_list("key", "cost"))
    assert run.records_changed == 1
    assert costs == {"evt-1": Decimal("2.0000000000"), "evt-2": Decimal("1.0000000000")}


def test_new_events_use_the_override_at_ingest(org):
    catalog.override_create(
        org=org,
        provider="openai",
        model="gpt-4.1",
        input_mtok=Decimal("1.5"),
        effective_from=date(2026, 11, 1),
    )
    ingest(org, [event(1, ts=WHEN, model="gpt-4.1", input_tokens=1_000_000, output_tokens=0)])
    record = UsageRecord.objects.get(org=org)
    assert record.cost == Decimal("1.5") and record.price_ref.startswith("override")


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({}, "discount_percent"),
        ({"discount_percent": Decimal("0")}, "discount_percent"),
        ({"discount_percent": Decimal("120")}, "discount_percent"),
        ({"input_mtok": Decimal("1")}, "model"),
        ({"discount_percent": Decimal("5"), "effective_to": date(2026, 1, 1)}, "effective_to"),
    ],
)
def test_override_validation(org, fields, error):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as exc:
        catalog.override_create(org=org, provider="openai", effective_from=date(2026, 2, 1), **fields)
    assert error in exc.value.message_dict
