"""Shared factories. Related rows always share one org."""

import factory
from django.contrib.auth import get_user_model

from apps.orgs import services
from apps.orgs.models import Membership, Organization, Team
from apps.orgs.permissions import MEMBER


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    username = factory.SelfAttribute("email")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")
    currency = "USD"
    timezone = "UTC"


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    org = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Team {n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    org = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = MEMBER


def make_token(*, org, scopes=("admin",), team=None, user=None, **kwargs):
    """A real token through the service; returns (row, plaintext). The creator is made a member if needed."""
    if user is None:
        user = MembershipFactory(org=org, role="admin").user
    elif not Membership.objects.filter(org=org, user=user).exists():
        MembershipFactory(org=org, user=user, role="admin")
    return services.api_token_create(
        org=org, name="test token", scopes=list(scopes), team=team, created_by=user, **kwargs
    )


# Every org-owned model reachable through the API needs an entry here: the tenancy audit creates one row of each
# in a "secret" org and proves no other org's token can see or touch it. A model missing here fails that test.
SECRET = "ALPHA-SECRET"


def _secret_membership(org):
    return MembershipFactory(org=org, role="member", user__email=f"{SECRET.lower()}-member@example.test")


def _secret_token(org):
    token, _ = make_token(
        org=org, scopes=["read"], user=UserFactory(email=f"{SECRET.lower()}-admin@example.test")
    )
    token.name = f"{SECRET} token"
    token.save()
    return token


ORG_OWNED_FACTORIES = {
    Team: lambda org: TeamFactory(org=org, name=f"{SECRET} team", description=f"{SECRET} description"),
    Membership: _secret_membership,
}


def secret_usage_record(org):
    from datetime import UTC, datetime

    from apps.usage.services import usage_events_ingest

    usage_events_ingest(
        org=org,
        events=[
            {
                "id": f"{SECRET}-event",
                "timestamp": datetime.now(UTC).isoformat(),
                "provider": "openai",
                "model": "gpt-4o-mini",
                "input_tokens": 10,
                "output_tokens": 5,
                "tags": {"feature": f"{SECRET} feature"},
            }
        ],
    )
    from apps.usage.models import UsageRecord

    return UsageRecord.objects.get(org=org, key=f"{SECRET}-event")


def _secret_rule(org):
    from apps.usage.models import AttributionRule

    team = Team.objects.filter(org=org).first() or TeamFactory(org=org, name=f"{SECRET} rule team")
    return AttributionRule.objects.create(
        org=org, kind="tag", tag_key="feature", value=f"{SECRET} value", team=team
    )


def _secret_reprice(org):
    from datetime import date

    from apps.usage.models import RepriceRun

    return RepriceRun.objects.create(
        org=org, start=date(2026, 1, 1), end=date(2026, 2, 1), reason=f"{SECRET} reason"
    )


def _secret_override(org):
    from datetime import date

    from apps.catalog.models import PriceOverride

    return PriceOverride.objects.create(
        org=org,
        provider="openai",
        model="gpt-4o",
        discount_percent=10,
        effective_from=date(2026, 1, 1),
        note=f"{SECRET} note",
    )


def _secret_connection(org):
    from apps.connectors.services import connection_create

    return connection_create(org=org, provider="sandbox", label=f"{SECRET} connection", api_key="sandbox-key")


def _secret_budget(org):
    from decimal import Decimal

    from apps.budgets.services import budget_create

    return budget_create(org=org, name=f"{SECRET} budget", amount=Decimal("100"))


def _secret_alert(org):
    from apps.budgets.models import Alert

    return Alert.objects.create(
        org=org, kind="anomaly", series=f"{SECRET}", title=f"{SECRET} alert", message="m"
    )


def _secret_channel(org):
    from apps.budgets.services import channel_create

    return channel_create(org=org, kind="webhook", name=f"{SECRET} channel", url="https://example.test/hook")[
        0
    ]


def _secret_audit_event(org):
    from apps.audit import services as audit
    from apps.audit.context import SYSTEM

    return audit.record(
        org=org,
        action="budget.updated",
        target_type="budget",
        target_label=f"{SECRET} budget",
        changes={"name": [f"{SECRET} old", f"{SECRET} new"]},
        actor=SYSTEM,
    )


def _secret_report(org):
    from datetime import UTC, date, datetime

    from apps.reports.models import MonthlyReport

    return MonthlyReport.objects.create(
        org=org,
        month=date(2026, 1, 1),
        period="2026-01",
        generated_at=datetime(2026, 2, 1, tzinfo=UTC),
        data={"org_name": SECRET, "order": [], "sections": {"summary": {"current": "1", "note": SECRET}}},
        detail_csv=f"day,team\n2026-01-01,{SECRET}\n",
    )


def _register_late_factories():
    from apps.audit.models import AuditEvent
    from apps.budgets.models import Alert, AlertChannel, Budget
    from apps.catalog.models import PriceOverride
    from apps.connectors.models import ProviderConnection
    from apps.orgs.models import ApiToken
    from apps.reports.models import MonthlyReport
    from apps.usage.models import AttributionRule, RepriceRun, UsageRecord

    ORG_OWNED_FACTORIES[ApiToken] = _secret_token
    ORG_OWNED_FACTORIES[UsageRecord] = secret_usage_record
    ORG_OWNED_FACTORIES[AttributionRule] = _secret_rule
    ORG_OWNED_FACTORIES[RepriceRun] = _secret_reprice
    ORG_OWNED_FACTORIES[PriceOverride] = _secret_override
    ORG_OWNED_FACTORIES[ProviderConnection] = _secret_connection
    ORG_OWNED_FACTORIES[Budget] = _secret_budget
    ORG_OWNED_FACTORIES[Alert] = _secret_alert
    ORG_OWNED_FACTORIES[AlertChannel] = _secret_channel
    ORG_OWNED_FACTORIES[AuditEvent] = _secret_audit_event
    ORG_OWNED_FACTORIES[MonthlyReport] = _secret_report


_register_late_factories()
