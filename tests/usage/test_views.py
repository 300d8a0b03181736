"""The finance screens: dashboard, usage explorer and its CSV downloads, through the public URLs."""

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.db.models import Sum
from django.urls import reverse

from apps.usage.exports import FOCUS_HEADER
from apps.usage.models import TOKEN_FIELDS, UsageRecord
from apps.usage.services import usage_events_ingest
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def event(
    event_id, day, cost=None, *, team=None, model="gpt-4o-mini", provider="openai", feature="", **extra
):
    ev = {
        "id": event_id,
        "timestamp": f"{day}T10:00:00Z",
        "provider": provider,
        "model": model,
        "input_tokens": extra.pop("input_tokens", 1000),
        "output_tokens": extra.pop("output_tokens", 100),
        "tags": {k: v for k, v in {"feature": feature, "customer": extra.pop("customer", "")}.items() if v},
        **extra,
    }
    if cost is not None:
        ev["cost"] = cost
    if team:
        ev["team"] = team
    return ev


def ingest(org, events):
    result = usage_events_ingest(org=org, events=events)
    assert not result.rejected_events, result.rejected_events
    assert result.accepted == len(events)


@pytest.fixture
def ledger(org):
    """Known costs: November to date 1,234.56; the same days of October 1,000.00 (+ 999.00 later in October)."""
    TeamFactory(org=org, name="Support")
    TeamFactory(org=org, name="Search")
    ingest(
        org,
        [
            event(
                "nov-1",
                "2026-11-03",
                "1200.00",
                team="Support",
                model="gpt-4.1",
                feature="support-copilot",
                customer="Initech",
                requests=40,
                input_tokens=50_000,
                cache_read_tokens=20_000,
                output_tokens=7_000,
            ),
            event("nov-2", "2026-11-19", "34.56", team="Search", feature="semantic-search", customer="Hooli"),
            event(
                "oct-1", "2026-10-05", "1000.00", team="Support", model="gpt-4.1", feature="support-copilot"
            ),
            event("oct-2", "2026-10-25", "999.00", team="Search", feature="semantic-search"),
            event("sep-1", "2026-09-30", "7.00", team="Search"),
        ],
    )
    return org


@pytest.fixture
def as_member(client, member_of):
    def login(org, role="finance"):
        client.force_login(member_of(org, role))
        return client

    return login


def ledger_sum(org, start, end):
    return UsageRecord.objects.filter(org=org, day__gte=start, day__lt=end).aggregate(s=Sum("cost"))["s"]


# --- dashboard -----------------------------------------------------------------------------------------------------


def test_dashboard_totals_equal_the_ledger_and_compare_with_the_same_days_last_month(ledger, as_member):
    response = as_member(ledger).get(reverse("dashboard", args=[ledger.slug]))
    assert response.status_code == 200
    mtd = response.context["mtd"]
    assert mtd["cost"] == ledger_sum(ledger, "2026-11-01", "2026-11-21") == Decimal("1234.56")
    # Same days of the previous month: 1-20 October (the 999.00 of 25 October is not in it).
    assert mtd["prev_cost"] == ledger_sum(ledger, "2026-10-01", "2026-10-21") == Decimal("1000.00")
    assert mtd["change"] == Decimal("234.56") and mtd["direction"] == "up"
    assert response.context["last30"]["cost"] == ledger_sum(ledger, "2026-10-22", "2026-11-21")
    html = response.content.decode()
    for text in (
        "$1,234.56",
        "1–20 Nov 2026",
        "$1,000.00",
        "1–20 Oct 2026",
        "+23.5%",
        "+$234.56",
        "$2,233.56",
    ):
        assert text in html, text
    teams = [
        (r["label"], r["cost_display"], r["share_display"]) for r in response.context["top_teams"]["rows"]
    ]
    assert teams == [("Support", "$1,200.00", "97.2%"), ("Search", "$34.56", "2.8%")]
    models = [(r["label"], r["detail"], r["cost"]) for r in response.context["top_models"]["rows"]]
    assert models == [("gpt-4.1", "OpenAI", Decimal("1200")), ("gpt-4o-mini", "OpenAI", Decimal("34.56"))]
    features = [r["label"] for r in response.context["top_features"]["rows"]]
    assert features == ["support-copilot", "semantic-search"]
    # The chart is drawn by static/js/charts.js from a json_script block: no inline JavaScript.
    assert 'data-chart="daily-chart"' in html and 'id="daily-chart" type="application/json"' in html
    assert "vendor/chartjs/chart.umd.min.js" in html and "js/charts.js" in html
    assert "<script>" not in html
    chart = response.context["chart"]
    assert len(chart["labels"]) == 30 and chart["labels"][-1] == "20 Nov"
    assert sum(Decimal(v) for d in chart["datasets"] for v in d["data"]) == Decimal("2233.56")


def test_dashboard_chart_can_stack_by_model_or_team(ledger, as_member):
    client = as_member(ledger)
    by_model = client.get(reverse("dashboard", args=[ledger.slug]), {"stack": "model"}).context["chart"]
    assert [d["label"] for d in by_model["datasets"]] == ["gpt-4.1", "gpt-4o-mini"]
    by_team = client.get(reverse("dashboard", args=[ledger.slug]), {"stack": "team"}).context["chart"]
    assert [d["label"] for d in by_team["datasets"]] == ["Support", "Search"]
    unknown = client.get(reverse("dashboard", args=[ledger.slug]), {"stack": "nonsense"})
    assert unknown.status_code == 200 and unknown.context["stack"] == "provider"


def test_no_spend_last_month_shows_no_percentage(org, as_member):
    ingest(org, [event("only", "2026-11-02", "5.00")])
    response = as_member(org).get(reverse("dashboard", args=[org.slug]))
    assert response.context["mtd"]["change_pct"] is None
    assert "no spend in the same days last month" in response.content.decode()


def test_dashboard_without_usage_shows_the_empty_state(org, as_member):
    html = as_member(org).get(reverse("dashboard", args=[org.slug])).content.decode()
    assert "No usage yet" in html and "POST /api/v1/events" in html and "Connectors" in html
    assert "data-chart" not in html and "chart.umd.min.js" not in html


def test_unpriced_warning_shows_only_when_there_is_unpriced_usage(ledger, as_member):
    client = as_member(ledger)
    html = client.get(reverse("dashboard", args=[ledger.slug])).content.decode()
    assert "Unpriced usage" not in html
    ingest(
        ledger,
        [
            event("local-1", "2026-11-10", provider="selfhosted", model="llama-3.1-70b-local", requests=1200),
            event("local-2", "2026-11-11", provider="selfhosted", model="llama-3.1-70b-local", requests=34),
        ],
    )
    assert UsageRecord.objects.filter(org=ledger, cost_basis="unpriced").count() == 2
    response = client.get(reverse("dashboard", args=[ledger.slug]))
    html = response.content.decode()
    assert "Unpriced usage is not included in the totals" in html
    assert "llama-3.1-70b-local" in html and "1,234 requests" in html and "not included" in html
    link = f"/o/{ledger.slug}/usage/?start=2026-10-22&amp;end=2026-11-21&amp;model=llama-3.1-70b-local&amp;group_by=model"
    assert link in html
    # Unchanged: unpriced usage adds nothing to the totals.
    assert response.context["mtd"]["cost"] == Decimal("1234.56")
    explorer = client.get(link.replace("&amp;", "&"))
    assert explorer.status_code == 200
    rows = explorer.context["result"]["rows"]
    assert [(r["cells"][0]["label"], r["requests"], r["unpriced_requests"]) for r in rows] == [
        ("llama-3.1-70b-local", 1234, 1234)
    ]
    assert "Unpriced usage is not included in the totals" in explorer.content.decode()


# --- explorer ------------------------------------------------------------------------------------------------------


def explore(client, org, **params):
    return client.get(reverse("usage", args=[org.slug]), params)


def test_explorer_defaults_to_the_last_30_days_by_day(ledger, as_member):
    response = explore(as_member(ledger), ledger)
    assert response.status_code == 200
    result = response.context["result"]
    assert (result["period"].start.isoformat(), result["period"].end.isoformat()) == (
        "2026-10-22",
        "2026-11-21",
    )
    assert [r["cells"][0]["label"] for r in result["rows"]] == [
        "Sun 25 Oct 2026",
        "Tue 3 Nov 2026",
        "Thu 19 Nov 2026",
    ]
    assert result["totals"]["cost"] == ledger_sum(ledger, "2026-10-22", "2026-11-21") == Decimal("2233.56")
    assert result["chart_kind"] == "time" and len(result["chart"]["labels"]) == 30


def test_explorer_groups_by_two_dimensions_with_tokens_and_totals(ledger, as_member):
    response = explore(
        as_member(ledger), ledger, start="2026-09-01", end="2026-12-01", group_by="team", then_by="model"
    )
    result = response.context["result"]
    rows = [
        (r["cells"][0]["label"], r["cells"][1]["label"], r["cost_display"], r["share_display"])
        for r in result["rows"]
    ]
    assert rows == [
        ("Support", "gpt-4.1", "$2,200.00", "67.9%"),
        ("Search", "gpt-4o-mini", "$1,040.56", "32.1%"),
    ]
    support = result["rows"][0]
    assert (
        support["requests"],
        support["input_tokens"],
        support["cached_tokens"],
        support["output_tokens"],
    ) == (
        41,
        51_000,
        20_000,
        7_100,
    )
    totals = result["totals"]
    assert totals["cost"] == ledger_sum(ledger, "2026-09-01", "2026-12-01") == Decimal("3240.56")
    assert totals["requests"] == 44 and totals["output_tokens"] == 7_400
    assert result["chart_kind"] == "bars"
    html = response.content.decode()
    assert "$3,240.56" in html and "Support" in html and "gpt-4.1" in html


def test_explorer_filters_by_team_provider_model_feature_and_customer(ledger, as_member):
    client = as_member(ledger)
    window = {"start": "2026-09-01", "end": "2026-12-01"}

    def total(**params):
        response = explore(client, ledger, **window, **params)
        assert response.status_code == 200, response.context["form"].errors
        return response.context["result"]["totals"]["cost"]

    team_id = UsageRecord.objects.get(org=ledger, key="nov-2").team_id
    assert total(team=str(team_id)) == Decimal("1040.56")  # Search: 34.56 + 999.00 + 7.00
    assert total(team="Support") == Decimal("2200.00")
    assert total(team="none") == Decimal("0")
    assert total(provider="openai") == Decimal("3240.56")
    assert total(model="gpt-4.1") == Decimal("2200.00")
    assert total(model="gpt-4.1,gpt-4o-mini") == Decimal("3240.56")
    assert total(feature="semantic-search") == Decimal("1033.56")
    assert total(customer="Initech") == Decimal("1200.00")
    assert total(team="Search", feature="semantic-search", customer="Hooli") == Decimal("34.56")
    by_month = explore(client, ledger, **window, group_by="month").context["result"]
    assert [(r["cells"][0]["label"], r["cost"]) for r in by_month["rows"]] == [
        ("September 2026", Decimal("7.00")),
        ("October 2026", Decimal("1999.00")),
        ("November 2026", Decimal("1234.56")),
    ]
    # The API's spelling works too: group_by=team,model.
    api_style = explore(client, ledger, **window, group_by="team,model").context["result"]
    assert [d for d, _ in api_style["dims"]] == ["team", "model"]


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"start": "2026-13-01"}, "start", "Use a date as YYYY-MM-DD."),
        ({"start": "2026-11-10", "end": "2026-11-01"}, "end", "The end (exclusive) must be after the start."),
        ({"group_by": "colour"}, "group_by", "Choose one of: day, month, team"),
        ({"group_by": "team", "then_by": "team"}, "then_by", "A dimension appears twice."),
        ({"group_by": "day", "then_by": "month"}, "then_by", "Group by day or by month, not both."),
        ({"team": "Nobody"}, "team", "No team &#x27;Nobody&#x27; in this organisation."),
        ({"start": "2020-01-01", "end": "2026-01-01"}, "end", "Ask for at most 800 days at once."),
    ],
)
def test_bad_filters_show_a_form_error_not_a_500(ledger, as_member, params, field, message):
    client = as_member(ledger)
    response = explore(client, ledger, **params)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    html = response.content.decode()
    assert message in html and "Some filters need fixing" in html
    assert "result" not in response.context
    for name in ("usage-csv", "usage-focus-csv"):
        download = client.get(reverse(name, args=[ledger.slug]), params)
        assert download.status_code == 400 and message in download.content.decode()


def test_explorer_download_links_carry_the_same_filters(ledger, as_member):
    html = explore(
        as_member(ledger), ledger, start="2026-11-01", end="2026-11-21", group_by="team"
    ).content.decode()
    qs = "start=2026-11-01&amp;end=2026-11-21&amp;group_by=team"
    assert f'href="/o/{ledger.slug}/usage/spend.csv?{qs}"' in html
    assert f'href="/o/{ledger.slug}/usage/focus.csv?{qs}"' in html
    assert "Download CSV" in html and "Download FOCUS CSV" in html


def read_csv(response):
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_spend_csv_has_the_header_and_totals_and_matches_the_api(ledger, as_member, api):
    params = {"start": "2026-09-01", "end": "2026-12-01", "group_by": "team"}
    response = as_member(ledger).get(reverse("usage-csv", args=[ledger.slug]), params)
    assert response["Content-Disposition"] == 'attachment; filename="spend-2026-09-01-2026-12-01.csv"'
    rows = read_csv(response)
    header = ["team", "cost", "currency", "requests", "input_tokens", *TOKEN_FIELDS, "unpriced_requests"]
    assert rows[0] == header
    by_team = {r[0]: Decimal(r[1]) for r in rows[1:]}
    assert by_team == {"Support": Decimal("2200.0000"), "Search": Decimal("1040.5600")}
    assert sum(by_team.values()) == ledger_sum(ledger, "2026-09-01", "2026-12-01")
    from_api = api(ledger, scopes=["read"]).get("/api/v1/spend", {**params, "format": "csv"})
    assert read_csv(from_api) == rows


def test_focus_csv_has_the_focus_header_and_the_ledger_total(ledger, as_member, api):
    params = {"start": "2026-11-01", "end": "2026-11-21"}
    response = as_member(ledger).get(reverse("usage-focus-csv", args=[ledger.slug]), params)
    assert response["Content-Disposition"] == 'attachment; filename="usage-2026-11-01-2026-11-21-focus.csv"'
    rows = read_csv(response)
    assert rows[0] == FOCUS_HEADER
    billed = FOCUS_HEADER.index("BilledCost")
    assert len(rows) == 3 and sum(Decimal(r[billed]) for r in rows[1:]) == Decimal("1234.56")
    teams = {r[FOCUS_HEADER.index("x_Team")] for r in rows[1:]}
    assert teams == {"Support", "Search"}
    from_api = api(ledger, scopes=["read"]).get("/api/v1/usage", {**params, "format": "focus"})
    assert read_csv(from_api) == rows


# --- access --------------------------------------------------------------------------------------------------------


def test_another_orgs_member_gets_404_everywhere(ledger, other_org, as_member):
    client = as_member(other_org, "owner")
    for name in ("dashboard", "usage", "usage-csv", "usage-focus-csv"):
        assert client.get(reverse(name, args=[ledger.slug])).status_code == 404, name
    ingest(other_org, [event("theirs", "2026-11-05", "1.00")])
    own = client.get(reverse("dashboard", args=[other_org.slug]))
    assert own.context["mtd"]["cost"] == Decimal("1.00")  # never the other org's 1,234.56
    rows = read_csv(client.get(reverse("usage-focus-csv", args=[other_org.slug]), {"start": "2026-09-01"}))
    assert len(rows) == 2


def test_a_member_can_view_every_screen_and_download(ledger, as_member):
    client = as_member(ledger, "member")
    assert client.get(reverse("dashboard", args=[ledger.slug])).status_code == 200
    assert explore(client, ledger, group_by="feature").status_code == 200
    assert client.get(reverse("usage-csv", args=[ledger.slug])).status_code == 200
    assert client.get(reverse("usage-focus-csv", args=[ledger.slug])).status_code == 200


def test_screens_need_a_login(client, ledger):
    for name in ("dashboard", "usage", "usage-csv"):
        response = client.get(reverse(name, args=[ledger.slug]))
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
