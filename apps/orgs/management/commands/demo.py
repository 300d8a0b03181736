from django.core.management.base import BaseCommand
from django.db import transaction

from apps.connectors import services as connector_services
from apps.connectors.models import ProviderConnection, SyncRun
from apps.orgs import services
from apps.orgs.models import Membership, Organization
from apps.orgs.permissions import FINANCE, OWNER
from apps.reports import services as report_services
from apps.usage.dashboard import has_usage
from apps.usage.demo import load_demo_usage

DEMO_EMAIL = "demo@acme.test"
DEMO_PASSWORD = "spendctl-demo"  # noqa: S105 - a demo credential, printed on purpose
TEAMS = [
    ("Support", "Support copilot and ticket triage"),
    ("Search", "Semantic search and embeddings"),
    ("Growth", "Marketing copy and lead enrichment"),
    ("Platform", "Shared AI platform and evaluations"),
]


class Command(BaseCommand):
    help = "Create (or refresh) the demo organisation 'acme' and its demo user; prints how to log in."

    @transaction.atomic
    def handle(self, *args, **options):
        user = services.user_get_or_create(email=DEMO_EMAIL, password=DEMO_PASSWORD).user
        user.set_password(DEMO_PASSWORD)
        user.first_name, user.last_name = "Dana", "Demo"
        user.save()
        org = Organization.objects.filter(slug="acme").first()
        if org is None:
            org = services.org_create(
                name="Acme Corp", slug="acme", owner=user, timezone_name="Europe/London"
            )
            for name, description in TEAMS:
                services.team_create(org=org, name=name, description=description)
        Membership.objects.update_or_create(org=org, user=user, defaults={"role": OWNER})
        other = Organization.objects.filter(slug="globex").first()
        if other is None:
            founder = services.user_get_or_create(email="founder@globex.test").user
            other = services.org_create(
                name="Globex", slug="globex", owner=founder, timezone_name="America/New_York"
            )
        Membership.objects.update_or_create(org=other, user=user, defaults={"role": FINANCE})
        if has_usage(org=org):
            self.stdout.write("Demo usage: already loaded, left as it is.")
        else:
            loaded = load_demo_usage(org)
            self.stdout.write(f"Demo usage: loaded {loaded['events']} events over {loaded['days']} days.")
        report = report_services.report_last_month_ensure(org=org)
        if report is not None:
            self.stdout.write(f"Monthly report: {report.period} ready to preview under Reports.")
        if not ProviderConnection.objects.for_org(other).exists():
            # Globex pulls its usage from the sandbox provider: the connectors page shows real runs, no keys needed.
            connection = connector_services.connection_create(
                org=other, provider="sandbox", label="Sandbox provider", api_key="sandbox-demo-key"
            )
            run = connector_services.run_execute(
                run=connector_services.run_create(connection=connection, kind=SyncRun.BACKFILL)
            )
            self.stdout.write(f"Globex: sandbox connection synced {run.records_added} provider rows.")
        self.stdout.write(
            self.style.SUCCESS("Demo ready: http://127.0.0.1:8000/  log in as ")
            + f"{DEMO_EMAIL} / {DEMO_PASSWORD}"
        )
