"""Reports screens: the archive with recipients, the preview (the e-mail's HTML part as sent), CSV, PDF, resend, and
the public no-login unsubscribe page."""

from csp.decorators import csp_replace
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import TemplateView

from apps.orgs.permissions import role_can
from apps.orgs.tenancy import OrgViewMixin
from apps.reports import rendering, selectors, services
from apps.reports.models import MonthlyReport, ReportDelivery
from apps.reports.pdf import report_pdf
from apps.reports.tasks import deliver_all


class _ReportsMixin(OrgViewMixin):
    def get_context_data(self, **kwargs):
        return super().get_context_data(nav="reports", **kwargs)

    def get_report(self) -> MonthlyReport:
        report = selectors.report_get(org=self.request.org, period=self.kwargs["period"])
        if report is None:
            raise Http404("No report for that month.")
        return report


class ReportListView(_ReportsMixin, TemplateView):
    template_name = "reports/list.html"

    def get_context_data(self, **kwargs):
        org = self.request.org
        services.report_last_month_ensure(org=org)
        reports = list(selectors.report_list(org=org))
        sent = {}
        for report_id, status in ReportDelivery.objects.for_org(org).values_list("report_id", "status"):
            counts = sent.setdefault(report_id, {"sent": 0, "failed": 0, "total": 0})
            counts["total"] += 1
            counts["sent"] += status == ReportDelivery.SENT
            counts["failed"] += status == ReportDelivery.FAILED
        rows = [
            {
                "report": r,
                "label": rendering.month_label(r.month),
                "summary": r.data.get("sections", {}).get("summary", {}),
                "deliveries": sent.get(r.pk, {"sent": 0, "failed": 0, "total": 0}),
            }
            for r in reports
        ]
        choices = selectors.member_choices(org=org)
        mine = next((on for m, on in choices if m.pk == self.request.membership.pk), False)
        conf = selectors.report_settings(org=org)
        return super().get_context_data(
            rows=rows,
            subscribed=mine,
            recipients=selectors.recipients(org=org),
            report_settings=conf,
            extra_text="\n".join(conf.extra_recipients),
            can_resend=role_can(self.request.membership.role, "manage_settings"),
            **kwargs,
        )

    def post(self, request, *args, **kwargs):
        org = request.org
        action = request.POST.get("action")
        if action == "subscribe":
            on = request.POST.get("subscribed") == "1"
            services.subscription_set(membership=request.membership, subscribed=on)
            messages.success(
                request, "You will get the monthly report." if on else "You will not get the monthly report."
            )
            return redirect("reports", org_slug=org.slug)
        if action == "settings":
            if not role_can(request.membership.role, "manage_settings"):
                raise PermissionDenied("Only owners and admins can change who gets the report.")
            try:
                services.settings_update(
                    org=org,
                    enabled=request.POST.get("enabled") == "1",
                    extra_recipients=request.POST.get("extra_recipients", "").replace(",", "\n").splitlines(),
                )
            except ValidationError as exc:
                messages.error(request, " ".join(exc.message_dict.get("extra_recipients", exc.messages)))
                return redirect("reports", org_slug=org.slug)
            messages.success(request, "Report recipients saved.")
            return redirect("reports", org_slug=org.slug)
        return HttpResponse(status=400)


class ReportPreviewView(_ReportsMixin, TemplateView):
    template_name = "reports/preview.html"

    def get_context_data(self, **kwargs):
        report = self.get_report()
        return super().get_context_data(
            report=report,
            label=rendering.month_label(report.month),
            deliveries=list(selectors.delivery_list(report=report)),
            can_resend=role_can(self.request.membership.role, "manage_settings"),
            **kwargs,
        )


# An e-mail's HTML must carry its styles inline (mail clients drop stylesheets), so this one page allows inline
# styles; it runs no script at all, and only this site may frame it (the preview page's sandboxed iframe).
@method_decorator(xframe_options_sameorigin, name="dispatch")
@method_decorator(
    csp_replace({"style-src": ["'unsafe-inline'"], "script-src": ["'none'"], "frame-ancestors": ["'self'"]}),
    name="dispatch",
)
class ReportEmailHtmlView(_ReportsMixin, View):
    """The e-mail's HTML part exactly as sent, with the inline charts as data: URIs instead of cid: references."""

    def get(self, request, *args, **kwargs):
        rendered = rendering.render(self.get_report(), inline="data")
        return HttpResponse(rendered.html, content_type="text/html; charset=utf-8")


class ReportCsvView(_ReportsMixin, View):
    def get(self, request, *args, **kwargs):
        report = self.get_report()
        response = HttpResponse(report.detail_csv, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{rendering.csv_name(report)}"'
        return response


class ReportPdfView(_ReportsMixin, View):
    def get(self, request, *args, **kwargs):
        report = self.get_report()
        response = HttpResponse(report_pdf(report), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="ai-spend-{report.period}.pdf"'
        return response


class ReportResendView(_ReportsMixin, View):
    required_capability = "manage_settings"

    def post(self, request, *args, **kwargs):
        report = self.get_report()
        ids = services.report_resend(report=report)
        deliver_all(report, ids)
        messages.success(
            request, f"Sending the {rendering.month_label(report.month)} report to {len(ids)} recipient(s)."
        )
        return redirect("report", org_slug=request.org.slug, period=report.period)


@method_decorator(
    csrf_exempt, name="dispatch"
)  # the signed token is the credential; mail clients POST one-click
class UnsubscribeView(View):
    def get(self, request, token):
        from django.core import signing

        try:
            payload = signing.loads(token, salt=services.UNSUBSCRIBE_SALT)
        except signing.BadSignature:
            return render(request, "reports/unsubscribe.html", {"invalid": True}, status=400)
        return render(request, "reports/unsubscribe.html", {"email": payload.get("e"), "token": token})

    def post(self, request, token):
        result = services.unsubscribe(token=token)
        if result is None:
            return render(request, "reports/unsubscribe.html", {"invalid": True}, status=400)
        org, email = result
        return render(
            request, "reports/unsubscribe.html", {"done": True, "email": email, "org_name": org.name}
        )
