"""Seeds the API fuzzing database: one org with realistic data, prints an admin token (the last line of stdout).

Run by `.ci/fuzz` after `migrate`, with the same environment as the server it starts. Everything goes through the
services, like the demo: 7 days of demo usage through the real ingest path, budgets of several scopes, price
overrides, an attribution rule, a re-pricing preview, e-mail and webhook channels (the webhook points at a closed
loopback port), an alert, and a sandbox connection with one finished sync run. Prints `<token id> <token>`.
"""

import json
import os
import sys
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spendctl.settings.base")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from apps.budgets import services as budget_services  # noqa: E402
from apps.budgets.models import AlertChannel, Budget  # noqa: E402
from apps.catalog import services as catalog_services  # noqa: E402
from apps.connectors import services as connector_services  # noqa: E402
from apps.connectors.models import SyncRun  # noqa: E402
from apps.orgs import services as org_services  # noqa: E402
from apps.orgs.models import ApiToken, Membership, Organization, Team  # noqa: E402
from apps.orgs.permissions import FINANCE, SCOPE_CHECK, SCOPE_INGEST, SCOPE_READ  # noqa: E402
from apps.usage import services as usage_services  # noqa: E402
from apps.usage.demo import load_demo_usage  # noqa: E402


def main() -> None:
    from io import StringIO

    out = StringIO()
    call_command("createorg", "Fuzz Corp", "--owner", "owner@fuzz.test", "--slug", "fuzz", stdout=out)
    created = json.loads(out.getvalue())
    org = Organization.objects.get(slug="fuzz")
    owner = Membership.objects.get(org=org, user__email="owner@fuzz.test")
    loaded = load_demo_usage(org, days=7)
    teams = {team.name: team for team in Team.objects.for_org(org)}
    finance = org_services.membership_invite(
        org=org, email="finance@fuzz.test", role=FINANCE, invited_by=owner.user
    )
    token, _ = org_services.api_token_create(
        org=org, name="ingest+check", scopes=[SCOPE_READ, SCOPE_INGEST, SCOPE_CHECK], created_by=owner.user
    )
    org_services.api_token_create(
        org=org,
        name="support team",
        scopes=[SCOPE_READ, SCOPE_CHECK],
        team=teams["Support"],
        created_by=owner.user,
    )
    budget_services.budget_create(org=org, name="Company", amount=Decimal("5000"))
    budget_services.budget_create(
        org=org,
        name="Support",
        scope=Budget.SCOPE_TEAM,
        team=teams["Support"],
        amount=Decimal("800"),
        hard_cap=Decimal("1000"),
    )
    budget_services.budget_create(
        org=org,
        name="GPT-4.1",
        scope=Budget.SCOPE_MODEL,
        provider="openai",
        model="gpt-4.1",
        amount=Decimal("1"),
    )
    budget_services.budget_create(
        org=org,
        name="Copilot",
        scope=Budget.SCOPE_TAG,
        tag_key="feature",
        tag_value="support-copilot",
        amount=Decimal("300"),
    )
    budget_services.budget_create(
        org=org, name="Ingest token", scope=Budget.SCOPE_TOKEN, token=token, amount=10
    )
    today = timezone.now().date()
    budget_services.budget_create(
        org=org,
        name="Launch week",
        period=Budget.CUSTOM,
        custom_start=today - timedelta(days=3),
        custom_end=today + timedelta(days=4),
        amount=Decimal("250"),
    )
    alerts = budget_services.budgets_evaluate(org=org)
    budget_services.channel_create(
        org=org, kind=AlertChannel.EMAIL, name="Finance inbox", recipients=[owner, finance]
    )
    budget_services.channel_create(
        org=org, kind=AlertChannel.WEBHOOK, name="Ops hook", url="http://127.0.0.1:9/spendctl"
    )
    catalog_services.override_create(
        org=org, provider="openai", effective_from=date(2026, 1, 1), discount_percent=Decimal("12.5")
    )
    catalog_services.override_create(
        org=org,
        provider="anthropic",
        model="claude-sonnet-4-5",
        effective_from=date(2026, 6, 1),
        input_mtok=Decimal("2.70"),
        output_mtok=Decimal("13.50"),
    )
    usage_services.attribution_rule_create(
        org=org, kind="tag", tag_key="feature", value="search", team=teams["Search"]
    )
    usage_services.reprice_preview(org=org, start=today - timedelta(days=7), end=today, reason="fuzz seed")
    connection = connector_services.connection_create(
        org=org, provider="sandbox", label="Sandbox provider", api_key="sandbox-fuzz-key"
    )
    run = connector_services.run_execute(
        run=connector_services.run_create(
            connection=connection, kind=SyncRun.BACKFILL, start=today - timedelta(days=3), end=today
        )
    )
    print(
        f"seeded org {org.slug}: {loaded['events']} events, {len(alerts)} alerts, "
        f"sandbox run {run.status} ({run.records_added} rows)",
        file=sys.stderr,
    )
    own = ApiToken.objects.get(org=org, prefix=created["token"][:12])
    print(f"{own.pk} {created['token']}")


if __name__ == "__main__":
    main()
