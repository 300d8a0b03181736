from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from apps.orgs.tenancy import OrgOwnedModel
from spendctl.common.models import TimestampedModel


def default_thresholds():
    return [50, 80, 100]


class Budget(OrgOwnedModel, TimestampedModel):
    """A spending limit for a scope over a period. Soft thresholds raise alerts; an optional hard cap denies checks."""

    SCOPE_ORG, SCOPE_TEAM, SCOPE_PROVIDER, SCOPE_MODEL, SCOPE_TAG, SCOPE_TOKEN = (
        "org",
        "team",
        "provider",
        "model",
        "tag",
        "token",
    )
    SCOPES = [
        (SCOPE_ORG, "Whole organisation"),
        (SCOPE_TEAM, "Team"),
        (SCOPE_PROVIDER, "Provider"),
        (SCOPE_MODEL, "Model"),
        (SCOPE_TAG, "Tag value (feature, customer, …)"),
        (SCOPE_TOKEN, "API token"),
    ]
    MONTHLY, QUARTERLY, YEARLY, CUSTOM = "monthly", "quarterly", "yearly", "custom"
    PERIODS = [(MONTHLY, "Monthly"), (QUARTERLY, "Quarterly"), (YEARLY, "Yearly"), (CUSTOM, "Custom range")]

    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=10, choices=SCOPES, default=SCOPE_ORG)
    team = models.ForeignKey(
        "orgs.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    token = models.ForeignKey(
        "orgs.ApiToken", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    provider = models.CharField(max_length=64, blank=True, default="")
    model = models.CharField(max_length=128, blank=True, default="")
    tag_key = models.CharField(max_length=64, blank=True, default="")
    tag_value = models.CharField(max_length=128, blank=True, default="")
    period = models.CharField(max_length=10, choices=PERIODS, default=MONTHLY)
    custom_start = models.DateField(null=True, blank=True)
    custom_end = models.DateField(null=True, blank=True, help_text="exclusive")
    amount = models.DecimalField(max_digits=18, decimal_places=2, validators=[MinValueValidator(0)])
    currency = models.CharField(max_length=3, default="USD")
    thresholds = models.JSONField(
        default=default_thresholds, help_text="Soft thresholds, percent of the amount"
    )
    hard_cap = models.DecimalField(
        max_digits=18,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Checks that would take spend above this are denied",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="budget_amount_positive"),
            models.CheckConstraint(
                condition=Q(hard_cap__isnull=True) | Q(hard_cap__gt=0), name="budget_cap_positive"
            ),
        ]

    def __str__(self):
        return self.name


class Alert(OrgOwnedModel):
    """Raised once: per budget, threshold and period (threshold/forecast), or per series and day (anomaly)."""

    THRESHOLD, FORECAST, ANOMALY = "threshold", "forecast", "anomaly"
    KINDS = [(THRESHOLD, "Threshold crossed"), (FORECAST, "Forecast to exceed"), (ANOMALY, "Anomaly")]
    kind = models.CharField(max_length=10, choices=KINDS)
    budget = models.ForeignKey(Budget, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    period_start = models.DateField(null=True, blank=True)
    threshold = models.IntegerField(default=0)
    series = models.CharField(max_length=300, blank=True, default="")
    day = models.DateField(null=True, blank=True)
    title = models.CharField(max_length=200)
    message = models.TextField()
    details = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "kind", "period_start", "threshold"],
                condition=Q(budget__isnull=False),
                name="alert_once_per_budget_threshold",
            ),
            models.UniqueConstraint(
                fields=["org", "kind", "series", "day"],
                condition=Q(kind="anomaly"),
                name="alert_once_per_series_day",
            ),
        ]

    def __str__(self):
        return self.title


class AlertChannel(OrgOwnedModel, TimestampedModel):
    EMAIL, WEBHOOK = "email", "webhook"
    KINDS = [(EMAIL, "E-mail"), (WEBHOOK, "Webhook")]
    kind = models.CharField(max_length=8, choices=KINDS)
    name = models.CharField(max_length=100)
    recipients = models.ManyToManyField("orgs.Membership", blank=True, related_name="+")
    url = models.URLField(max_length=500, blank=True, default="")
    secret_encrypted = models.TextField(blank=True, default="")
    slack_format = models.BooleanField(default=False, help_text="Send a Slack-compatible payload")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["kind", "name"]

    def __str__(self):
        return self.name


class WebhookDelivery(OrgOwnedModel):
    PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
    STATUSES = [(PENDING, "Pending"), (DELIVERED, "Delivered"), (FAILED, "Failed")]
    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    alert = models.ForeignKey(
        Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    is_test = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=STATUSES, default=PENDING)
    attempts = models.IntegerField(default=0)
    last_status_code = models.IntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "alert"],
                condition=Q(alert__isnull=False),
                name="delivery_once_per_channel_alert",
            )
        ]

    def __str__(self):
        return f"{self.channel_id}/{self.alert_id}: {self.status}"
