from datetime import UTC, datetime

import django_filters

from apps.audit.models import AuditEvent


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO time with any offset, compared in UTC: PostgreSQL refuses offsets beyond ±15:59 ("time zone
    displacement out of range"), which ISO 8601 allows and the API fuzzing run sent (a 500 before)."""

    def filter(self, qs, value):
        if value is not None and value.tzinfo is not None:
            try:
                value = value.astimezone(UTC)
            except OverflowError:  # beyond year 1 or 9999 in UTC: the nearest representable time
                value = (
                    datetime.min.replace(tzinfo=UTC)
                    if value.year < 5000
                    else datetime.max.replace(tzinfo=UTC)
                )
        return super().filter(qs, value)


class AuditEventFilter(django_filters.FilterSet):
    action = django_filters.CharFilter(
        help_text="Exact action, or a prefix ending in '.' (token.)", method="_action"
    )
    actor = django_filters.CharFilter(
        help_text="E-mail (part of it), token prefix, or 'system'", method="_actor", max_length=200
    )
    actor_type = django_filters.ChoiceFilter(choices=AuditEvent.ACTOR_TYPES)
    target_type = django_filters.CharFilter(max_length=32)
    target_id = django_filters.CharFilter(max_length=64)
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = [
            "action",
            "actor",
            "actor_type",
            "target_type",
            "target_id",
            "created_after",
            "created_before",
        ]

    def _action(self, queryset, name, value):
        if value.endswith("."):
            return queryset.filter(action__startswith=value)
        return queryset.filter(action=value)

    def _actor(self, queryset, name, value):
        from django.db.models import Q

        return queryset.filter(
            Q(actor_label__icontains=value) | Q(actor_token_prefix=value) | Q(actor_type=value)
        )
