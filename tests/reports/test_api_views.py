"""API (tenancy-scoped, read scope, JSON and CSV) and the web pages: archive, preview as sent, CSV, PDF, resend."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core import mail

from apps.reports import services
from apps.reports.models import ReportDelivery
from tests.reports.conftest import MONTH

pytestmark = pytest.mark.django_db


@pytest.fixture
def report(ledger_org):
    return services.report_generate(org=ledger_org, month=MONTH)


def test_api_lists_and_reads_reports(api, ledger_org, report):
    client = api(ledger_org, scopes=["read"])
    listing = client.get("/api/v1/reports")
    assert listing.status_code == 200
    assert listing.json()["results"][0]["month"] == "2026-10"
    assert Decimal(listing.json()["results"][0]["total"]) == Decimal(84)
    one = client.get("/api/v1/reports/2026-10")
    assert one.status_code == 200
    body = one.json()
    assert body["order"][0] == "summary"
    assert Decimal(body["sections"]["variance"]["total"]["change"]) == Decimal(42)
    csv_one = client.get("/api/v1/reports/2026-10?format=csv")
    assert csv_one.status_code == 200 and csv_one["Content-Type"].startswith("text/csv")
    assert csv_one.content.decode() == report.detail_csv
    csv_list = client.get("/api/v1/reports?format=csv")
    assert csv_list.content.decode().splitlines()[1].startswith("2026-10,84.0000000000,42.0000000000")


def test_api_is_tenancy_scoped_and_404s_cleanly(api, ledger_org, report, other_org):
    other = api(other_org, scopes=["read"])
    assert other.get("/api/v1/reports").json()["results"] == []
    missing = other.get("/api/v1/reports/2026-10")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    mine = api(ledger_org, scopes=["read"])
    for bad in ("2026-13", "2026-9", "abcd-ef", "2026-09"):
        response = mine.get(f"/api/v1/reports/{bad}")
        assert response.status_code == 404, bad
        assert "error" in response.json()
    assert api(ledger_org, scopes=["ingest"]).get("/api/v1/reports").status_code == 403


def test_reports_page_generates_last_month_on_first_view(client, org, member_of, monkeypatch):
    from django.utils import timezone

    from apps.usage.services import usage_events_ingest
    from tests.reports.conftest import ev

    usage_events_ingest(
        org=org, events=[ev(1, MONTH, "gpt-4.1", 10, "3.50")], now=datetime(2026, 11, 2, tzinfo=UTC)
    )
    monkeypatch.setattr(timezone, "now", lambda: datetime(2026, 11, 10, 9, tzinfo=UTC))
    client.force_login(member_of(org, "member"))
    page = client.get(f"/o/{org.slug}/reports/")
    assert page.status_code == 200
    assert b"October 2026" in page.content and b"$3.50" in page.content
    preview = client.get(f"/o/{org.slug}/reports/2026-10/")
    assert preview.status_code == 200 and b"report-frame" in preview.content
    html = client.get(f"/o/{org.slug}/reports/2026-10/email.html")
    assert html.status_code == 200
    assert b'src="data:image/png;base64,' in html.content and b"cid:" not in html.content
    assert html["X-Frame-Options"] == "SAMEORIGIN"
    # The e-mail's own policy: its inline styles, no script at all, framed only by this site (the preview page
    # itself keeps the strict policy).
    policy = html["Content-Security-Policy"]
    assert "style-src 'unsafe-inline'" in policy and "script-src 'none'" in policy
    assert "frame-ancestors 'self'" in policy
    assert "unsafe-inline" not in preview["Content-Security-Policy"]
    csv = client.get(f"/o/{org.slug}/reports/2026-10/report.csv")
    assert csv.status_code == 200 and b"3.5000000000" in csv.content
    pdf = client.get(f"/o/{org.slug}/reports/2026-10/report.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF") and len(pdf.content) > 5000
    assert client.get(f"/o/{org.slug}/reports/2026-09/").status_code == 404
    # a member may not resend
    assert client.post(f"/o/{org.slug}/reports/2026-10/resend/").status_code == 403


def test_preview_is_the_sent_html_part(
    client, ledger_org, report, member_of, django_capture_on_commit_callbacks
):
    owner = member_of(ledger_org, "owner")
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/o/{ledger_org.slug}/reports/2026-10/resend/")
    assert response.status_code == 302
    sent = mail.outbox[0]
    assert sent.to == [owner.email]
    assert ReportDelivery.objects.get(report=report).status == "sent"
    preview = client.get(f"/o/{ledger_org.slug}/reports/2026-10/email.html").content.decode()
    sent_html = sent.alternatives[0].content
    # identical except the image sources (cid: in the mail, data: in the browser) and the personal links
    import re

    def normal(html):
        html = re.sub(r'src="(cid|data):[^"]+"', 'src=""', html)
        return re.sub(r'<tr><td class="px" style="padding:18px 28px 22px;.*?</td></tr>', "", html, flags=re.S)

    assert normal(preview) == normal(sent_html)


def test_another_orgs_member_gets_404(client, ledger_org, report, other_org, member_of):
    client.force_login(member_of(other_org, "owner"))
    assert client.get(f"/o/{ledger_org.slug}/reports/2026-10/").status_code == 404
    assert client.get(f"/o/{other_org.slug}/reports/2026-10/").status_code == 404


def test_recipient_settings_on_the_page(client, ledger_org, member_of):
    admin = member_of(ledger_org, "admin")
    client.force_login(admin)
    url = f"/o/{ledger_org.slug}/reports/"
    client.post(url, {"action": "settings", "enabled": "1", "extra_recipients": "a@x.test\nB@x.test"})
    client.post(url, {"action": "subscribe", "subscribed": "0"})
    from apps.reports.selectors import recipients

    assert recipients(org=ledger_org) == ["a@x.test", "b@x.test"]
    bad = client.post(
        url, {"action": "settings", "enabled": "1", "extra_recipients": "not-an-address"}, follow=True
    )
    assert b"is not an e-mail address" in bad.content
    member = member_of(ledger_org, "member")
    client.force_login(member)
    assert client.post(url, {"action": "settings", "extra_recipients": "z@x.test"}).status_code == 403
