"""Connectors page: add (tested on save), status, last and next sync, sync now, run history, reconciliation."""

from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import TemplateView

from apps.connectors import selectors, services
from apps.connectors.forms import BackfillForm, ConnectionForm, ReplaceKeyForm
from apps.connectors.models import ProviderConnection, SyncRun
from apps.connectors.tasks import connectors_sync_run
from apps.orgs.permissions import role_can
from apps.orgs.tenancy import OrgViewMixin
from apps.orgs.views import apply_to_form
from spendctl.common.exceptions import ApplicationError
from spendctl.common.queue import enqueue


def _start_run(request, connection, **window):
    try:
        with transaction.atomic():
            run = services.run_create(connection=connection, **window)
            transaction.on_commit(lambda: enqueue(connectors_sync_run, run.pk))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return None
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return None
    return run


class _ConnectorsMixin(OrgViewMixin):
    def get_context_data(self, **kwargs):
        return super().get_context_data(nav="connectors", **kwargs)

    def require_manage(self):
        if not role_can(self.request.membership.role, "manage_settings"):
            raise PermissionDenied("Only owners and admins can change provider connections.")


@method_decorator(sensitive_post_parameters("api_key"), name="post")
class ConnectorsView(_ConnectorsMixin, TemplateView):
    template_name = "connectors/list.html"

    def get_context_data(self, **kwargs):
        connections = list(selectors.connection_list(org=self.request.org))
        for c in connections:
            c.next_sync = services.next_nightly(c) if c.is_active else None
            c.last_run = c.runs.first()
        kwargs.setdefault("form", ConnectionForm())
        return super().get_context_data(connections=connections, **kwargs)

    def post(self, request, *args, **kwargs):
        self.require_manage()
        form = ConnectionForm(request.POST)
        if form.is_valid():
            connection = apply_to_form(
                form,
                lambda: services.connection_create(org=request.org, user=request.user, **form.cleaned_data),
            )
            if connection:
                messages.success(
                    request, f"Connected {connection.label}: the key works. Its first sync has started."
                )
                _start_run(request, connection, kind=SyncRun.MANUAL)
                return redirect("connectors", org_slug=request.org.slug)
        return self.render_to_response(self.get_context_data(form=form), status=400)


@method_decorator(sensitive_post_parameters("api_key"), name="post")
class ConnectorDetailView(_ConnectorsMixin, TemplateView):
    template_name = "connectors/detail.html"

    def get_context_data(self, **kwargs):
        connection = self.org_object_or_404(ProviderConnection, pk=self.kwargs["pk"])
        today = timezone.now().date()
        days = selectors.reconciliation(
            connection=connection, start=today - timedelta(days=30), end=today + timedelta(days=1)
        )
        kwargs.setdefault("key_form", ReplaceKeyForm())
        kwargs.setdefault("backfill_form", BackfillForm())
        return super().get_context_data(
            connection=connection,
            runs=selectors.run_list(connection=connection)[:25],
            reconciliation=days,
            next_sync=services.next_nightly(connection) if connection.is_active else None,
            **kwargs,
        )

    def post(self, request, *args, **kwargs):
        self.require_manage()
        connection = self.org_object_or_404(ProviderConnection, pk=kwargs["pk"])
        action = request.POST.get("action")
        if action == "sync":
            if _start_run(request, connection, kind=SyncRun.MANUAL):
                messages.success(request, "Sync started.")
        elif action == "backfill":
            form = BackfillForm(request.POST)
            if not form.is_valid():
                return self.render_to_response(self.get_context_data(backfill_form=form), status=400)
            if _start_run(
                request,
                connection,
                kind=SyncRun.BACKFILL,
                start=form.cleaned_data["start"],
                end=form.cleaned_data["end"],
            ):
                messages.success(request, "Backfill started; it runs in chunks and shows its progress below.")
        elif action == "key":
            form = ReplaceKeyForm(request.POST)
            if not form.is_valid() or not apply_to_form(
                form,
                lambda: services.connection_update(
                    connection=connection, api_key=form.cleaned_data["api_key"]
                ),
            ):
                return self.render_to_response(self.get_context_data(key_form=form), status=400)
            messages.success(request, "New key saved. The connection's history is kept.")
        elif action in ("pause", "resume"):
            services.connection_update(connection=connection, is_active=action == "resume")
            messages.success(
                request, "Nightly sync paused." if action == "pause" else "Nightly sync resumed."
            )
        elif action == "delete":
            services.connection_delete(connection=connection)
            messages.success(
                request, f"{connection.label} removed. Usage already recorded stays in the ledger."
            )
            return redirect("connectors", org_slug=request.org.slug)
        return redirect("connector", org_slug=request.org.slug, pk=connection.pk)
