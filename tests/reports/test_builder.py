"""The report's figures against the ledger (UsageRecord, the source of truth), and the exact variance split."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db.models import Sum

from apps.budgets.models import Alert
from apps.budgets.services import budget_create
from apps.reports import sections, services
from apps.reports.sections import Section, register
from apps.usage.models import UsageRecord
from tests.reports.conftest import MONTH, PREV

pytestmark = pytest.mark.django_db
D = Decimal


def ledger_total(org, start, end, **filters):
    return UsageRecord.objects.filter(org=org, day__gte=start, day__lt=end, **filters).aggregate(
        s=Sum("cost")
    )["s"] or D(0)


def test_summary_matches_the_ledger(ledger_org):
    report = services.report_generate(org=ledger_org, month=MONTH)
    s = report.data["sections"]["summary"]
    assert D(s["current"]) == ledger_total(ledger_org, MONTH, date(2026, 11, 1)) == D("84.00")
    assert D(s["previous"]) == ledger_total(ledger_org, PREV, MONTH) == D("42.00")
    assert D(s["change"]) == D("42.00")
    assert s["change_pct"] == "100.0"
    assert s["year_ago"] is None  # no data in October 2025
    assert s["tokens"] == 1500 + 500 + 700 + 300 + 200
    assert sum(D(v) for _, v in s["daily"]) == D("84.00")
    assert len(s["daily"]) == 31


def test_variance_per_team_adds_up_exactly(ledger_org):
    data = services.report_generate(org=ledger_org, month=MONTH).data["sections"]["variance"]
    teams = {t["team"]: t for t in data["teams"]}
    alpha = teams["Alpha"]
    assert (D(alpha["previous"]), D(alpha["current"]), D(alpha["change"])) == (D(40), D(83), D(43))
    # P0 = 40 / 2,000 = 0.02; Q1 = 3,000 -> volume 20; price: gpt-4o-mini 1,500 * (0.012 - 0.01) = 3;
    # mix: 1,500 * (0.01 - 0.02) + 500 * (0.03 - 0.02) + new gpt-5-mini (50 - 1,000 * 0.02) = -15 + 5 + 30 = 20
    assert D(alpha["volume"]) == D(20)
    assert D(alpha["price"]) == D(3)
    assert D(alpha["mix"]) == D(20)
    assert alpha["new_models"] == ["openai/gpt-5-mini"]
    beta = teams["Beta"]
    assert (D(beta["volume"]), D(beta["price"]), D(beta["mix"])) == (D(-2), D(0), D(0))
    unattributed = teams["Unattributed"]
    assert (D(unattributed["volume"]), D(unattributed["price"]), D(unattributed["mix"])) == (D(1), D(0), D(0))
    for t in data["teams"]:
        assert D(t["volume"]) + D(t["price"]) + D(t["mix"]) == D(t["change"])
    total = data["total"]
    assert D(total["volume"]) + D(total["price"]) + D(total["mix"]) == D(total["change"])
    assert D(total["change"]) == ledger_total(ledger_org, MONTH, date(2026, 11, 1)) - ledger_total(
        ledger_org, PREV, MONTH
    )
    assert D(total["change"]) == sum(D(t["change"]) for t in data["teams"])


def test_breakdowns_match_the_ledger_and_name_the_movers(ledger_org):
    data = services.report_generate(org=ledger_org, month=MONTH).data["sections"]["breakdown"]
    dims = {d["key"]: d for d in data["dimensions"]}
    models = {i["name"]: i for i in dims["model"]["items"]}
    for model in ("gpt-4o-mini", "gpt-4.1", "gpt-5-mini"):
        assert D(models[model]["current"]) == ledger_total(ledger_org, MONTH, date(2026, 11, 1), model=model)
    assert D(models["gpt-5-mini"]["current"]) == D(50)
    assert [i["name"] for i in dims["model"]["up"]] == ["gpt-5-mini", "gpt-4o-mini"]
    assert [i["name"] for i in dims["model"]["down"]] == ["gpt-4.1"]
    features = {i["name"]: i for i in dims["feature"]["items"]}
    assert D(features["chat"]["current"]) == D(18) + D(50)
    assert D(features["(no feature)"]["current"]) == D(1)
    teams = {i["name"]: i for i in dims["team"]["items"]}
    assert D(teams["Beta"]["change"]) == D(-2)


def test_detail_csv_adds_up_to_the_ledger(ledger_org):
    report = services.report_generate(org=ledger_org, month=MONTH)
    lines = report.detail_csv.strip().splitlines()
    assert lines[0].startswith("day,team,provider,model,feature,requests")
    rows = [line.split(",") for line in lines[1:]]
    assert sum(D(r[8]) for r in rows) == D(84)
    assert {r[0] for r in rows} == {"2026-10-02", "2026-10-09", "2026-10-15", "2026-10-31", "2026-10-20"}
    assert [
        "2026-10-20",
        "Unattributed",
        "openai",
        "gpt-4o-mini",
        "",
        "1",
        "200",
        "0",
        "1.0000000000",
        "USD",
    ] in rows


def test_budgets_alerts_unpriced_and_forecast(ledger_org):
    budget_create(org=ledger_org, name="Org cap", amount=D("50"))
    Alert.objects.create(
        org=ledger_org, kind="anomaly", series="s", day=date(2026, 10, 15), title="Spike", message="m"
    )
    Alert.objects.create(
        org=ledger_org, kind="anomaly", series="s", day=date(2026, 9, 15), title="Old", message="m"
    )
    data = services.report_generate(org=ledger_org, month=MONTH).data["sections"]
    budget = data["budgets"]["budgets"][0]
    assert budget["name"] == "Org cap" and D(budget["spent"]) == D(84) and budget["state"] == "over"
    assert budget["ended"] is True
    assert data["alerts"]["counts"]["anomaly"] == 1 and data["alerts"]["items"][0]["title"] == "Spike"
    assert data["unpriced"]["models"] == []
    assert D(data["forecast"]["expected"]) > 0
    assert data["reconciliation"]["connections"] == []


def test_a_report_is_generated_once_and_keeps_what_was_built(ledger_org):
    first = services.report_generate(org=ledger_org, month=MONTH)
    UsageRecord.objects.filter(org=ledger_org).delete()
    again = services.report_generate(org=ledger_org, month=date(2026, 10, 17))
    assert again.pk == first.pk and again.data == first.data
    assert D(again.data["sections"]["summary"]["current"]) == D(84)


def test_a_later_domain_registers_its_own_section(ledger_org, monkeypatch):
    monkeypatch.setattr(sections, "SECTIONS", dict(sections.SECTIONS))

    class Outcomes(Section):
        key, title, order = "outcomes", "Outcome margins", 90

        def build(self, ctx):
            return {"teams": sorted(ctx.team_label(r["team_id"]) for r in ctx.lines if r["cur_cost"])}

    register(Outcomes())
    with pytest.raises(ValueError):
        register(Outcomes())
    report = services.report_generate(org=ledger_org, month=MONTH)
    assert report.data["order"][-1] == "outcomes"
    assert report.data["sections"]["outcomes"]["teams"] == ["Alpha", "Alpha", "Alpha", "Unattributed"]
    assert report.data["sections"]["summary"]["current"]  # the others are untouched


def test_another_orgs_ledger_does_not_leak(ledger_org, other_org):
    from apps.usage.services import usage_events_ingest
    from tests.reports.conftest import ev

    usage_events_ingest(
        org=other_org,
        events=[ev(1, date(2026, 10, 5), "gpt-4.1", 10, "500.00")],
        now=datetime(2026, 11, 25, tzinfo=UTC),
    )
    report = services.report_generate(org=ledger_org, month=MONTH)
    assert D(report.data["sections"]["summary"]["current"]) == D(84)
