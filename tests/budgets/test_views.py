"""The budgets screens through the Django test client: list, budget page, create/edit/delete, alerts, channels."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from apps.budgets import services
from apps.budgets.models import Alert, AlertChannel, Budget, WebhookDelivery
from apps.budgets.selectors import budget_status
from apps.orgs.models import Membership
from spendctl.common import crypto
from tests.factories import MembershipFactory, TeamFactory, make_token
from tests.usage.factories import event, ingest

pytestmark = pytest.mark.django_db

TODAY = datetime(2026, 11, 20, 12, tzinfo=UTC)


def spend(org, day: date, amount: str, n=0, **extra):
    ts = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    with time_machine.travel(ts + timedelta(hours=1), tick=False):
        ingest(org, [event(f"{day}-{n}-{amount}", ts=ts, cost=amount, **extra)])


@pytest.fixture
def as_role(client, org, member_of):
    def login(role):
        client.force_login(member_of(org, role))
        return client

    return login


@pytest.fixture
def finance(as_role):
    return as_role("finance")


def url(name, org, *args):
    return reverse(name, args=[org.slug, *args])


def form_data(**overrides):
    data = {
        "name": "Company AI",
        "scope": "org",
        "period": "monthly",
        "amount": "1000",
        "thresholds": "50, 80, 100",
        "is_active": "on",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_the_list_shows_spend_percent_and_forecast_from_the_ledger(finance, org):
    support = TeamFactory(org=org, name="Support")
    for i in range(19):
        spend(org, date(2026, 11, 1) + timedelta(days=i), "10")
        spend(org, date(2026, 11, 1) + timedelta(days=i), "5", n=1, team="Support", model="gpt-4.1")
    spend(org, date(2026, 11, 19), "30", n=2, tags={"feature": "copilot"})
    company = services.budget_create(org=org, name="Company AI", amount=Decimal("1000"))
    services.budget_create(org=org, name="Support", scope="team", team=support, amount=Decimal("100"))
    services.budget_create(org=org, name="GPT", scope="model", model="gpt-4.1", amount=Decimal("500"))
    services.budget_create(
        org=org, name="Copilot", scope="tag", tag_key="feature", tag_value="copilot", amount=Decimal("20")
    )
    with time_machine.travel(TODAY, tick=False):
        response = finance.get(url("budgets", org))
        status = budget_status(Budget.objects.get(pk=company.pk))
    assert response.status_code == 200
    html = response.content.decode()
    # 19 days x ($10 + $5) + $30 = $315 for the whole org, of $1,000
    assert status.spent == Decimal("315")
    assert "$315.00" in html and "31.5%" in html and "of $1,000.00" in html
    assert "Whole organisation" in html
    assert "Team Support" in html and "$95.00" in html and "95.0%" in html  # 19 x $5 of $100
    assert "Model gpt-4.1" in html
    assert "Tag feature = copilot" in html and "150.0%" in html and "Over budget" in html
    cards = {c.budget.name: c for c in response.context["cards"]}
    assert cards["Company AI"].state == "ok" and cards["Support"].state == "warn"
    assert cards["Copilot"].state == "over" and cards["Copilot"].bar == Decimal(100)
    assert f"${status.forecast.expected_total:,.2f}" in html  # forecast at period end …
    assert f"${status.forecast.low:,.2f} – ${status.forecast.high:,.2f}" in html  # … with its range
    assert status.days_left == 11 and "11 days to go" in html
    # Support ($95 of $100, $5 a day, nothing yet today) is expected to reach 100% by tonight
    assert cards["Support"].forecast_note == "Forecast to cross 100% today"
    assert "Forecast to cross 100% today" in html
    assert 'href="/o/acme-test/budgets/new/"' in html


def test_empty_list_explains_budgets(as_role, org):
    html = as_role("member").get(url("budgets", org)).content.decode()
    assert "No budgets yet" in html and "hard cap" in html
    assert "/budgets/new/" not in html  # a member cannot create one


def test_the_budget_page_has_facts_chart_and_alerts(finance, org, django_capture_on_commit_callbacks):
    for i in range(19):
        spend(org, date(2026, 11, 1) + timedelta(days=i), "10")
    budget = services.budget_create(
        org=org, name="Company AI", amount=Decimal("300"), hard_cap=Decimal("400"), thresholds=[50, 80]
    )
    with time_machine.travel(TODAY, tick=False), django_capture_on_commit_callbacks(execute=True):
        services.budgets_evaluate(org=org)
        response = finance.get(url("budget", org, budget.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert "$190.00" in html and "63.3%" in html and "$110.00" in html  # spent, % used, remaining
    assert "11 days left" in html and "$400.00" in html and "50%" in html
    assert "Company AI: 50% of budget used" in html  # the budget's alert
    assert 'data-chart="budget-chart"' in html and 'id="budget-chart"' in html
    chart = response.context["chart"]
    series = {d["label"]: d["data"] for d in chart["datasets"]}
    assert len(chart["labels"]) == 30 and chart["labels"][0] == "1 Nov"
    spent = series["Spent so far"]
    assert spent[0] == "10.00" and spent[18] == "190.00" and spent[19] == "190.00" and spent[20] is None
    assert {Decimal(v) for v in series["Budget"]} == {Decimal(300)}
    assert {Decimal(v) for v in series["Hard cap"]} == {Decimal(400)}
    forecast = series["Forecast"]
    assert forecast[:18] == [None] * 18 and forecast[18] == "190.00"  # the cone starts at the spend line
    assert Decimal(forecast[-1]) > Decimal("290")  # ~ $10 a day for 11 more days
    low, high = series["Likely low"], series["Likely high"]
    assert all(
        Decimal(lo) <= Decimal(e) <= Decimal(hi)
        for lo, e, hi in zip(low[19:], forecast[19:], high[19:], strict=True)
    )
    assert chart["datasets"][-1]["fill"] == "-1"  # the band is filled between low and high


def test_create_a_budget_through_the_form(finance, org):
    support = TeamFactory(org=org, name="Support")
    response = finance.post(
        url("budget-new", org),
        form_data(name="Support Q", scope="team", team=support.pk, period="quarterly", hard_cap="1500"),
    )
    budget = Budget.objects.get(org=org)
    assert response.status_code == 302 and response["Location"] == url("budget", org, budget.pk)
    assert budget.team == support and budget.period == "quarterly" and budget.amount == Decimal("1000")
    assert budget.thresholds == [50, 80, 100] and budget.hard_cap == Decimal("1500") and budget.is_active
    page = finance.get(response["Location"]).content.decode()
    assert "Budget “Support Q” created." in page and "Team Support" in page


def test_custom_period_takes_the_last_day_inclusive(finance, org):
    finance.post(
        url("budget-new", org),
        form_data(
            period="custom", custom_start="2026-11-10", custom_end="2026-11-24", thresholds="80 %, 120"
        ),
    )
    budget = Budget.objects.get(org=org)
    assert (budget.custom_start, budget.custom_end) == (date(2026, 11, 10), date(2026, 11, 25))
    assert budget.thresholds == [80, 120]
    form = finance.get(url("budget-edit", org, budget.pk)).context["form"]
    assert form.initial["custom_end"] == date(2026, 11, 24)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"amount": "0"}, "The amount must be more than zero."),
        ({"amount": "-5"}, "The amount must be more than zero."),
        ({"amount": "lots"}, "Enter a number."),
        ({"thresholds": "0, 50"}, "Give whole percentages from 1 to 1000."),
        ({"thresholds": "50, 1001"}, "Give whole percentages from 1 to 1000."),
        ({"thresholds": "fifty"}, "Give whole percentages separated by commas"),
        ({"thresholds": ""}, "Give at least one percentage"),
        ({"thresholds": "50, 50"}, "A threshold appears twice."),
        (
            {"period": "custom", "custom_start": "2026-11-10", "custom_end": "2026-11-01"},
            "The period must end after it starts.",
        ),
        ({"period": "custom", "custom_start": "2026-11-10"}, "A custom period needs a start and an end."),
        ({"period": "custom", "custom_start": "2026-11-10", "custom_end": "9999-12-31"}, "Choose an earlier"),
        ({"scope": "team"}, "A team budget needs this."),
        ({"scope": "tag", "tag_key": "feature"}, "A tag budget needs this."),
        ({"scope": "planet"}, "Select a valid choice."),
        ({"hard_cap": "0"}, "The hard cap must be more than zero."),
    ],
)
def test_bad_input_is_a_readable_form_error(finance, org, overrides, message):
    response = finance.post(url("budget-new", org), form_data(**overrides))
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html and "The budget was not saved" in html
    assert not Budget.objects.exists()


def test_another_orgs_team_or_token_posted_by_hand_is_refused(finance, org, other_org):
    foreign_team = TeamFactory(org=other_org, name="Theirs")
    foreign_token, _ = make_token(org=other_org)
    response = finance.post(url("budget-new", org), form_data(scope="team", team=foreign_team.pk))
    assert response.status_code == 400
    assert "Choose one of this organisation’s teams." in response.content.decode()
    response = finance.post(url("budget-new", org), form_data(scope="token", token=foreign_token.pk))
    assert response.status_code == 400
    assert "Choose one of this organisation’s API tokens." in response.content.decode()
    assert not Budget.objects.exists()


def test_edit_a_budget_and_a_refused_edit_changes_nothing(finance, org):
    budget = services.budget_create(org=org, name="Company AI", amount=Decimal("1000"))
    edit = url("budget-edit", org, budget.pk)
    form = finance.get(edit).context["form"]
    assert form.initial["thresholds"] == "50, 80, 100" and form.initial["amount"] == Decimal("1000")
    bad = finance.post(edit, form_data(name="Renamed", amount="0"))
    assert bad.status_code == 400 and "The amount must be more than zero." in bad.content.decode()
    assert "Edit “Company AI”" in bad.content.decode()  # the page still names the stored budget
    budget.refresh_from_db()
    assert budget.name == "Company AI" and budget.amount == Decimal("1000")
    ok = finance.post(edit, form_data(name="Renamed", amount="1200.50", thresholds="90", is_active=None))
    assert ok.status_code == 302
    budget.refresh_from_db()
    assert (budget.name, budget.amount, budget.thresholds, budget.is_active) == (
        "Renamed",
        Decimal("1200.50"),
        [90],
        False,
    )


def test_delete_a_budget_with_its_alerts(finance, org):
    budget = services.budget_create(org=org, name="Company AI", amount=Decimal("1000"))
    Alert.objects.create(org=org, kind="threshold", budget=budget, threshold=50, title="t", message="m")
    page = finance.get(url("budget", org, budget.pk)).content.decode()
    assert "Delete budget…" in page and "Yes, delete “Company AI”" in page
    response = finance.post(url("budget-delete", org, budget.pk), follow=True)
    assert response.redirect_chain[-1][0] == url("budgets", org)
    assert "Budget “Company AI” deleted" in response.content.decode()
    assert not Budget.objects.exists() and not Alert.objects.exists()


def test_members_see_everything_but_change_nothing(as_role, org, httpserver):
    budget = services.budget_create(org=org, name="Company AI", amount=Decimal("1000"))
    alert = Alert.objects.create(
        org=org, kind="threshold", budget=budget, threshold=50, title="t", message="m"
    )
    channel, _ = services.channel_create(
        org=org, kind="webhook", name="Hook", url=httpserver.url_for("/secret-path-T0K3N")
    )
    client = as_role("member")
    for name, args in (("budgets", ()), ("budget", (budget.pk,)), ("alerts", ()), ("notifications", ())):
        response = client.get(url(name, org, *args))
        assert response.status_code == 200, name
        html = response.content.decode()
        assert "Acknowledge</button>" not in html and "Send test</button>" not in html
        assert "/edit/" not in html and "New budget" not in html
    assert "secret-path-T0K3N" not in html  # a webhook URL can carry its own secret: members see the host
    assert client.get(url("budget-new", org)).status_code == 403
    assert client.get(url("budget-edit", org, budget.pk)).status_code == 403
    posts = [
        (url("budget-new", org), form_data()),
        (url("budget-edit", org, budget.pk), form_data(amount="1")),
        (url("budget-delete", org, budget.pk), {}),
        (url("alert-acknowledge", org, alert.pk), {}),
        (
            url("notifications", org),
            {"action": "webhook", "webhook-name": "x", "webhook-url": "https://x.test"},
        ),
        (url("channel-test", org, channel.pk), {}),
        (url("channel-delete", org, channel.pk), {}),
    ]
    for target, data in posts:
        assert client.post(target, data).status_code == 403, target
    budget.refresh_from_db()
    alert.refresh_from_db()
    assert budget.amount == Decimal("1000") and alert.acknowledged_at is None
    assert Budget.objects.count() == 1 and AlertChannel.objects.count() == 1
    assert not WebhookDelivery.objects.exists() and not httpserver.log


def test_finance_manages_budgets_but_not_channels(finance, org):
    html = finance.get(url("notifications", org)).content.decode()
    assert "Add a webhook" not in html and "Only owners and admins" in html
    response = finance.post(url("notifications", org), {"action": "email", "email-name": "x"})
    assert response.status_code == 403 and not AlertChannel.objects.exists()


def test_another_orgs_budgets_alerts_and_channels_are_404(as_role, org, other_org):
    budget = services.budget_create(org=other_org, name="Theirs", amount=Decimal("1000"))
    alert = Alert.objects.create(org=other_org, kind="anomaly", title="theirs", message="m")
    channel, _ = services.channel_create(org=other_org, kind="webhook", name="Theirs", url="https://x.test/h")
    client = as_role("owner")
    for name in ("budget", "budget-edit"):
        assert client.get(url(name, org, budget.pk)).status_code == 404
    for name, pk in (
        ("budget-edit", budget.pk),
        ("budget-delete", budget.pk),
        ("alert-acknowledge", alert.pk),
        ("channel-test", channel.pk),
        ("channel-delete", channel.pk),
    ):
        assert client.post(url(name, org, pk), form_data()).status_code == 404, name
    # and someone who is not a member of other_org gets the same 404 for the whole area
    assert client.get(url("budgets", other_org)).status_code == 404
    assert Budget.objects.filter(pk=budget.pk, amount=Decimal("1000")).exists()
    alert.refresh_from_db()
    assert alert.acknowledged_at is None and AlertChannel.objects.filter(pk=channel.pk).exists()
    assert "Theirs" not in client.get(url("budgets", org)).content.decode()


def test_alerts_inbox_filters_and_acknowledges(finance, org):
    budget = services.budget_create(org=org, name="Company AI", amount=Decimal("1000"))
    older = Alert.objects.create(
        org=org,
        kind="threshold",
        budget=budget,
        threshold=50,
        title="Company AI: 50% of budget used",
        message="m1",
    )
    newer = Alert.objects.create(
        org=org,
        kind="forecast",
        budget=budget,
        threshold=100,
        title="Company AI: forecast to exceed",
        message="m2",
    )
    Alert.objects.create(
        org=org, kind="anomaly", series="x", title="Unusual spend: team Support", message="m3"
    )
    inbox = url("alerts", org)
    html = finance.get(inbox).content.decode()
    assert html.index(newer.title) < html.index(older.title)  # newest first
    assert html.count('data-testid="alert"') == 3 and "Acknowledge</button>" in html
    assert f'href="{url("budget", org, budget.pk)}"' in html  # the budget link
    assert 'data-testid="open-alerts">3' in html  # the count on the Alerts tab
    only_forecast = finance.get(inbox, {"kind": "forecast"}).content.decode()
    assert newer.title in only_forecast and older.title not in only_forecast
    response = finance.post(
        url("alert-acknowledge", org, older.pk), {"next": f"{inbox}?kind=threshold"}, follow=True
    )
    assert response.redirect_chain[-1][0] == f"{inbox}?kind=threshold"
    assert f"Acknowledged: {older.title}" in response.content.decode()
    older.refresh_from_db()
    assert older.acknowledged_at is not None and older.acknowledged_by.memberships.get().role == "finance"
    open_now = finance.get(inbox).content.decode()
    assert older.title not in open_now and newer.title in open_now
    done = finance.get(inbox, {"state": "acknowledged"}).content.decode()
    assert older.title in done and newer.title not in done and "acknowledged" in done
    assert older.title in finance.get(inbox, {"state": "all"}).content.decode()
    # a "next" that leaves the budgets area is ignored
    off_site = finance.post(url("alert-acknowledge", org, newer.pk), {"next": "https://evil.test/"})
    assert off_site["Location"] == inbox


def test_email_and_webhook_channels(as_role, org, other_org):
    admin = as_role("admin")
    fin = Membership.objects.get(
        user=MembershipFactory(org=org, role="finance", user__email="fin@acme.test").user
    )
    stranger = MembershipFactory(org=other_org, role="owner")
    page = url("notifications", org)
    bad = admin.post(page, {"action": "email", "email-name": "Finance", "email-recipients": [stranger.pk]})
    assert bad.status_code == 400 and "Choose members of this organisation." in bad.content.decode()
    none = admin.post(page, {"action": "email", "email-name": "Finance"})
    assert none.status_code == 400 and "Choose at least one member." in none.content.decode()
    ok = admin.post(
        page, {"action": "email", "email-name": "Finance", "email-recipients": [fin.pk]}, follow=True
    )
    assert "E-mail channel “Finance” added." in ok.content.decode() and "fin@acme.test" in ok.content.decode()
    email = AlertChannel.objects.get(kind="email")
    assert list(email.recipients.all()) == [fin]

    bad_url = admin.post(page, {"action": "webhook", "webhook-name": "Ops", "webhook-url": "not a url"})
    assert bad_url.status_code == 400 and "Enter a valid URL." in bad_url.content.decode()
    created = admin.post(
        page,
        {
            "action": "webhook",
            "webhook-name": "Ops",
            "webhook-url": "https://hooks.example.test/x",
            "webhook-slack_format": "on",
        },
    )
    assert created.status_code == 200
    hook = AlertChannel.objects.get(kind="webhook")
    secret = created.context["secret"]
    assert secret.startswith("whsec_") and crypto.decrypt(hook.secret_encrypted) == secret
    assert secret in created.content.decode() and "It will not be shown again" in created.content.decode()
    assert hook.slack_format and hook.url == "https://hooks.example.test/x"
    later = admin.get(page).content.decode()
    assert (
        secret not in later and "https://hooks.example.test/x" in later
    )  # admins see the URL, never the secret

    response = admin.post(url("channel-delete", org, hook.pk), follow=True)
    assert "Channel “Ops” deleted" in response.content.decode()
    assert list(AlertChannel.objects.values_list("kind", flat=True)) == ["email"]


def test_send_test_reports_delivered_or_the_recorded_failure(as_role, org, httpserver):
    admin = as_role("admin")
    good, _ = services.channel_create(org=org, kind="webhook", name="Good", url=httpserver.url_for("/ok"))
    bad, _ = services.channel_create(org=org, kind="webhook", name="Broken", url=httpserver.url_for("/500"))
    httpserver.expect_request("/ok", method="POST").respond_with_data("ok")
    httpserver.expect_request("/500", method="POST").respond_with_data("internal secrets", status=500)

    response = admin.post(url("channel-test", org, good.pk), follow=True)
    html = response.content.decode()
    assert "Test delivered to “Good” (HTTP 200)." in html
    delivery = WebhookDelivery.objects.get(channel=good)
    assert delivery.is_test and delivery.status == "delivered" and delivery.attempts == 1

    response = admin.post(url("channel-test", org, bad.pk), follow=True)
    html = response.content.decode()
    assert "Test to “Broken” failed: HTTP 500." in html and "internal secrets" not in html
    failed = WebhookDelivery.objects.get(channel=bad)
    assert failed.last_status_code == 500 and failed.last_error == "HTTP 500" and failed.status != "delivered"
    assert [r.path for r, _ in httpserver.log] == ["/ok", "/500"]
    # the deliveries are listed under each channel, with attempts and the error
    assert "Test message" in html and "HTTP 500" in html and "Delivered" in html


def test_send_test_to_an_email_channel(as_role, org, mailoutbox):
    admin = as_role("admin")
    fin = Membership.objects.get(
        user=MembershipFactory(org=org, role="finance", user__email="fin@acme.test").user
    )
    channel, _ = services.channel_create(org=org, kind="email", name="Finance", recipients=[fin])
    empty, _ = services.channel_create(org=org, kind="email", name="Nobody")
    html = admin.post(url("channel-test", org, channel.pk), follow=True).content.decode()
    assert "Test e-mail sent to fin@acme.test." in html and mailoutbox[0].to == ["fin@acme.test"]
    html = admin.post(url("channel-test", org, empty.pk), follow=True).content.decode()
    assert "has no recipients: nothing was sent" in html and len(mailoutbox) == 1


def test_pages_render_for_every_scope_and_period_shape(finance, org):
    """No usage, a custom period not started yet, one that has ended, a paused budget, a token budget."""
    token, _ = make_token(org=org)
    spend(org, date(2026, 11, 3), "12")
    budgets = [
        services.budget_create(
            org=org, name="Fresh", amount=Decimal("100"), scope="provider", provider="openai"
        ),
        services.budget_create(
            org=org,
            name="Launch",
            amount=Decimal("100"),
            period="custom",
            custom_start=date(2027, 1, 1),
            custom_end=date(2027, 2, 1),
        ),
        services.budget_create(
            org=org,
            name="Pilot",
            amount=Decimal("10"),
            period="custom",
            custom_start=date(2026, 11, 1),
            custom_end=date(2026, 11, 10),
        ),
        services.budget_create(
            org=org, name="Paused", amount=Decimal("100"), is_active=False, period="yearly"
        ),
        services.budget_create(org=org, name="Bot", amount=Decimal("100"), scope="token", token=token),
    ]
    with time_machine.travel(TODAY, tick=False):
        html = finance.get(url("budgets", org)).content.decode()
        for budget in budgets:
            assert finance.get(url("budget", org, budget.pk)).status_code == 200, budget.name
        launch = finance.get(url("budget", org, budgets[1].pk)).context["chart"]
    assert "Provider OpenAI" in html and f"API token test token ({token.prefix}…)" in html
    assert "starts 1 Jan" in html and "period ended" in html and "Paused" in html
    assert "Crossed 100% on 3 Nov" in html  # Pilot: $12 of $10 on 3 Nov
    assert (
        "1 Jan – 31 Jan 2027" in html and "1 Nov – 9 Nov 2026" in html
    )  # the last day, not the exclusive end
    spent = {d["label"]: d["data"] for d in launch["datasets"]}["Spent so far"]
    assert len(launch["labels"]) == 31 and set(spent) == {None}  # nothing spent before it starts
