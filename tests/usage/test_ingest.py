import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Sum
from genai_prices import Usage, calc_price

from apps.usage.models import DailyRollup, UsageRecord
from tests.factories import TeamFactory, make_token
from tests.usage.factories import event, ingest

pytestmark = pytest.mark.django_db

WHEN = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)


def ledger_totals(org):
    return UsageRecord.objects.filter(org=org).aggregate(
        cost=Sum("cost"), requests=Sum("requests"), out=Sum("output_tokens")
    )


def rollup_totals(org):
    return DailyRollup.objects.filter(org=org).aggregate(
        cost=Sum("cost"), requests=Sum("requests"), out=Sum("output_tokens")
    )


# --- prices equal genai-prices to the cent, across providers and token classes ------------------------------------

PRICE_CASES = [
    ("openai", "gpt-4o-mini", {"input_tokens": 12_000, "cache_read_tokens": 4_000, "output_tokens": 900}),
    ("openai", "gpt-4.1", {"input_tokens": 50_000, "output_tokens": 2_000}),
    (
        "openai",
        "gpt-5-mini",
        {
            "input_tokens": 30_000,
            "cache_read_tokens": 20_000,
            "output_tokens": 8_000,
            "reasoning_tokens": 6_000,
        },
    ),
    (
        "anthropic",
        "claude-sonnet-4-5",
        {
            "input_tokens": 40_000,
            "cache_read_tokens": 25_000,
            "cache_write_tokens": 5_000,
            "output_tokens": 3_000,
        },
    ),
    (
        "anthropic",
        "claude-sonnet-4-5",
        {"input_tokens": 250_000, "output_tokens": 1_000},
    ),  # long-context tier
    (
        "anthropic",
        "claude-haiku-4-5",
        {
            "input_tokens": 9_000,
            "cache_write_tokens": 3_000,
            "cache_write_1h_tokens": 1_000,
            "output_tokens": 700,
        },
    ),
    ("google", "gemini-2.5-flash", {"input_tokens": 100_000, "output_tokens": 10_000}),
    (
        "deepseek",
        "deepseek-chat",
        {"input_tokens": 70_000, "cache_read_tokens": 50_000, "output_tokens": 4_000},
    ),
]


def _usage(counts):
    u = dict(counts)
    if "cache_write_1h_tokens" in u:
        u["cache_write_5m_tokens"] = u["cache_write_tokens"] - u["cache_write_1h_tokens"]
    u.pop("reasoning_tokens", None)
    return Usage(**u)


@pytest.mark.parametrize(("provider", "model", "counts"), PRICE_CASES)
def test_event_cost_equals_genai_prices_to_the_cent(org, provider, model, counts):
    result = ingest(org, [event(1, ts=WHEN, provider=provider, model=model, **counts)])
    assert result.accepted == 1, result.as_dict()
    record = UsageRecord.objects.get(org=org)
    expected = calc_price(
        _usage(counts), model, provider_id=provider, genai_request_timestamp=WHEN
    ).total_price
    assert record.cost_basis == "computed"
    assert record.cost.quantize(Decimal("0.01")) == expected.quantize(Decimal("0.01"))
    assert abs(record.cost - expected) < Decimal("1e-9")


def test_batch_tier_is_priced_at_the_batch_price(org):
    when = datetime(2026, 11, 18, tzinfo=UTC)
    ingest(
        org,
        [
            event(1, ts=when, model="gpt-4.1", input_tokens=1_000_000, output_tokens=0, service_tier="batch"),
            event(2, ts=when, model="gpt-4.1", input_tokens=1_000_000, output_tokens=0),
        ],
    )
    batch, standard = (UsageRecord.objects.get(key=k).cost for k in ("evt-1", "evt-2"))
    expected = calc_price(
        Usage(input_tokens=1_000_000),
        "gpt-4.1",
        provider_id="openai",
        genai_request_timestamp=when,
        price_context={"processing": "batch"},
    ).total_price
    assert batch == expected and batch < standard


def test_caller_cost_is_kept_as_reported_and_catalog_cost_kept_beside_it(org):
    ingest(org, [event(1, ts=WHEN, cost="0.5")])
    record = UsageRecord.objects.get(org=org)
    assert record.cost_basis == "reported" and record.cost == Decimal("0.5")
    assert record.reported_cost == Decimal("0.5") and record.computed_cost > 0


def test_unknown_model_is_unpriced_never_zero_priced_silently(org):
    ingest(org, [event(1, ts=WHEN, provider="selfhosted", model="llama-local")])
    record = UsageRecord.objects.get(org=org)
    assert record.cost_basis == "unpriced" and record.computed_cost is None
    rollup = DailyRollup.objects.get(org=org)
    assert (rollup.unpriced_records, rollup.unpriced_requests) == (1, 1)


def test_token_classes_are_kept_apart(org):
    ingest(
        org,
        [
            event(
                1,
                ts=WHEN,
                input_tokens=1000,
                cache_read_tokens=300,
                cache_write_tokens=200,
                output_tokens=500,
                reasoning_tokens=120,
            )
        ],
    )
    r = UsageRecord.objects.get(org=org)
    assert (r.uncached_input_tokens, r.cache_read_tokens, r.cache_write_tokens) == (500, 300, 200)
    assert (r.output_tokens, r.reasoning_tokens, r.input_tokens) == (500, 120, 1000)


# --- idempotency ---------------------------------------------------------------------------------------------------


def test_duplicates_are_not_counted_twice(org):
    batch = [event(i, ts=WHEN, cost="0.25") for i in range(5)]
    first = ingest(org, batch)
    assert (first.accepted, len(first.duplicate_events)) == (5, 0)
    before = (ledger_totals(org), rollup_totals(org))
    again = ingest(org, batch + [event(5, ts=WHEN, cost="1")])
    assert again.accepted == 1 and [d["index"] for d in again.duplicate_events] == [0, 1, 2, 3, 4]
    assert ledger_totals(org)["cost"] == before[0]["cost"] + 1
    assert rollup_totals(org) == ledger_totals(org)
    assert UsageRecord.objects.filter(org=org).count() == 6


def test_same_id_twice_in_one_batch_counts_once(org):
    result = ingest(org, [event(1, ts=WHEN), event(1, ts=WHEN, input_tokens=5)])
    assert result.accepted == 1 and result.duplicate_events == [{"index": 1, "id": "evt-1"}]
    assert UsageRecord.objects.get(org=org).input_tokens == 1000


def test_the_same_id_in_two_orgs_is_two_records(org, other_org):
    ingest(org, [event(1, ts=WHEN)])
    assert ingest(other_org, [event(1, ts=WHEN)]).accepted == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
def test_concurrent_duplicate_batches_are_stored_once():
    from tests.factories import OrganizationFactory

    org = OrganizationFactory()
    batch = [event(i, ts=WHEN, cost="0.01") for i in range(300)]
    results, errors = [], []

    def worker():
        try:
            results.append(ingest(org, batch).accepted)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(results) == 300
    assert UsageRecord.objects.filter(org=org).count() == 300
    assert rollup_totals(org) == ledger_totals(org)
    assert ledger_totals(org)["cost"] == Decimal("3.00")


# --- validation ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"input_tokens": -1}, "input_tokens"),
        ({"input_tokens": 1.5}, "input_tokens"),
        ({"output_tokens": "12"}, "output_tokens"),
        ({"input_tokens": True}, "input_tokens"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": "2026-11-18T10:00:00"}, "timestamp"),
        ({"timestamp": (datetime.now(UTC) + timedelta(days=2)).isoformat()}, "timestamp"),
        ({"provider": "Open AI!"}, "provider"),
        ({"model": "gpt 4o\n"}, "model"),
        ({"cache_read_tokens": 2000}, "cache_read_tokens"),
        ({"reasoning_tokens": 999}, "reasoning_tokens"),
        ({"cost": "-1"}, "cost"),
        ({"cost": "abc"}, "cost"),
        ({"tags": ["x"]}, "tags"),
        ({"tags": {"feature": {"nested": 1}}}, "tags"),
        ({"surprise": 1}, "surprise"),
        ({"team": "No Such Team"}, "team"),
        ({"team": "³"}, "team"),  # str.isdigit() is true for it, int() refuses it
        ({"team": "٣"}, "team"),  # int() reads it as 3: not a team id
        ({"id": ""}, "id"),
        ({"currency": "EUR"}, "currency"),
    ],
)
def test_bad_events_are_rejected_per_field_and_others_kept(org, changes, field):
    bad = {**event(1, ts=WHEN, output_tokens=100), **changes}
    result = ingest(org, [event(0, ts=WHEN), bad, event(2, ts=WHEN)])
    assert result.accepted == 2
    assert len(result.rejected_events) == 1 and result.rejected_events[0]["index"] == 1
    assert field in result.rejected_events[0]["fields"]
    assert set(UsageRecord.objects.filter(org=org).values_list("key", flat=True)) == {"evt-0", "evt-2"}


def test_unknown_but_well_formed_provider_is_accepted(org):
    result = ingest(org, [event(1, ts=WHEN, provider="my-vllm", model="mistral-7b-ft", cost="0.002")])
    assert result.accepted == 1
    assert UsageRecord.objects.get(org=org).cost_basis == "reported"


def test_batch_over_the_limit_is_refused_whole(org):
    with pytest.raises(ValidationError):
        ingest(org, [event(i, ts=WHEN) for i in range(5001)])
    assert not UsageRecord.objects.filter(org=org).exists()


# --- teams and attribution -----------------------------------------------------------------------------------------


def test_team_by_name_or_id_and_tag_rules(org):
    from apps.usage.services import attribution_rule_create

    support, search = TeamFactory(org=org, name="Support"), TeamFactory(org=org, name="Search")
    attribution_rule_create(org=org, kind="tag", tag_key="feature", value="semantic-search", team=search)
    ingest(
        org,
        [
            event(1, ts=WHEN, team="support"),
            event(2, ts=WHEN, team=search.pk),
            event(3, ts=WHEN, tags={"feature": "semantic-search"}),
            event(4, ts=WHEN, tags={"feature": "other"}),
        ],
    )
    teams = dict(UsageRecord.objects.filter(org=org).values_list("key", "team_id"))
    sources = dict(UsageRecord.objects.filter(org=org).values_list("key", "team_source"))
    assert teams == {"evt-1": support.pk, "evt-2": search.pk, "evt-3": search.pk, "evt-4": None}
    assert sources == {"evt-1": "explicit", "evt-2": "explicit", "evt-3": "rule", "evt-4": "none"}


def test_a_team_bound_token_writes_only_its_team(org):
    support, growth = TeamFactory(org=org, name="Support"), TeamFactory(org=org, name="Growth")
    token, _ = make_token(org=org, scopes=["ingest"], team=support)
    result = ingest(
        org,
        [event(1, ts=WHEN), event(2, ts=WHEN, team="Growth"), event(3, ts=WHEN, team="Support")],
        token=token,
    )
    assert result.accepted == 2 and result.rejected_events[0]["index"] == 1
    assert "team" in result.rejected_events[0]["fields"]
    assert set(UsageRecord.objects.filter(org=org).values_list("team_id", flat=True)) == {support.pk}
    assert growth.pk not in set(DailyRollup.objects.filter(org=org).values_list("team_id", flat=True))


def test_reattribute_applies_new_rules_to_history(org):
    from apps.usage.services import attribution_rule_create, usage_reattribute

    ingest(org, [event(i, ts=WHEN, tags={"feature": "triage"}) for i in range(3)] + [event(9, ts=WHEN)])
    team = TeamFactory(org=org, name="Support")
    attribution_rule_create(org=org, kind="tag", tag_key="feature", value="triage", team=team)
    assert usage_reattribute(org=org) == 3
    assert UsageRecord.objects.filter(org=org, team=team).count() == 3
    rollup = DailyRollup.objects.filter(org=org)
    assert rollup.get(team_id=team.pk).records == 3 and rollup.get(team_id=0).records == 1
    assert rollup_totals(org) == ledger_totals(org)


def test_day_is_the_orgs_local_day(org):
    org.timezone = "America/New_York"
    org.save()
    ingest(org, [event(1, ts="2026-11-18T03:00:00Z")])  # 22:00 on the 17th in New York
    assert str(UsageRecord.objects.get(org=org).day) == "2026-11-17"


def _by(model_qs, keys):
    from collections import defaultdict

    out = defaultdict(lambda: [0, 0])
    for row in model_qs.values(*keys, "cost", "requests"):
        k = tuple(row[x] for x in keys)
        out[k][0] += row["cost"]
        out[k][1] += row["requests"]
    return {k: (v[0].quantize(Decimal("1e-6")), v[1]) for k, v in out.items()}


def test_every_rollup_equals_the_ledger_through_every_write_path(org):
    from datetime import date

    from apps.catalog.services import override_create
    from apps.usage import services
    from apps.usage.models import DailyModelRollup

    keys = ("day", "provider", "model")
    ingest(
        org,
        [
            event(i, ts=WHEN, model=m, cost=None if i % 2 else "0.5")
            for i, m in enumerate(["gpt-4o-mini", "gpt-4.1", "gpt-4o-mini", "claude-haiku-4-5"])
        ],
    )
    ingest(org, [event(1, ts=WHEN)])  # a duplicate adds nothing
    services.usage_provider_rows_replace(
        org=org,
        connection_id=7,
        endpoint="completions",
        bucket_starts=[WHEN],
        items=[
            {
                "provider": "openai",
                "endpoint": "completions",
                "bucket_start": WHEN,
                "bucket_width": "1d",
                "model_raw": "gpt-4.1",
                "dimensions_key": "k1",
                "counts": {
                    "requests": 3,
                    "input_tokens": 900,
                    "cache_read_tokens": 0,
                    "cache_write_tokens": 0,
                    "output_tokens": 90,
                },
            }
        ],
    )
    override_create(
        org=org, provider="openai", discount_percent=Decimal("10"), effective_from=date(2026, 1, 1)
    )
    services.reprice_apply(
        run=services.reprice_preview(org=org, start=date(2026, 11, 1), end=date(2026, 12, 1))
    )
    ledger = _by(UsageRecord.objects.filter(org=org), keys)
    assert _by(DailyModelRollup.objects.filter(org=org), keys) == ledger
    assert _by(DailyRollup.objects.filter(org=org), keys) == ledger
    # the provider page replaced by an empty re-read disappears from both rollups
    services.usage_provider_rows_replace(
        org=org, connection_id=7, endpoint="completions", bucket_starts=[WHEN], items=[]
    )
    ledger = _by(UsageRecord.objects.filter(org=org), keys)
    assert (
        _by(DailyModelRollup.objects.filter(org=org), keys)
        == ledger
        == _by(DailyRollup.objects.filter(org=org), keys)
    )


def test_the_coarsest_rollup_that_can_answer_does(org):
    from datetime import date

    from apps.usage.selectors import SpendQuery, spend_by

    ingest(org, [event(1, ts=WHEN, cost="1", tags={"feature": "f"})])
    q = {"start": date(2026, 11, 1), "end": date(2026, 12, 1)}
    assert spend_by(org=org, query=SpendQuery(**q, group_by=("day", "model")))["source"] == "model_rollup"
    assert spend_by(org=org, query=SpendQuery(**q, group_by=("team",)))["source"] == "rollup"
    assert (
        spend_by(org=org, query=SpendQuery(**q, group_by=("model",), tags=(("feature", "f"),)))["source"]
        == "rollup"
    )
    assert spend_by(org=org, query=SpendQuery(**q, group_by=("task_id",)))["source"] == "ledger"
