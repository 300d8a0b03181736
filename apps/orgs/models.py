import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from apps.orgs.permissions import MEMBER, ROLES
from apps.orgs.tenancy import OrgOwnedModel
from spendctl.common.models import TimestampedModel

CURRENCIES = [
    ("USD", "US dollar"),
    ("EUR", "Euro"),
    ("GBP", "Pound sterling"),
    ("CAD", "Canadian dollar"),
    ("AUD", "Australian dollar"),
    ("JPY", "Japanese yen"),
    ("CHF", "Swiss franc"),
]
TIMEZONES = sorted(zoneinfo.available_timezones())


def validate_timezone(value: str):
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"'{value}' is not a known time zone (use an IANA name such as Europe/Paris).")


slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    "Use 1-50 lower-case letters, digits and dashes, not starting or ending with a dash.",
)


class Organization(TimestampedModel):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50, unique=True, validators=[slug_validator])
    currency = models.CharField(max_length=3, choices=CURRENCIES, default="USD")
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    # Bumped when the Redis spend counters may be stale (an increment failed, a re-pricing): new keys get rebuilt.
    counter_epoch = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class Team(OrgOwnedModel, TimestampedModel):
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint("org", models.functions.Lower("name"), name="team_name_unique_per_org")
        ]

    def __str__(self):
        return self.name


class Membership(OrgOwnedModel, TimestampedModel):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=ROLES, default=MEMBER)

    class Meta:
        ordering = ["user__email"]
        constraints = [models.UniqueConstraint(fields=["org", "user"], name="membership_unique_per_org")]

    def __str__(self):
        return f"{self.user} in {self.org_id} as {self.role}"


class ApiTokenQuerySet(models.QuerySet):
    def for_org(self, org):
        return self.filter(org=org) if org is not None else self.none()

    def usable(self):
        now = timezone.now()
        # Not revoked, not expired, and its creator is still an active member of the token's org.
        return self.filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now),
            revoked_at__isnull=True,
            created_by__is_active=True,
            created_by__memberships__org=F("org"),
        )


class ApiToken(OrgOwnedModel, TimestampedModel):
    name = models.CharField(max_length=100)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="tokens")
    # First characters of the token as shown once ("spc_ab12cd34"), so a leaked token can be recognised.
    prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    # A token dies with the person who made it (deleted user -> token gone; deactivated user -> not usable).
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def status(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= timezone.now():
            return "expired"
        return "active"
