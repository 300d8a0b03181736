from datetime import date, datetime, time, timedelta

from django.db.models import Q, QuerySet

from apps.audit.models import AuditEvent


def _day_start(day: date, tz) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


def audit_event_list(
    *,
    org,
    action: str = "",
    actor: str = "",
    target_type: str = "",
    target_id: str = "",
    start: date | None = None,
    end: date | None = None,
) -> QuerySet[AuditEvent]:
    """Newest first. `action` matches exactly or, ending in '.', by prefix ('token.'); `actor` matches the label
    (an e-mail, a token prefix) or 'system'; start/end are days in the org's time zone, end inclusive."""
    qs = AuditEvent.objects.for_org(org)
    if action:
        qs = qs.filter(action__startswith=action) if action.endswith(".") else qs.filter(action=action)
    if actor:
        qs = qs.filter(Q(actor_label__icontains=actor) | Q(actor_token_prefix=actor) | Q(actor_type=actor))
    if target_type:
        qs = qs.filter(target_type=target_type)
    if target_id:
        qs = qs.filter(target_id=target_id)
    if start:
        qs = qs.filter(created_at__gte=_day_start(start, org.tz))
    if end:
        qs = qs.filter(created_at__lt=_day_start(end + timedelta(days=1), org.tz))
    return qs.order_by("-created_at", "-id")


def audit_actions(*, org) -> list[str]:
    return list(
        AuditEvent.objects.for_org(org).order_by("action").values_list("action", flat=True).distinct()
    )


def audit_target_types(*, org) -> list[str]:
    return list(
        AuditEvent.objects.for_org(org)
        .order_by("target_type")
        .values_list("target_type", flat=True)
        .distinct()
    )
