"""Settings → Audit log: owners and admins read the trail, filtered and paginated. Nothing here writes."""

from django.core.paginator import Paginator
from django.views.generic import TemplateView

from apps.audit import selectors
from apps.audit.forms import AuditFilterForm
from apps.orgs.views import SettingsMixin

PAGE_SIZE = 50


def _shown(value) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_shown(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_shown(v)}" for k, v in value.items())
    return str(value)


def changes_display(changes: dict) -> list[tuple[str, str, str]]:
    """{field: [before, after]} as (field, before, after) strings for the page."""
    return [(field.replace("_", " "), _shown(pair[0]), _shown(pair[1])) for field, pair in changes.items()]


class AuditLogView(SettingsMixin, TemplateView):
    template_name = "audit/log.html"
    settings_tab = "audit"
    required_capability = "manage_settings"

    def get_context_data(self, **kwargs):
        org = self.request.org
        form = AuditFilterForm(
            self.request.GET or None,
            actions=selectors.audit_actions(org=org),
            target_types=selectors.audit_target_types(org=org),
        )
        filters = {}
        if form.is_bound and form.is_valid():
            filters = {k: v for k, v in form.cleaned_data.items() if v}
        events = (
            selectors.audit_event_list(org=org, **filters)
            if not form.errors
            else selectors.audit_event_list(org=org).none()
        )
        page = Paginator(events, PAGE_SIZE).get_page(self.request.GET.get("page"))
        for event in page.object_list:
            event.changes_shown = changes_display(event.changes)
        query = self.request.GET.copy()
        query.pop("page", None)
        return super().get_context_data(
            form=form, page=page, events=page.object_list, query=query.urlencode(), **kwargs
        )
