"""One report through a real SMTP server on loopback (aiosmtpd): the received MIME message, parsed part by part."""

import csv
import email
import io
import re
import socket
from datetime import date
from decimal import Decimal
from email import policy

import pytest
from aiosmtpd.controller import Controller
from django.db.models import Sum

from apps.reports import tasks
from apps.reports.models import ReportDelivery
from apps.usage.models import UsageRecord
from tests.factories import MembershipFactory
from tests.reports.conftest import MONTH, PREV

pytestmark = pytest.mark.django_db


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, envelope.content))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp(settings):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield inbox
    controller.stop()


def test_report_through_real_smtp(smtp, ledger_org, django_capture_on_commit_callbacks):
    MembershipFactory(org=ledger_org, role="finance", user__email="cfo@acme.test")
    with django_capture_on_commit_callbacks(execute=True):
        tasks.report_generate_and_dispatch(ledger_org.pk, MONTH.isoformat())
    assert len(smtp.messages) == 1
    rcpt, raw = smtp.messages[0]
    assert rcpt == ["cfo@acme.test"]
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "Acme Test: AI spend report for October 2026"
    assert msg["List-Unsubscribe"].strip().startswith("<http") and msg["List-Unsubscribe-Post"]
    delivery = ReportDelivery.objects.get(email="cfo@acme.test")
    assert delivery.status == "sent" and delivery.message_id == msg["Message-ID"].strip()

    ledger = UsageRecord.objects.filter(org=ledger_org, day__gte=MONTH, day__lt=date(2026, 11, 1))
    total = ledger.aggregate(s=Sum("cost"))["s"]
    previous = UsageRecord.objects.filter(org=ledger_org, day__gte=PREV, day__lt=MONTH).aggregate(
        s=Sum("cost")
    )["s"]
    assert (total, previous) == (Decimal(84), Decimal(42))

    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert f"Spent this month: ${total:,.2f}" in text
    assert f"+${total - previous:,.2f} (+100.0%), was ${previous:,.2f}" in text
    assert "Alpha" in text and "Unattributed" in text

    html_part = msg.get_body(preferencelist=("html",))
    html = html_part.get_content()
    assert f"${total:,.2f}" in html
    related = next(p for p in msg.walk() if p.get_content_type() == "multipart/related")
    images = [p for p in related.iter_parts() if p.get_content_type() == "image/png"]
    assert len(images) == 3
    for image in images:
        cid = image["Content-ID"].strip("<>")
        assert f'src="cid:{cid}"' in html
        assert image.get_content().startswith(b"\x89PNG")
        assert image.get_content_disposition() == "inline"
    sources = re.findall(r'<img[^>]* src="([^"]+)"', html)
    assert len(sources) == 3 and all(src.startswith("cid:") for src in sources)  # no remote images, no SVG

    attachment = next(msg.iter_attachments())
    assert attachment.get_filename() == "ai-spend-2026-10.csv"
    content = attachment.get_content()
    rows = list(csv.DictReader(io.StringIO(content if isinstance(content, str) else content.decode())))
    assert sum(Decimal(r["cost"]) for r in rows) == total
    by_model = {}
    for r in rows:
        by_model[r["model"]] = by_model.get(r["model"], 0) + Decimal(r["cost"])
    for model, cost in by_model.items():
        assert cost == ledger.filter(model=model).aggregate(s=Sum("cost"))["s"]
