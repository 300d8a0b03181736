"""Monthly reports: the archived snapshot of what was sent, one delivery row per recipient, and who gets them."""

from django.db import models

from apps.orgs.tenancy import OrgOwnedModel


class MonthlyReport(OrgOwnedModel):
    """One org's report for one calendar month (org-local). `data` is the sections as built, so the archive (preview,
    PDF, CSV, resend) shows exactly what was sent even if the ledger changes later."""

    month = models.DateField(help_text="First day of the month, org-local")
    period = models.CharField(max_length=7, help_text="YYYY-MM, the API's lookup")
    currency = models.CharField(max_length=3, default="USD")
    generated_at = models.DateTimeField()
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="When deliveries were created and queued (the scheduled send)"
    )
    data = models.JSONField(default=dict, help_text="Section key -> the section's data, as built")
    detail_csv = models.TextField(default="", help_text="The attached CSV, as built")

    class Meta:
        ordering = ["-month"]
        constraints = [
            models.UniqueConstraint(fields=["org", "month"], name="report_once_per_org_month"),
            models.UniqueConstraint(fields=["org", "period"], name="report_period_unique"),
        ]

    def __str__(self):
        return f"{self.org_id} {self.period}"


class ReportDelivery(OrgOwnedModel):
    """One report to one address. The unique row is what makes sending once-only: a task must claim it
    (pending/failed -> sending, a conditional UPDATE) before it sends, and a sent row is never claimed again."""

    PENDING, SENDING, SENT, FAILED, SKIPPED = "pending", "sending", "sent", "failed", "skipped"
    STATUSES = [
        (PENDING, "Pending"),
        (SENDING, "Sending"),
        (SENT, "Sent"),
        (FAILED, "Failed"),
        (SKIPPED, "Skipped (unsubscribed)"),
    ]
    report = models.ForeignKey(MonthlyReport, on_delete=models.CASCADE, related_name="deliveries")
    email = models.EmailField()
    status = models.CharField(max_length=8, choices=STATUSES, default=PENDING)
    attempts = models.IntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["email"]
        constraints = [models.UniqueConstraint(fields=["report", "email"], name="report_once_per_recipient")]

    def __str__(self):
        return f"{self.report_id} -> {self.email}: {self.status}"


class ReportSubscription(OrgOwnedModel):
    """A member's choice. Without a row the role decides: owners, admins and finance get the report, members opt in."""

    membership = models.OneToOneField("orgs.Membership", on_delete=models.CASCADE, related_name="+")
    subscribed = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.membership_id}: {self.subscribed}"


class ReportSettings(OrgOwnedModel):
    """Per org: whether monthly reports go out at all, and extra addresses beyond the members."""

    enabled = models.BooleanField(default=True)
    extra_recipients = models.JSONField(default=list, blank=True, help_text="E-mail addresses, lower case")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org"], name="report_settings_one_per_org")]
