"""Dispatch, once-only delivery, a failing recipient, resend, the schedule and unsubscribe."""

import email
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.core import mail

from apps.orgs.models import Organization
from apps.reports import selectors, services, tasks
from apps.reports.models import MonthlyReport, ReportDelivery
from tests.factories import MembershipFactory, OrganizationFactory
from tests.reports.backends import FlakyBackend
from tests.reports.conftest import MONTH

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(ledger_org):
    owner = MembershipFactory(org=ledger_org, role="owner", user__email="owner@acme.test")
    finance = MembershipFactory(org=ledger_org, role="finance", user__email="cfo@acme.test")
    member = MembershipFactory(org=ledger_org, role="member", user__email="dev@acme.test")
    services.settings_update(
        org=ledger_org, extra_recipients=["Board@Example.test", "board@example.test", " "]
    )
    return owner, finance, member


def test_recipients_are_opted_in_members_and_extra_addresses(ledger_org, people):
    owner, finance, member = people
    assert selectors.recipients(org=ledger_org) == ["board@example.test", "cfo@acme.test", "owner@acme.test"]
    services.subscription_set(membership=member, subscribed=True)
    services.subscription_set(membership=finance, subscribed=False)
    assert selectors.recipients(org=ledger_org) == ["board@example.test", "dev@acme.test", "owner@acme.test"]


def test_the_scheduled_send_mails_each_recipient_once(ledger_org, people, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        sent = tasks.report_generate_and_dispatch(ledger_org.pk, MONTH.isoformat())
    assert sent == 3
    assert sorted(m.to[0] for m in mail.outbox) == ["board@example.test", "cfo@acme.test", "owner@acme.test"]
    msg = mail.outbox[0]
    assert msg.subject == "Acme Test: AI spend report for October 2026"
    assert "Spent this month: $84.00" in msg.body
    assert "Change +$42.00 = volume +$19.00 + price +$3.00 + mix +$20.00" in msg.body
    html = msg.alternatives[0].content
    assert "$84.00" in html and "cid:daily.2026-10." in html
    assert msg.attachments[0][0] == "ai-spend-2026-10.csv"
    assert msg.extra_headers["List-Unsubscribe"].startswith("<http")
    report = MonthlyReport.objects.get(org=ledger_org, month=MONTH)
    assert report.dispatched_at is not None
    assert set(ReportDelivery.objects.filter(report=report).values_list("status", flat=True)) == {"sent"}
    # the beat again, a duplicated dispatch task, a retried delivery task: nothing more is sent
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.report_generate_and_dispatch(ledger_org.pk, MONTH.isoformat()) == 0
        for delivery in ReportDelivery.objects.filter(report=report):
            assert tasks.report_deliver(delivery.pk) == "not-claimed"
    assert mail.outbox == []
    assert selectors.reports_due(now=datetime(2026, 11, 2, tzinfo=UTC)) == []


def test_a_delivery_is_claimed_by_exactly_one_task(ledger_org, people):
    report = services.report_generate(org=ledger_org, month=MONTH)
    ids = services.report_dispatch(report=report)
    assert services.delivery_claim(delivery_id=ids[0]) is True
    assert services.delivery_claim(delivery_id=ids[0]) is False  # the duplicate loses
    assert services.delivery_send(delivery_id=ids[0]) == "not-claimed"
    assert mail.outbox == []
    row = ReportDelivery.objects.get(pk=ids[0])
    assert (row.status, row.attempts) == ("sending", 1)


def test_one_failing_recipient_does_not_stop_the_others_and_is_retried(
    ledger_org, people, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "tests.reports.backends.FlakyBackend"
    FlakyBackend.failures = {"cfo@acme.test": 2}
    with django_capture_on_commit_callbacks(execute=True):
        tasks.report_generate_and_dispatch(ledger_org.pk, MONTH.isoformat())
    # eager Celery runs the retries at once: two refusals, then the third attempt goes through
    assert sorted(m.to[0] for m in mail.outbox) == ["board@example.test", "cfo@acme.test", "owner@acme.test"]
    cfo = ReportDelivery.objects.get(email="cfo@acme.test")
    assert (cfo.status, cfo.attempts) == ("sent", 3)
    assert ReportDelivery.objects.get(email="owner@acme.test").attempts == 1


def test_a_recipient_that_keeps_failing_ends_failed_after_the_retries(
    ledger_org, people, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "tests.reports.backends.FlakyBackend"
    FlakyBackend.failures = {"board@example.test": 100}
    with django_capture_on_commit_callbacks(execute=True):
        tasks.report_generate_and_dispatch(ledger_org.pk, MONTH.isoformat())
    board = ReportDelivery.objects.get(email="board@example.test")
    assert board.status == "failed"
    assert board.attempts == tasks.DELIVERY_RETRIES + 1
    assert "SMTPRecipientsRefused" in board.last_error
    assert sorted(m.to[0] for m in mail.outbox) == ["cfo@acme.test", "owner@acme.test"]
    FlakyBackend.failures = {}


def test_resend_sends_again_to_current_recipients(ledger_org, people, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        tasks.report_generate_and_dispatch(ledger_org.pk, MONTH.isoformat())
    mail.outbox.clear()
    report = MonthlyReport.objects.get(org=ledger_org)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.deliver_all(report, services.report_resend(report=report))
    assert len(mail.outbox) == 3
    assert ReportDelivery.objects.filter(report=report).count() == 3
    # a row claimed a moment ago is in flight and left alone; one stuck in `sending` for long is resent
    from datetime import timedelta

    from django.utils import timezone

    owner = ReportDelivery.objects.get(report=report, email="owner@acme.test")
    cfo = ReportDelivery.objects.get(report=report, email="cfo@acme.test")
    ReportDelivery.objects.filter(pk=owner.pk).update(status="sending", claimed_at=timezone.now())
    ReportDelivery.objects.filter(pk=cfo.pk).update(
        status="sending", claimed_at=timezone.now() - timedelta(hours=1)
    )
    assert owner.pk not in services.report_resend(report=report)
    assert cfo.pk in services.report_resend(report=report)


def test_due_at_eight_on_the_first_in_the_orgs_time_zone(ledger_org):
    ledger_org.timezone = "America/New_York"  # EST (UTC-5) from 1 November 2026 02:00
    ledger_org.save()
    OrganizationFactory(timezone="Asia/Tokyo")  # no spend: never due
    assert selectors.reports_due(now=datetime(2026, 11, 1, 12, 59, tzinfo=UTC)) == []  # 07:59 in New York
    assert selectors.reports_due(now=datetime(2026, 11, 1, 13, 0, tzinfo=UTC)) == [(ledger_org.pk, MONTH)]
    # in October, September's report is the one due (it was never sent: the beat catches up within the month)
    assert selectors.reports_due(now=datetime(2026, 10, 31, 23, 0, tzinfo=UTC)) == [
        (ledger_org.pk, date(2026, 9, 1))
    ]
    MonthlyReport.objects.create(
        org=ledger_org,
        month=date(2026, 9, 1),
        period="2026-09",
        generated_at=datetime(2026, 10, 1, tzinfo=UTC),
        dispatched_at=datetime(2026, 10, 1, 12, tzinfo=UTC),
    )
    assert selectors.reports_due(now=datetime(2026, 10, 31, 23, 0, tzinfo=UTC)) == []


def test_the_beat_task_dispatches_due_orgs(
    ledger_org, people, django_capture_on_commit_callbacks, monkeypatch
):
    from django.utils import timezone

    monkeypatch.setattr(timezone, "now", lambda: datetime(2026, 11, 1, 8, 0, tzinfo=UTC))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.reports_send_due() == 1
    assert len(mail.outbox) == 3
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.reports_send_due() == 0
    assert len(mail.outbox) == 3


def test_disabled_orgs_are_not_due(ledger_org):
    services.settings_update(org=ledger_org, enabled=False)
    assert selectors.reports_due(now=datetime(2026, 11, 2, tzinfo=UTC)) == []


def test_unsubscribe_link_needs_no_login(client, ledger_org, people, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        tasks.report_generate_and_dispatch(ledger_org.pk, MONTH.isoformat())
    msg = next(m for m in mail.outbox if m.to == ["cfo@acme.test"])
    url = msg.extra_headers["List-Unsubscribe"].strip("<>")
    assert url in msg.body
    path = url.split("://", 1)[1].split("/", 1)[1]
    page = client.get("/" + path)
    assert page.status_code == 200 and b"Stop sending" in page.content
    assert "cfo@acme.test" in selectors.recipients(org=ledger_org)  # a GET (a link scanner) changes nothing
    done = client.post("/" + path)
    assert done.status_code == 200 and b"Unsubscribed" in done.content
    assert "cfo@acme.test" not in selectors.recipients(org=ledger_org)
    # an extra address unsubscribes too, and a tampered token does nothing
    board = services.unsubscribe_url(org_id=ledger_org.pk, email="board@example.test").split("/", 3)[3]
    assert client.post("/" + board).status_code == 200
    assert selectors.recipients(org=ledger_org) == ["owner@acme.test"]
    bad = client.post("/" + path.replace("reports/unsubscribe/", "reports/unsubscribe/x"))
    assert bad.status_code == 400
    # an unsubscribed address whose delivery is still queued is skipped, not sent
    report = MonthlyReport.objects.get(org=ledger_org)
    row = ReportDelivery.objects.get(report=report, email="cfo@acme.test")
    ReportDelivery.objects.filter(pk=row.pk).update(status="pending")
    assert services.delivery_send(delivery_id=row.pk) == "skipped"


def test_the_mime_structure_has_related_images_and_the_csv(
    ledger_org, people, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        tasks.report_generate_and_dispatch(ledger_org.pk, MONTH.isoformat())
    parsed = email.message_from_bytes(mail.outbox[0].message().as_bytes())
    assert parsed.get_content_type() == "multipart/mixed"
    alternative = parsed.get_payload()[0]
    assert alternative.get_content_type() == "multipart/alternative"
    text, related = alternative.get_payload()
    assert text.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html, *images = related.get_payload()
    body = html.get_payload(decode=True).decode()
    assert len(images) == 3
    for image in images:
        assert image.get_content_type() == "image/png"
        cid = image["Content-ID"].strip("<>")
        assert f'src="cid:{cid}"' in body
        assert image.get_payload(decode=True).startswith(b"\x89PNG")
    attachment = parsed.get_payload()[1]
    assert attachment.get_filename() == "ai-spend-2026-10.csv"
    assert Decimal(attachment.get_payload(decode=True).decode().splitlines()[1].split(",")[8]) > 0
    assert Organization.objects.count() >= 1 and date(2026, 10, 1) == MONTH
