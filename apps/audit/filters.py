import django_filters

from apps.audit.models import AuditEvent


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
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

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
