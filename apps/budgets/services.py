"""Writes for budgets: budgets, evaluation (alerts exactly once), anomaly alerts, channels and deliveries."""

import hashlib
import hmac
import json
import logging
import secrets
import time
from datetime import date, timedelta
from decimal import Decimal

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apps.audit import services as audit
from apps.budgets import anomalies, selectors
from apps.budgets.models import Alert, AlertChannel, Budget, WebhookDelivery
from apps.orgs.models import ApiToken, Team
from spendctl.common import crypto, outbound
from spendctl.common.exceptions import NotFound
from spendctl.common.queue import enqueue

logger = logging.getLogger(__name__)
WEBHOOK_TIMEOUT = httpx.Timeout(5.0, connect=3.0)

# --- budgets -------------------------------------------------------------------------------------------------------

SCOPE_FIELDS = {
    "team": ("team",),
    "provider": ("provider",),
    "model": ("model",),
    "tag": ("tag_key", "tag_value"),
    "token": ("token",),
    "org": (),
}


def _clean_budget(budget: Budget) -> None:
    errors: dict[str, list[str]] = {}
    if budget.amount is None or budget.amount <= 0:
        errors["amount"] = ["The amount must be more than zero."]
    thresholds = budget.thresholds
    if (
        not isinstance(thresholds, list)
        or not thresholds
        or not all(isinstance(t, int) and not isinstance(t, bool) and 1 <= t <= 1000 for t in thresholds)
    ):
        errors["thresholds"] = ["Give whole percentages from 1 to 1000."]
    elif len(set(thresholds)) != len(thresholds):
        errors["thresholds"] = ["A threshold appears twice."]
    else:
        budget.thresholds = sorted(thresholds)
    if budget.period == Budget.CUSTOM:
        if not budget.custom_start or not budget.custom_end:
            errors["custom_end"] = ["A custom period needs a start and an end."]
        elif budget.custom_end <= budget.custom_start:
            errors["custom_end"] = ["The period must end after it starts."]
    else:
        budget.custom_start = budget.custom_end = None
    if budget.hard_cap is not None and budget.hard_cap <= 0:
        errors["hard_cap"] = ["The hard cap must be more than zero."]
    for field in SCOPE_FIELDS.get(budget.scope, ()):
        if not getattr(budget, field if field not in ("team", "token") else f"{field}_id"):
            errors[field] = [f"A {budget.scope} budget needs this."]
    if budget.team_id and not Team.objects.for_org(budget.org).filter(pk=budget.team_id).exists():
        errors["team"] = ["No such team."]
    if budget.token_id and not ApiToken.objects.for_org(budget.org).filter(pk=budget.token_id).exists():
        errors["token"] = ["No such token."]
    # fields that do not belong to the scope are cleared, so a budget means exactly what its scope says
    keep = set(SCOPE_FIELDS.get(budget.scope, ()))
    for field in ("provider", "model", "tag_key", "tag_value"):
        if field not in keep:
            setattr(budget, field, "")
    if "team" not in keep:
        budget.team = None
    if "token" not in keep:
        budget.token = None
    if errors:
        raise ValidationError(errors)
    budget.full_clean()


BUDGET_FIELDS = (
    "name",
    "scope",
    "team",
    "token",
    "provider",
    "model",
    "tag_key",
    "tag_value",
    "period",
    "custom_start",
    "custom_end",
    "amount",
    "currency",
    "thresholds",
    "hard_cap",
    "is_active",
)


@transaction.atomic
def budget_create(*, org, **fields) -> Budget:
    fields.setdefault("thresholds", [50, 80, 100])
    # Budgets are held in the ledger's currency: providers bill in USD and every cost is stored in USD.
    budget = Budget(org=org, currency="USD", **fields)
    _clean_budget(budget)
    budget.save()
    audit.record(
        org=org,
        action="budget.created",
        target=budget,
        changes=audit.created(audit.snapshot(budget, BUDGET_FIELDS)),
    )
    transaction.on_commit(lambda: _evaluate_now(org.pk))
    return budget


@transaction.atomic
def budget_update(*, budget: Budget, **fields) -> Budget:
    before = audit.snapshot(budget, BUDGET_FIELDS)
    for name, value in fields.items():
        setattr(budget, name, value)
    _clean_budget(budget)
    budget.save()
    changes = audit.diff(before, audit.snapshot(budget, BUDGET_FIELDS))
    if changes:
        audit.record(org=budget.org, action="budget.updated", target=budget, changes=changes)
    transaction.on_commit(lambda: _evaluate_now(budget.org_id))
    return budget


@transaction.atomic
def budget_delete(*, budget: Budget) -> None:
    audit.record(
        org=budget.org,
        action="budget.deleted",
        target=budget,
        changes=audit.deleted(audit.snapshot(budget, BUDGET_FIELDS)),
    )
    budget.delete()


# --- after usage is written ----------------------------------------------------------------------------------------


def usage_written(*, org, new_rows: list[dict], changed_days=()) -> None:
    """Called by the ledger after each committed write: counters first (cheap), then a debounced evaluation."""
    from apps.budgets import counters

    if new_rows:
        counters.record(org, new_rows)
    if changed_days:
        counters.forget_days(org, changed_days)
    try:
        _evaluate_soon(org.pk)
    except Exception:  # noqa: BLE001 - broker or cache down: the usage is stored; the hourly run evaluates it
        logger.warning("budget evaluation not queued for org %s (broker or cache unavailable)", org.pk)


# --- evaluation ----------------------------------------------------------------------------------------------------


def _evaluate_now(org_id: int) -> None:
    from apps.budgets.tasks import budgets_evaluate

    enqueue(budgets_evaluate, org_id)


def _evaluate_soon(org_id: int) -> None:
    from apps.budgets.tasks import budgets_evaluate_debounced

    budgets_evaluate_debounced(org_id)


def alert_raise(
    *,
    org,
    kind: str,
    title: str,
    message: str,
    budget: Budget | None = None,
    period_start: date | None = None,
    threshold: int = 0,
    series: str = "",
    day: date | None = None,
    details: dict | None = None,
) -> Alert | None:
    """Creates the alert unless it exists: the unique constraints make this exactly once, even across workers."""
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                org=org,
                kind=kind,
                budget=budget,
                period_start=period_start,
                threshold=threshold,
                series=series,
                day=day,
                title=title[:200],
                message=message,
                details=details or {},
            )
    except IntegrityError:
        return None
    transaction.on_commit(lambda: alert_notify(alert=alert))
    return alert


def _money(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.01')):,}"


def _evaluate_budget(budget: Budget, today: date) -> list[Alert]:
    status = selectors.budget_status(budget, today=today)
    raised = []
    for threshold in status.thresholds_crossed:
        alert = alert_raise(
            org=budget.org,
            kind=Alert.THRESHOLD,
            budget=budget,
            period_start=status.period_start,
            threshold=threshold,
            title=f"{budget.name}: {threshold}% of budget used",
            message=(
                f"{budget.name} has spent {_money(status.spent)} of {_money(budget.amount)} "
                f"({status.percent}%) in the period {status.period_start:%d %b} – "
                f"{status.period_end - timedelta(days=1):%d %b %Y}."
            ),
            details={
                "spent": str(status.spent),
                "amount": str(budget.amount),
                "percent": str(status.percent),
            },
        )
        if alert:
            raised.append(alert)
    fc = status.forecast
    if status.percent < 100 and fc.crossing_date and fc.crossing_date < status.period_end:
        alert = alert_raise(
            org=budget.org,
            kind=Alert.FORECAST,
            budget=budget,
            period_start=status.period_start,
            threshold=100,
            title=f"{budget.name}: forecast to exceed its budget on {fc.crossing_date:%d %b}",
            message=(
                f"At the current run rate {budget.name} is forecast to spend {_money(fc.expected_total)} "
                f"(range {_money(fc.low)} – {_money(fc.high)}) against {_money(budget.amount)}, crossing "
                f"100% on {fc.crossing_date:%d %b %Y}."
            ),
            details={"expected_total": str(fc.expected_total), "crossing_date": fc.crossing_date.isoformat()},
        )
        if alert:
            raised.append(alert)
    return raised


def _series_label(key: tuple, teams: dict) -> str:
    team_id, provider, model = key
    team = teams.get(team_id, "unattributed") if team_id else "unattributed"
    return f"team {team} · {provider} {model}"


def anomalies_evaluate(*, org, days: list[date]) -> list[Alert]:
    """Daily spend per team, provider and model against its own trailing baseline; one alert per series per day."""
    if not days:
        return []
    start = min(days) - timedelta(days=anomalies.DEFAULT_LOOKBACK + 1)
    from apps.usage.models import DailyRollup

    series: dict[tuple, dict[date, Decimal]] = {}
    rows = (
        DailyRollup.objects.for_org(org)
        .filter(day__gte=start, day__lte=max(days))
        .values_list("team_id", "provider", "model", "day", "cost")
    )
    for team_id, provider, model, day, cost in rows:
        bucket = series.setdefault((team_id, provider, model), {})
        bucket[day] = bucket.get(day, Decimal(0)) + cost
    teams = dict(Team.objects.for_org(org).values_list("id", "name"))
    raised = []
    for day in days:
        for found in anomalies.detect(series=series, day=day):
            label = _series_label(found.series, teams)
            alert = alert_raise(
                org=org,
                kind=Alert.ANOMALY,
                series="|".join(str(p) for p in found.series),
                day=day,
                title=f"Unusual spend: {label} at {found.multiple}× normal on {day:%d %b}",
                message=(
                    f"{label} spent {_money(found.spend)} on {day:%d %b %Y}, {found.multiple}× its usual "
                    f"{_money(found.baseline)} a day."
                ),
                details={
                    "team_id": found.series[0] or None,
                    "provider": found.series[1],
                    "model": found.series[2],
                    "spend": str(found.spend),
                    "baseline": str(found.baseline),
                    "multiple": str(found.multiple),
                },
            )
            if alert:
                raised.append(alert)
    return raised


def budgets_evaluate(*, org, today: date | None = None) -> list[Alert]:
    today = today or selectors.org_today(org)
    raised = []
    for budget in Budget.objects.for_org(org).filter(is_active=True).select_related("org", "team"):
        start, end = selectors.budget_period(budget, today)
        if start <= today < end:
            raised += _evaluate_budget(budget, today)
    raised += anomalies_evaluate(org=org, days=[today - timedelta(days=1), today])
    return raised


def alert_acknowledge(*, alert: Alert, user) -> Alert:
    if alert.acknowledged_at is None:
        alert.acknowledged_at, alert.acknowledged_by = timezone.now(), user
        alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
    return alert


# --- channels and deliveries ---------------------------------------------------------------------------------------


CHANNEL_FIELDS = ("kind", "name", "url", "slack_format", "is_active", "recipients")


@sensitive_variables("secret")
@transaction.atomic
def channel_create(
    *,
    org,
    kind: str,
    name: str,
    recipients=(),
    url: str = "",
    slack_format: bool = False,
    is_active: bool = True,
) -> tuple[AlertChannel, str | None]:
    """Returns the channel and, for a webhook, its signing secret (shown once)."""
    channel = AlertChannel(
        org=org, kind=kind, name=name.strip(), url=url.strip(), slack_format=slack_format, is_active=is_active
    )
    secret = None
    if kind == AlertChannel.WEBHOOK:
        if not channel.url:
            raise ValidationError({"url": ["A webhook needs a URL."]})
        try:
            outbound.check_url(channel.url)
        except outbound.RefusedURL as exc:
            raise ValidationError({"url": [str(exc)]}) from exc
        secret = "whsec_" + secrets.token_urlsafe(24)
        channel.secret_encrypted = crypto.encrypt(secret)
    channel.full_clean()
    channel.save()
    members = list(recipients)
    if any(m.org_id != org.pk for m in members):
        raise ValidationError({"recipients": ["Recipients must be members of this organisation."]})
    channel.recipients.set(members)
    audit.record(
        org=org,
        action="alert_channel.created",
        target=channel,
        changes=audit.created({**audit.snapshot(channel, CHANNEL_FIELDS), "secret": secret is not None}),
    )
    return channel, secret


@transaction.atomic
def channel_update(
    *,
    channel: AlertChannel,
    kind: str | None = None,
    name: str | None = None,
    recipients=None,
    url: str | None = None,
    slack_format: bool | None = None,
    is_active: bool | None = None,
) -> AlertChannel:
    """Renames, pauses or re-points a channel. Its kind and signing secret stay as they are."""
    if kind is not None and kind != channel.kind:
        raise ValidationError({"kind": ["A channel's kind cannot change; create a new channel instead."]})
    before = audit.snapshot(channel, CHANNEL_FIELDS)
    if name is not None:
        channel.name = name.strip()
    if slack_format is not None:
        channel.slack_format = slack_format
    if is_active is not None:
        channel.is_active = is_active
    if url is not None and channel.kind == AlertChannel.WEBHOOK:
        channel.url = url.strip()
        if not channel.url:
            raise ValidationError({"url": ["A webhook needs a URL."]})
        try:
            outbound.check_url(channel.url)
        except outbound.RefusedURL as exc:
            raise ValidationError({"url": [str(exc)]}) from exc
    channel.full_clean()
    channel.save()
    if recipients is not None:
        members = list(recipients)
        if any(m.org_id != channel.org_id for m in members):
            raise ValidationError({"recipients": ["Recipients must be members of this organisation."]})
        channel.recipients.set(members)
    changes = audit.diff(before, audit.snapshot(channel, CHANNEL_FIELDS))
    if changes:
        audit.record(org=channel.org, action="alert_channel.updated", target=channel, changes=changes)
    return channel


@transaction.atomic
def channel_delete(*, channel: AlertChannel) -> None:
    audit.record(
        org=channel.org,
        action="alert_channel.deleted",
        target=channel,
        changes=audit.deleted(audit.snapshot(channel, CHANNEL_FIELDS)),
    )
    channel.delete()


def alert_payload(alert: Alert, *, slack: bool) -> dict:
    link = f"{settings.SITE_URL}/o/{alert.org.slug}/budgets/alerts/"
    if slack:
        return {"text": f"*{alert.title}*\n{alert.message}\n<{link}|Open in spendctl>"}
    return {
        "id": alert.pk,
        "kind": alert.kind,
        "title": alert.title,
        "message": alert.message,
        "budget_id": alert.budget_id,
        "period_start": alert.period_start.isoformat() if alert.period_start else None,
        "threshold": alert.threshold,
        "day": alert.day.isoformat() if alert.day else None,
        "details": alert.details,
        "created_at": alert.created_at.isoformat(),
        "org": alert.org.slug,
        "url": link,
    }


@sensitive_variables("secret")
def sign(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def alert_notify(*, alert: Alert) -> None:
    """E-mails the chosen members and queues one delivery per webhook (each delivered and retried on its own)."""
    from apps.budgets.tasks import budgets_webhook_deliver

    for channel in AlertChannel.objects.for_org(alert.org).filter(is_active=True):
        if channel.kind == AlertChannel.EMAIL:
            emails = [m.user.email for m in channel.recipients.select_related("user") if m.user.is_active]
            if emails:
                send_mail(
                    subject=f"[spendctl] {alert.title}",
                    message=f"{alert.message}\n\n{settings.SITE_URL}/o/{alert.org.slug}/budgets/alerts/",
                    from_email=None,
                    recipient_list=emails,
                    fail_silently=True,
                )
        else:
            delivery, created = WebhookDelivery.objects.get_or_create(
                org=alert.org, channel=channel, alert=alert
            )
            if created:
                budgets_webhook_deliver.delay(delivery.pk)


@sensitive_variables("headers")
def webhook_attempt(*, delivery: WebhookDelivery) -> bool:
    """One POST. Records the outcome; never echoes the response body. True when delivered."""
    channel = delivery.channel
    alert = delivery.alert
    if alert is not None:
        payload = alert_payload(alert, slack=channel.slack_format)
    else:
        text = "spendctl test message: this webhook receives spendctl alerts."
        payload = (
            {"text": text} if channel.slack_format else {"kind": "test", "title": "Test", "message": text}
        )
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "spendctl-webhooks/1",
        "X-Spendctl-Timestamp": timestamp,
        "X-Spendctl-Signature": "sha256=" + sign(crypto.decrypt(channel.secret_encrypted), timestamp, body),
    }
    delivery.attempts += 1
    try:
        from spendctl.common.outbound import post

        response = post(channel.url, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT)
        delivery.last_status_code = response.status_code
        ok = 200 <= response.status_code < 300
        delivery.last_error = "" if ok else f"HTTP {response.status_code}"
    except Exception as exc:  # noqa: BLE001 - any network failure is recorded, never raised to the caller
        from spendctl.common.outbound import RefusedURL, refused_reason

        ok = False
        refused = str(exc) if isinstance(exc, RefusedURL) else refused_reason(exc)
        delivery.last_error = (
            f"Refused: {refused}" if refused else f"{type(exc).__name__}: could not deliver"
        )[:300]
    if ok:
        delivery.status, delivery.delivered_at = WebhookDelivery.DELIVERED, timezone.now()
    delivery.save()
    return ok


def delivery_give_up(*, delivery: WebhookDelivery) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.FAILED)


@transaction.atomic
def channel_send_test(*, channel: AlertChannel) -> WebhookDelivery | None:
    """The channel row stays locked until the test is logged, so a concurrent delete waits for it (or wins first,
    and this is a 404): never a delivery without its channel (found by the API fuzzing run)."""
    if not AlertChannel.objects.select_for_update().filter(pk=channel.pk).exists():
        raise NotFound("No such channel.")
    if channel.kind != AlertChannel.WEBHOOK:
        emails = [m.user.email for m in channel.recipients.select_related("user")]
        audit.record(
            org=channel.org,
            action="alert_channel.tested",
            target=channel,
            changes={"sent_to": [None, emails]},
        )
        send_mail(
            subject="[spendctl] Test alert",
            message="This address receives spendctl alerts.",
            from_email=None,
            recipient_list=emails,
        )
        return None
    delivery = WebhookDelivery.objects.create(org=channel.org, channel=channel, is_test=True)
    if not webhook_attempt(delivery=delivery):
        delivery.status = WebhookDelivery.FAILED  # a test is sent once, never retried
        delivery.save(update_fields=["status"])
    audit.record(
        org=channel.org,
        action="alert_channel.tested",
        target=channel,
        changes={
            "delivery": [None, f"{delivery.status}: {delivery.last_error or delivery.last_status_code}"]
        },
    )
    return delivery
