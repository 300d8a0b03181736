import hashlib
import hmac
import json
import time
from decimal import Decimal

import httpx
import pytest
from django.core import mail

from apps.budgets import services
from apps.budgets.models import AlertChannel, WebhookDelivery
from apps.orgs.models import Membership
from spendctl.common import crypto
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def eager_retries(monkeypatch):
    """Like a worker: a task that asks to be retried is run again (eagerly) instead of raising."""
    from spendctl.celery import app

    app.conf.task_eager_propagates = False
    monkeypatch.setattr(services, "WEBHOOK_TIMEOUT", httpx.Timeout(0.5, connect=0.5))
    yield
    app.conf.task_eager_propagates = True


def raise_alert(org, capture):
    with capture(execute=True):
        return services.alert_raise(
            org=org,
            kind="threshold",
            title="AI: 80% of budget used",
            message="AI has spent $80.00 of $100.00.",
            threshold=80,
            budget=services.budget_create(org=org, name="AI", amount=Decimal("100")),
            period_start=__import__("datetime").date(2026, 11, 1),
        )


def test_signed_webhook_delivery(org, httpserver, django_capture_on_commit_callbacks):
    channel, secret = services.channel_create(
        org=org, kind="webhook", name="Ops", url=httpserver.url_for("/hook")
    )
    assert secret.startswith("whsec_") and secret not in channel.secret_encrypted
    assert crypto.decrypt(channel.secret_encrypted) == secret
    httpserver.expect_oneshot_request("/hook", method="POST").respond_with_data("ok")
    alert = raise_alert(org, django_capture_on_commit_callbacks)
    request, _ = httpserver.log[0]
    body = request.get_data()
    timestamp = request.headers["X-Spendctl-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert request.headers["X-Spendctl-Signature"] == f"sha256={expected}"
    assert abs(int(timestamp) - time.time()) < 60
    payload = json.loads(body)
    assert payload["id"] == alert.pk and payload["kind"] == "threshold" and payload["threshold"] == 80
    delivery = WebhookDelivery.objects.get(channel=channel, alert=alert)
    assert delivery.status == "delivered" and delivery.attempts == 1 and delivery.last_status_code == 200


def test_slack_format(org, httpserver, django_capture_on_commit_callbacks):
    services.channel_create(
        org=org, kind="webhook", name="Slack", url=httpserver.url_for("/slack"), slack_format=True
    )
    httpserver.expect_oneshot_request("/slack").respond_with_data("ok")
    raise_alert(org, django_capture_on_commit_callbacks)
    payload = json.loads(httpserver.log[0][0].get_data())
    assert set(payload) == {"text"} and "*AI: 80% of budget used*" in payload["text"]


def test_a_failing_or_hanging_webhook_does_not_block_others(
    org, httpserver, django_capture_on_commit_callbacks, monkeypatch
):
    from apps.budgets import tasks

    monkeypatch.setattr(tasks, "WEBHOOK_RETRIES", 2)
    broken, _ = services.channel_create(
        org=org, kind="webhook", name="Broken", url=httpserver.url_for("/500")
    )
    hanging, _ = services.channel_create(
        org=org, kind="webhook", name="Slow", url=httpserver.url_for("/slow")
    )
    good, _ = services.channel_create(org=org, kind="webhook", name="Good", url=httpserver.url_for("/ok"))
    httpserver.expect_request("/500").respond_with_data("database exploded: secret internals", status=500)

    def slow(request):
        time.sleep(1.0)
        from werkzeug import Response

        return Response("late")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    httpserver.expect_request("/ok").respond_with_data("ok")
    alert = raise_alert(org, django_capture_on_commit_callbacks)
    deliveries = {d.channel_id: d for d in WebhookDelivery.objects.filter(alert=alert)}
    assert deliveries[good.pk].status == "delivered"
    assert deliveries[broken.pk].status == "failed" and deliveries[broken.pk].attempts == 3
    assert (
        deliveries[broken.pk].last_error == "HTTP 500"
        and "secret internals" not in deliveries[broken.pk].last_error
    )
    assert (
        deliveries[hanging.pk].status == "failed" and "could not deliver" in deliveries[hanging.pk].last_error
    )
    # The shared test server answers one request at a time: let it finish the slow answers the client gave up on,
    # or the next test's request waits behind them past its own timeout.
    deadline = time.monotonic() + 10
    while sum(r.path == "/slow" for r, _ in httpserver.log) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)


def test_email_channel_sends_to_chosen_members(org, member_of, django_capture_on_commit_callbacks):
    chosen = Membership.objects.get(org=org, user=member_of(org, "finance", user__email="fin@example.test"))
    member_of(org, "member", user__email="other@example.test")
    services.channel_create(org=org, kind="email", name="Finance", recipients=[chosen])
    raise_alert(org, django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["fin@example.test"]
    assert "80% of budget used" in mail.outbox[0].subject


def test_channels_api_shows_the_secret_once_and_sends_a_test(api, org, other_org, httpserver, member_of):
    client = api(org)
    created = client.post(
        "/api/v1/alert-channels",
        {"kind": "webhook", "name": "Ops", "url": httpserver.url_for("/t")},
        format="json",
    )
    assert created.status_code == 201 and created.json()["secret"].startswith("whsec_")
    channel_id = created.json()["id"]
    assert client.get(f"/api/v1/alert-channels/{channel_id}").json()["secret"] is None
    httpserver.expect_oneshot_request("/t").respond_with_data("ok")
    sent = client.post(f"/api/v1/alert-channels/{channel_id}/test", {}, format="json").json()
    assert sent["status"] == "delivered" and sent["is_test"] is True
    log = client.get(f"/api/v1/alert-channels/{channel_id}/deliveries").json()["results"]
    assert len(log) == 1
    foreign = Membership.objects.get(org=other_org, user=member_of(other_org, "member"))
    assert_error(
        client.post(
            "/api/v1/alert-channels",
            {"kind": "email", "name": "x", "recipients": [foreign.pk]},
            format="json",
        ),
        400,
        fields=["recipients"],
    )
    assert_error(
        client.post("/api/v1/alert-channels", {"kind": "webhook", "name": "x"}, format="json"),
        400,
        fields=["url"],
    )
    assert AlertChannel.objects.filter(org=org).count() == 1


def test_a_failed_test_message_is_final_and_visible(org, httpserver):
    channel, _ = services.channel_create(org=org, kind="webhook", name="Ops", url=httpserver.url_for("/down"))
    httpserver.expect_request("/down").respond_with_data("nope", status=503)
    delivery = services.channel_send_test(channel=channel)
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 1, "HTTP 503")


def test_budgets_are_in_the_ledgers_currency_and_evaluated_when_saved(
    org, django_capture_on_commit_callbacks
):
    from datetime import UTC, datetime

    from apps.budgets.models import Alert
    from tests.usage.factories import event, ingest

    org.currency = "EUR"
    org.save()
    ingest(org, [event(1, ts=datetime.now(UTC), cost="60")])
    with django_capture_on_commit_callbacks(execute=True):
        budget = services.budget_create(org=org, name="AI", amount=Decimal("100"))
    assert budget.currency == "USD"
    assert Alert.objects.filter(budget=budget, kind="threshold", threshold=50).exists()
