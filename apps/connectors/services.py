"""Connections and syncs. A sync walks its window in chunks; each provider page is committed with the cursor that
resumes after it, so a run that dies half way continues where it stopped and a re-read never double counts."""

import logging
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apps.audit import services as audit
from apps.connectors.models import ProviderConnection, ProviderCostRecord, SyncRun
from apps.connectors.providers import registry
from apps.connectors.providers.base import (
    CostRow,
    MalformedPage,
    ProviderAuthError,
    ProviderError,
    UsageRow,
    Window,
)
from apps.connectors.providers.http import HttpSettings
from apps.orgs.models import Membership
from apps.orgs.permissions import ADMIN, OWNER
from apps.usage.services import usage_provider_rows_replace
from spendctl.common import crypto, outbound
from spendctl.common.exceptions import Conflict

logger = logging.getLogger(__name__)
CHUNK = timedelta(days=7)
MAX_WINDOW = timedelta(days=366)
FIRST_SYNC_DAYS = 30


@sensitive_variables()
def redact(text: str, secret: str | None) -> str:
    """Never let a key into a message, even a provider's echo of it."""
    text = str(text)
    if secret:
        text = text.replace(secret, "[redacted]")
        if len(secret) > 12:
            text = text.replace(secret[:12], "[redacted]")
    return text[:500]


# Per-provider client options (page sizes) and HTTP settings; tests set them to replay recorded pages.
CLIENT_OPTIONS: dict[str, dict] = {}
HTTP_SETTINGS = None


# "Test connection" on save: someone is waiting for the answer, so two quick attempts, not a sync's patient retries
# (found by the API fuzzing run: a base URL that refuses connections held a request for 15 s of back-off).
VALIDATE_HTTP_SETTINGS = HttpSettings(
    connect_timeout=3.0,
    read_timeout=10.0,
    write_timeout=5.0,
    pool_timeout=3.0,
    max_attempts=2,
    backoff_base=0.5,
)


# Functions that hold a key hide their variables (and those of everything they call) from exception reports.
@sensitive_variables()
def _client(connection: ProviderConnection, api_key: str | None = None, *, http: HttpSettings | None = None):
    cls = registry.get(connection.provider)
    key = api_key if api_key is not None else crypto.decrypt(connection.key_encrypted)
    client = cls(api_key=key, base_url=connection.base_url or None, http=http or HTTP_SETTINGS)
    for name, value in CLIENT_OPTIONS.get(connection.provider, {}).items():
        setattr(client, name, value)
    return client


@sensitive_variables()
def _validate_key(connection: ProviderConnection, api_key: str) -> None:
    """'Test connection': one cheap call to the provider with the new key. Field errors, never the key itself."""
    try:
        with _client(connection, api_key, http=HTTP_SETTINGS or VALIDATE_HTTP_SETTINGS) as client:
            client.validate_credentials()
    except ProviderAuthError as exc:
        raise ValidationError(
            {"api_key": [f"The provider refused this key: {redact(exc.message, api_key)}"]}
        ) from exc
    except ProviderError as exc:
        raise ValidationError(
            {"base_url": [f"Could not reach the provider to test the key: {redact(exc.message, api_key)}"]}
        ) from exc
    except ValueError as exc:
        raise ValidationError({"base_url": [redact(str(exc), api_key)]}) from exc


def _check_provider(provider: str):
    try:
        registry.get(provider)
    except KeyError as exc:
        keys = ", ".join(c.key for c in registry.all_providers())
        raise ValidationError(
            {"provider": [f"Unknown provider '{provider[:40]}'. Use one of: {keys}."]}
        ) from exc


# What the trail shows of a connection. The key itself never: "api_key" is masked to "[secret]".
CONNECTION_FIELDS = ("provider", "label", "key_hint", "base_url", "is_active", "trailing_days")


@sensitive_variables("api_key")
def connection_create(
    *,
    org,
    provider: str,
    label: str,
    api_key: str,
    base_url: str = "",
    user=None,
    test: bool = True,
    is_active: bool = True,
    trailing_days: int | None = None,
) -> ProviderConnection:
    _check_provider(provider)
    if ProviderConnection.objects.for_org(org).filter(label__iexact=label.strip()).exists():
        raise ValidationError({"label": ["A connection with this label exists already."]})
    api_key = api_key.strip()
    if not api_key:
        raise ValidationError({"api_key": ["This field is required."]})
    connection = ProviderConnection(
        org=org,
        provider=provider,
        label=label.strip(),
        base_url=base_url.strip(),
        created_by=user,
        key_encrypted=crypto.encrypt(api_key),
        key_hint=api_key[-4:],
        is_active=is_active,
    )
    if trailing_days is not None:
        connection.trailing_days = trailing_days
    connection.full_clean()
    _check_base_url(connection.base_url)
    if test:
        _validate_key(connection, api_key)
    with transaction.atomic():  # not around the provider call: no transaction is held open over the network
        connection.save()
        audit.record(
            org=org,
            action="connector.created",
            target=connection,
            changes=audit.created({**audit.snapshot(connection, CONNECTION_FIELDS), "api_key": True}),
        )
    return connection


def _check_base_url(url: str) -> None:
    if url:
        try:
            outbound.check_url(url)
        except outbound.RefusedURL as exc:
            raise ValidationError({"base_url": [str(exc)]}) from exc


@sensitive_variables("api_key")
def connection_update(
    *,
    connection: ProviderConnection,
    label: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    is_active: bool | None = None,
    trailing_days: int | None = None,
) -> ProviderConnection:
    """Rotating the key keeps the connection's history; the new key is tested first."""
    before = audit.snapshot(connection, CONNECTION_FIELDS)
    if label is not None:
        label = label.strip()
        clash = ProviderConnection.objects.for_org(connection.org).filter(label__iexact=label)
        if clash.exclude(pk=connection.pk).exists():
            raise ValidationError({"label": ["A connection with this label exists already."]})
        connection.label = label
    if base_url is not None:
        connection.base_url = base_url.strip()
        _check_base_url(connection.base_url)
    if is_active is not None:
        connection.is_active = is_active
    if trailing_days is not None:
        connection.trailing_days = trailing_days
    connection.full_clean()
    if api_key is not None:
        api_key = api_key.strip()
        _validate_key(connection, api_key)
        connection.key_encrypted, connection.key_hint = crypto.encrypt(api_key), api_key[-4:]
        connection.status, connection.last_error = ProviderConnection.ACTIVE, ""
    elif base_url is not None and connection.is_active:
        _validate_key(connection, crypto.decrypt(connection.key_encrypted))
    fields = ["label", "base_url", "is_active", "trailing_days", "updated_at"]
    if api_key is not None:
        fields += ["key_encrypted", "key_hint", "status", "last_error"]
    with transaction.atomic():
        # Only what this call changes: a sync running meanwhile keeps its progress (synced_through, last sync).
        connection.save(update_fields=fields)
        changes = audit.diff(before, audit.snapshot(connection, CONNECTION_FIELDS))
        if api_key is not None:
            action = "connector.key_rotated"
            changes["api_key"] = [True, True]
        elif set(changes) == {"is_active"}:
            action = "connector.enabled" if connection.is_active else "connector.disabled"
        else:
            action = "connector.updated"
        if changes:
            audit.record(org=connection.org, action=action, target=connection, changes=changes)
    return connection


@transaction.atomic
def connection_delete(*, connection: ProviderConnection) -> None:
    """Removes the key and the run history; usage already in the ledger stays (it is what was spent)."""
    audit.record(
        org=connection.org,
        action="connector.deleted",
        target=connection,
        changes=audit.deleted({**audit.snapshot(connection, CONNECTION_FIELDS), "api_key": True}),
    )
    connection.delete()


# --- runs ----------------------------------------------------------------------------------------------------------


def utc_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def run_create(
    *,
    connection: ProviderConnection,
    kind: str,
    start: date | None = None,
    end: date | None = None,
    now: datetime | None = None,
) -> SyncRun:
    """A run over whole UTC days [start, end). Default: from the last complete day minus the trailing window."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    if start is None:
        if connection.synced_through:
            start = connection.synced_through - timedelta(days=connection.trailing_days - 1)
        else:
            start = today - timedelta(days=FIRST_SYNC_DAYS)
    end = end or today + timedelta(days=1)
    errors = {}
    if end <= start:
        errors["end"] = ["The end (exclusive) must be after the start."]
    elif end - start > MAX_WINDOW:
        errors["start"] = ["A backfill covers at most a year."]
    if end > today + timedelta(days=1):
        errors["end"] = ["The end cannot be after tomorrow."]
    if errors:
        raise ValidationError(errors)
    if SyncRun.objects.filter(
        connection=connection, status__in=[SyncRun.QUEUED, SyncRun.RUNNING, SyncRun.RETRYING]
    ).exists():
        raise Conflict("A sync of this connection is already under way.", code="sync_in_progress")
    window_start, window_end = utc_midnight(start), utc_midnight(end)
    return SyncRun.objects.create(
        org=connection.org,
        connection=connection,
        kind=kind,
        window_start=window_start,
        window_end=window_end,
        chunk_start=window_start,
    )


def _usage_item(row: UsageRow) -> dict:
    return {
        "provider": row.provider,
        "endpoint": row.endpoint,
        "bucket_start": row.bucket_start,
        "bucket_width": row.bucket_width,
        "model_raw": row.model_raw or "",
        "project_id": row.project_id,
        "workspace_id": row.workspace_id,
        "api_key_id": row.api_key_id,
        "service_tier": row.service_tier,
        "batch": row.batch,
        "context_window": row.context_window,
        "dimensions_key": row.dimensions_key,
        "reported_cost": row.reported_cost,
        "tags": {**row.extra_dimensions, **({"user_id": row.user_id} if row.user_id else {})},
        "counts": {
            "requests": row.requests,
            "input_tokens": row.input_tokens,
            "cache_read_tokens": row.cache_read_tokens,
            "cache_write_tokens": row.cache_write_tokens,
            "cache_write_1h_tokens": row.cache_write_1h_tokens,
            "output_tokens": row.output_tokens,
            "reasoning_tokens": row.reasoning_tokens,
            "input_audio_tokens": row.input_audio_tokens,
            "output_audio_tokens": row.output_audio_tokens,
        },
    }


def _cost_rows_replace(connection: ProviderConnection, bucket_starts, rows: list[CostRow]) -> int:
    starts = set(bucket_starts) | {r.bucket_start for r in rows}
    ProviderCostRecord.objects.filter(connection=connection, bucket_start__in=starts).delete()
    objs, seen = [], set()
    for r in rows:
        key = f"{r.bucket_start:%Y%m%dT%H%M}:{r.dimensions_key}"
        if key in seen:
            continue
        seen.add(key)
        objs.append(
            ProviderCostRecord(
                org_id=connection.org_id,
                connection=connection,
                key=key,
                bucket_start=r.bucket_start,
                day=r.bucket_start.astimezone(UTC).date(),
                amount=r.amount,
                currency=r.currency,
                model=r.model or "",
                line_item=(r.line_item or "")[:300],
                project_id=r.project_id or "",
                workspace_id=r.workspace_id or "",
                cost_type=r.cost_type or "",
                token_type=r.token_type or "",
                service_tier=r.service_tier or "",
            )
        )
    ProviderCostRecord.objects.bulk_create(objs, batch_size=1000)
    return len(objs)


def _commit_page(run: SyncRun, connection: ProviderConnection, page) -> None:
    with transaction.atomic():
        locked = SyncRun.objects.select_for_update().get(pk=run.pk)
        if run.phase == "usage":
            added, replaced = usage_provider_rows_replace(
                org=connection.org,
                connection_id=connection.pk,
                endpoint=page.endpoint or "default",
                bucket_starts=page.bucket_starts,
                items=[_usage_item(r) for r in page.rows],
            )
            locked.records_added += added
            locked.records_replaced += replaced
        else:
            locked.cost_rows += _cost_rows_replace(connection, page.bucket_starts, page.rows)
        locked.pages += 1
        locked.cursor = page.next_cursor or ""
        locked.heartbeat_at = timezone.now()
        if page.next_cursor is None:  # the phase is complete: move on in the same commit
            locked.phase, locked.cursor = ("costs", "") if run.phase == "usage" else ("done", "")
        locked.save()
        for field in (
            "records_added",
            "records_replaced",
            "cost_rows",
            "pages",
            "cursor",
            "phase",
            "heartbeat_at",
        ):
            setattr(run, field, getattr(locked, field))


@sensitive_variables()
def run_execute(*, run: SyncRun) -> SyncRun:
    """Runs (or resumes) a sync. Provider errors propagate after being recorded on the run; the task retries."""
    connection = run.connection
    SyncRun.objects.filter(pk=run.pk).update(
        status=SyncRun.RUNNING,
        started_at=run.started_at or timezone.now(),
        attempts=run.attempts + 1,
        heartbeat_at=timezone.now(),
    )
    run.refresh_from_db()
    key = crypto.decrypt(connection.key_encrypted)
    try:
        with _client(connection, key) as client:
            while run.chunk_start < run.window_end:
                window = Window(run.chunk_start, min(run.chunk_start + CHUNK, run.window_end))
                if run.phase == "usage":
                    for page in client.fetch_usage(window, cursor=run.cursor or None):
                        _commit_page(run, connection, page)
                    if run.phase == "usage":  # provider yielded no page at all
                        SyncRun.objects.filter(pk=run.pk).update(phase="costs", cursor="")
                        run.phase, run.cursor = "costs", ""
                if run.phase == "costs":
                    for page in client.fetch_costs(window, cursor=run.cursor or None):
                        _commit_page(run, connection, page)
                run.chunk_start, run.phase, run.cursor = window.end, "usage", ""
                SyncRun.objects.filter(pk=run.pk).update(
                    chunk_start=run.chunk_start, phase="usage", cursor=""
                )
            retries = [
                {"path": a.path, "status": a.status, "error": a.error, "waited": a.waited}
                for a in client.attempts
                if a.status != 200
            ]
    except ProviderError as exc:
        _record_failure(run, connection, exc, key)
        raise
    run.refresh_from_db()
    run.status, run.finished_at, run.error = SyncRun.SUCCEEDED, timezone.now(), ""
    run.retries = (run.retries + retries)[-50:]
    run.save()
    last_day = (run.window_end - timedelta(days=1)).date()
    complete_through = min(last_day, timezone.now().astimezone(UTC).date() - timedelta(days=1))
    updates = {"last_sync_at": timezone.now(), "status": ProviderConnection.ACTIVE, "last_error": ""}
    if connection.synced_through is None or complete_through > connection.synced_through:
        updates["synced_through"] = complete_through
    ProviderConnection.objects.filter(pk=connection.pk).update(**updates)
    return run


@sensitive_variables()
def _record_failure(run: SyncRun, connection: ProviderConnection, exc: ProviderError, key: str) -> None:
    message = redact(exc.message, key)
    if isinstance(exc, MalformedPage):
        message = f"Malformed page from the provider ({message}); what came before it is kept."
    SyncRun.objects.filter(pk=run.pk).update(error=message, heartbeat_at=timezone.now())
    status = ProviderConnection.NEEDS_KEY if isinstance(exc, ProviderAuthError) else ProviderConnection.ERROR
    ProviderConnection.objects.filter(pk=connection.pk).update(status=status, last_error=message)
    logger.warning("sync run %s of connection %s failed: %s", run.pk, connection.pk, message)


def run_mark(*, run: SyncRun, status: str) -> None:
    SyncRun.objects.filter(pk=run.pk).update(
        status=status, finished_at=timezone.now() if status == SyncRun.FAILED else None
    )


def notify_admins_key_rejected(*, connection: ProviderConnection) -> int:
    """A 401/403 means the key was revoked or lost its rights: tell the org's owners and admins."""
    emails = list(
        Membership.objects.for_org(connection.org)
        .filter(role__in=[OWNER, ADMIN], user__is_active=True)
        .values_list("user__email", flat=True)
    )
    if emails:
        send_mail(
            subject=f"[spendctl] {connection.label}: the {connection.provider} key needs replacing",
            message=(
                f"The {connection.provider} provider refused the admin key of the connection '{connection.label}' "
                f"in {connection.org.name} (key ending …{connection.key_hint}). Syncing has stopped.\n\n"
                f"Add a new key: {settings.SITE_URL}/o/{connection.org.slug}/connectors/\n"
            ),
            from_email=None,
            recipient_list=emails,
        )
    return len(emails)


def runs_due(*, now: datetime | None = None, local_hour: int = 2) -> list[SyncRun]:
    """Nightly: one run per active connection whose org's local time is `local_hour`, once per local day."""
    now = now or timezone.now()
    created = []
    for connection in (
        ProviderConnection.objects.filter(is_active=True)
        .exclude(status=ProviderConnection.NEEDS_KEY)
        .select_related("org")
    ):
        local = now.astimezone(connection.org.tz)
        if local.hour != local_hour:
            continue
        local_midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        if SyncRun.objects.filter(
            connection=connection, kind=SyncRun.NIGHTLY, created_at__gte=local_midnight
        ).exists():
            continue
        try:
            created.append(run_create(connection=connection, kind=SyncRun.NIGHTLY, now=now))
        except (ValidationError, Conflict):
            continue
    return created


# A run waiting for its retry longer than this lost the retry (the broker lost it): the longest backoff is 30 min.
RETRY_LOST_AFTER = timedelta(hours=2)


def runs_stalled(*, now: datetime | None = None, after: timedelta = timedelta(minutes=30)) -> list[SyncRun]:
    """Runs whose worker vanished (no heartbeat), queued runs no worker ever started (the broker was down when they
    were created) and retrying runs whose retry never came (the broker lost it): picked up again from their
    cursor."""
    now = now or timezone.now()
    return list(
        SyncRun.objects.filter(
            Q(status__in=[SyncRun.RUNNING, SyncRun.QUEUED], heartbeat_at__lt=now - after)
            | Q(status=SyncRun.QUEUED, heartbeat_at__isnull=True, created_at__lt=now - after)
            | Q(status=SyncRun.RETRYING, heartbeat_at__lt=now - max(after, RETRY_LOST_AFTER))
        )
    )


def next_nightly(
    connection: ProviderConnection, *, now: datetime | None = None, local_hour: int = 2
) -> datetime:
    now = (now or timezone.now()).astimezone(connection.org.tz)
    candidate = now.replace(hour=local_hour, minute=0, second=0, microsecond=0)
    return candidate if candidate > now else candidate + timedelta(days=1)
