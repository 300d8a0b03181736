"""Writes for monthly reports: generate (once per org and month), dispatch to recipients, claim and send each
delivery once, resend, subscriptions and the no-login unsubscribe."""

from __future__ import annotations

import logging
from datetime import date, timedelta

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from apps.orgs.models import Membership, Organization
from apps.reports import selectors
from apps.reports.models import MonthlyReport, ReportDelivery, ReportSettings, ReportSubscription
from apps.reports.rendering import build_message, detail_csv
from apps.reports.sections import add_months

log = logging.getLogger(__name__)
UNSUBSCRIBE_SALT = "reports.unsubscribe"
MAX_EXTRA_RECIPIENTS = 50
STUCK_AFTER = timedelta(minutes=10)


class DeliveryFailed(Exception):
    pass


def report_generate(*, org, month: date, regenerate: bool = False) -> MonthlyReport:
    """The org's report for `month`, built from the rollups once; later calls return the stored one."""
    month = month.replace(day=1)
    existing = MonthlyReport.objects.for_org(org).filter(month=month).first()
    if existing is not None and not regenerate:
        return existing
    data = selectors.build_report_data(org=org, month=month)
    csv_text = detail_csv(selectors.detail_rows(org=org, month=month))
    now = timezone.now()
    if existing is not None:
        existing.data, existing.detail_csv, existing.generated_at = data, csv_text, now
        existing.save(update_fields=["data", "detail_csv", "generated_at"])
        return existing
    try:
        with transaction.atomic():
            return MonthlyReport.objects.create(
                org=org,
                month=month,
                period=f"{month:%Y-%m}",
                currency="USD",
                generated_at=now,
                data=data,
                detail_csv=csv_text,
            )
    except IntegrityError:  # a concurrent task generated it first: theirs is the one
        return MonthlyReport.objects.for_org(org).get(month=month)


def report_last_month_ensure(*, org, now=None) -> MonthlyReport | None:
    """The last complete month's report, generated on first view (or by `manage.py demo`) when it had spend."""
    from apps.usage.models import DailyModelRollup

    local = (now or timezone.now()).astimezone(org.tz)
    month = add_months(local.date().replace(day=1), -1)
    report = MonthlyReport.objects.for_org(org).filter(month=month).first()
    if report is None and (
        DailyModelRollup.objects.for_org(org).filter(day__gte=month, day__lt=add_months(month, 1)).exists()
    ):
        report = report_generate(org=org, month=month)
    return report


def report_dispatch(*, report: MonthlyReport) -> list[int]:
    """One delivery row per current recipient (a recipient already sent to keeps its row and is not sent again).
    Returns the ids still to send; marks the report dispatched."""
    emails = selectors.recipients(org=report.org)
    ReportDelivery.objects.bulk_create(
        [ReportDelivery(org_id=report.org_id, report=report, email=e) for e in emails], ignore_conflicts=True
    )
    MonthlyReport.objects.filter(pk=report.pk, dispatched_at__isnull=True).update(
        dispatched_at=timezone.now()
    )
    return list(
        ReportDelivery.objects.filter(
            report=report, email__in=emails, status=ReportDelivery.PENDING
        ).values_list("pk", flat=True)
    )


def delivery_claim(*, delivery_id: int) -> bool:
    """pending/failed -> sending, atomically (one conditional UPDATE): exactly one caller wins; a row that is sending
    or sent is never claimed again, so a duplicated or retried task cannot send twice."""
    return bool(
        ReportDelivery.objects.filter(
            pk=delivery_id, status__in=[ReportDelivery.PENDING, ReportDelivery.FAILED]
        ).update(status=ReportDelivery.SENDING, attempts=F("attempts") + 1, claimed_at=timezone.now())
    )


def unsubscribe_token(*, org_id: int, email: str) -> str:
    return signing.dumps({"o": org_id, "e": email.lower()}, salt=UNSUBSCRIBE_SALT, compress=True)


def unsubscribe_url(*, org_id: int, email: str) -> str:
    return settings.SITE_URL + reverse(
        "report-unsubscribe", args=[unsubscribe_token(org_id=org_id, email=email)]
    )


def delivery_send(*, delivery_id: int) -> str:
    """Claims and sends one delivery. "sent", "skipped" (no longer a recipient) or "not-claimed" (someone else has
    it, or it went already). A send error marks it failed and raises DeliveryFailed for the task to retry."""
    if not delivery_claim(delivery_id=delivery_id):
        return "not-claimed"
    delivery = ReportDelivery.objects.select_related("report__org").get(pk=delivery_id)
    report = delivery.report
    if delivery.email not in selectors.recipients(org=report.org):
        ReportDelivery.objects.filter(pk=delivery_id).update(status=ReportDelivery.SKIPPED)
        return "skipped"
    try:
        app_url = settings.SITE_URL + reverse("reports", args=[report.org.slug])
        message = build_message(
            report,
            to=delivery.email,
            unsubscribe_url=unsubscribe_url(org_id=report.org_id, email=delivery.email),
            app_url=app_url,
        )
        message.send(fail_silently=False)
    except Exception as exc:
        ReportDelivery.objects.filter(pk=delivery_id).update(
            status=ReportDelivery.FAILED, last_error=f"{type(exc).__name__}: {exc}"[:300]
        )
        log.warning("report %s to %s failed: %s", report.pk, delivery.email, exc)
        raise DeliveryFailed(str(exc)) from exc
    ReportDelivery.objects.filter(pk=delivery_id).update(
        status=ReportDelivery.SENT,
        sent_at=timezone.now(),
        last_error="",
        message_id=message.extra_headers.get("Message-ID", "")[:255],
    )
    return "sent"


def report_resend(*, report: MonthlyReport) -> list[int]:
    """An admin's deliberate resend: every current recipient gets it again (their rows go back to pending), except
    a row a worker claimed in the last few minutes (still in flight); one stuck in `sending` longer is resent."""
    ids = report_dispatch(report=report)
    emails = selectors.recipients(org=report.org)
    in_flight = Q(status=ReportDelivery.SENDING, claimed_at__gt=timezone.now() - STUCK_AFTER)
    again = list(
        ReportDelivery.objects.filter(report=report, email__in=emails)
        .exclude(in_flight)
        .exclude(pk__in=ids)
        .values_list("pk", flat=True)
    )
    ReportDelivery.objects.filter(pk__in=again).update(status=ReportDelivery.PENDING, last_error="")
    return sorted([*ids, *again])


def subscription_set(*, membership: Membership, subscribed: bool) -> ReportSubscription:
    sub, _ = ReportSubscription.objects.update_or_create(
        org_id=membership.org_id, membership=membership, defaults={"subscribed": subscribed}
    )
    return sub


def settings_update(
    *, org, enabled: bool | None = None, extra_recipients: list[str] | None = None
) -> ReportSettings:
    row, _ = ReportSettings.objects.get_or_create(org=org)
    if enabled is not None:
        row.enabled = enabled
    if extra_recipients is not None:
        clean = []
        for raw in extra_recipients:
            email = raw.strip().lower()
            if not email:
                continue
            try:
                validate_email(email)
            except ValidationError as exc:
                raise ValidationError(
                    {"extra_recipients": [f"'{raw.strip()}' is not an e-mail address."]}
                ) from exc
            if email not in clean:
                clean.append(email)
        if len(clean) > MAX_EXTRA_RECIPIENTS:
            raise ValidationError({"extra_recipients": [f"At most {MAX_EXTRA_RECIPIENTS} extra addresses."]})
        row.extra_recipients = clean
    row.save()
    return row


def unsubscribe(*, token: str) -> tuple[Organization, str] | None:
    """Applies a signed unsubscribe link: the member's choice becomes "no", an extra address is removed. None for a
    bad token. Idempotent."""
    try:
        payload = signing.loads(token, salt=UNSUBSCRIBE_SALT)
        org = Organization.objects.get(pk=payload["o"])
        email = str(payload["e"]).lower()
    except (signing.BadSignature, Organization.DoesNotExist, KeyError, TypeError, ValueError):
        return None
    with transaction.atomic():
        for membership in Membership.objects.for_org(org).filter(user__email__iexact=email):
            subscription_set(membership=membership, subscribed=False)
        row = ReportSettings.objects.for_org(org).select_for_update().first()
        if row is not None and email in row.extra_recipients:
            row.extra_recipients = [e for e in row.extra_recipients if e != email]
            row.save(update_fields=["extra_recipients", "updated_at"])
    return org, email
