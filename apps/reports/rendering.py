"""A report as people see it: the HTML and plain-text e-mail parts, the inline chart PNGs, the CSV and the PDF.

One renderer for every surface: the e-mail references the charts as `cid:` parts of a multipart/related, the
in-app preview gets the very same HTML with the charts as `data:` URIs, the PDF takes the plain-text part and the
same PNGs. Everything is rendered from the report's stored data, never from the live ledger.
"""

from __future__ import annotations

import base64
import csv
import io
from dataclasses import dataclass
from datetime import date
from email.mime.image import MIMEImage
from email.utils import make_msgid

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import SafeMIMEMultipart, SafeMIMEText
from django.template.loader import render_to_string

from apps.reports.models import MonthlyReport
from apps.reports.sections import SECTIONS, Chart

CSV_HEADER = [
    "day",
    "team",
    "provider",
    "model",
    "feature",
    "requests",
    "input_tokens",
    "output_tokens",
    "cost",
    "currency",
]


@dataclass(frozen=True)
class Image:
    cid: str
    png: bytes
    alt: str

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode()


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    images: list[Image]
    csv_name: str
    csv: str


def month_label(month: date) -> str:
    return f"{month:%B %Y}"


def _charts(report: MonthlyReport) -> list[tuple[str, Chart]]:
    out = []
    for key in report.data.get("order", []):
        section = SECTIONS.get(key)
        data = report.data["sections"].get(key)
        if section is not None and data is not None:
            out.extend((key, chart) for chart in section.charts(data))
    return out


_PNG_CACHE: dict[tuple, bytes] = {}
_PNG_CACHE_SIZE = 32


def _png(report: MonthlyReport, chart: Chart) -> bytes:
    """Charts of one report are drawn once per process, however many recipients it goes to."""
    key = (report.pk, report.generated_at.isoformat(), chart.name)
    if key not in _PNG_CACHE:
        if len(_PNG_CACHE) >= _PNG_CACHE_SIZE:
            _PNG_CACHE.clear()
        _PNG_CACHE[key] = chart.spec.to_png(width_px=600, height_px=260, dpi=100)
    return _PNG_CACHE[key]


def chart_images(report: MonthlyReport) -> list[Image]:
    domain = settings.SITE_URL.split("//", 1)[-1].split(":")[0].split("/")[0] or "spendctl.localhost"
    return [
        Image(
            cid=f"{chart.name}.{report.period}.{report.org_id}@{domain}",
            png=_png(report, chart),
            alt=chart.alt,
        )
        for _, chart in _charts(report)
    ]


def render(
    report: MonthlyReport, *, inline: str = "cid", unsubscribe_url: str = "", app_url: str = ""
) -> Rendered:
    """inline="cid" for the e-mail, "data" for the browser preview (the same HTML, images as data: URIs)."""
    images = chart_images(report)
    by_name = {}
    for image in images:
        name = image.cid.split(".", 1)[0]
        by_name[name] = {"src": f"cid:{image.cid}" if inline == "cid" else image.data_uri, "alt": image.alt}
    sections = []
    for key in report.data.get("order", []):
        section = SECTIONS.get(key)
        data = report.data["sections"].get(key)
        if section is None or data is None:
            continue
        charts = [by_name[c.name] for c in section.charts(data) if c.name in by_name]
        sections.append(
            {"key": key, "title": section.title, "data": data, "charts": charts, "section": section}
        )
    label = month_label(report.month)
    context = {
        "report": report,
        "org_name": report.data.get("org_name", ""),
        "month_label": label,
        "sections": sections,
        "summary": report.data["sections"].get("summary", {}),
        "variance": report.data["sections"].get("variance", {}),
        "unsubscribe_url": unsubscribe_url,
        "app_url": app_url,
        "csv_name": csv_name(report),
    }
    html = render_to_string("reports/email/message.html", context)
    text = render_to_string("reports/email/message.txt", context)
    subject = f"{context['org_name']}: AI spend report for {label}"
    return Rendered(subject, text, html, images, csv_name(report), report.detail_csv)


def csv_name(report: MonthlyReport) -> str:
    return f"ai-spend-{report.period}.csv"


def detail_csv(rows) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(rows)
    return buf.getvalue()


class ReportEmail(EmailMultiAlternatives):
    """multipart/mixed [ multipart/alternative [ text/plain, multipart/related [ text/html, image/png… ] ], CSV ]."""

    def __init__(self, *args, related_images: list[Image] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.related_images = list(related_images)

    def _create_mime_attachment(self, content, mimetype):
        if mimetype != "text/html" or not self.related_images:
            return super()._create_mime_attachment(content, mimetype)
        encoding = self.encoding or settings.DEFAULT_CHARSET
        related = SafeMIMEMultipart(_subtype="related", encoding=encoding)
        related.attach(SafeMIMEText(content, "html", encoding))
        for image in self.related_images:
            part = MIMEImage(image.png, "png")
            part.add_header("Content-ID", f"<{image.cid}>")
            part.add_header("Content-Disposition", "inline", filename=f"{image.cid.split('@')[0]}.png")
            related.attach(part)
        return related


def build_message(report: MonthlyReport, *, to: str, unsubscribe_url: str, app_url: str = "") -> ReportEmail:
    rendered = render(report, inline="cid", unsubscribe_url=unsubscribe_url, app_url=app_url)
    domain = settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].strip(">") or "spendctl.localhost"
    message = ReportEmail(
        subject=rendered.subject,
        body=rendered.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
        headers={
            "Message-ID": make_msgid(idstring=f"report.{report.period}", domain=domain),
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Auto-Submitted": "auto-generated",
        },
        related_images=rendered.images,
    )
    message.attach_alternative(rendered.html, "text/html")
    message.attach(rendered.csv_name, rendered.csv, "text/csv")
    return message
