from datetime import date

from django.core.management.base import BaseCommand, CommandError

from apps.orgs.models import Organization
from apps.usage.services import usage_reattribute


class Command(BaseCommand):
    help = (
        "Re-apply an org's attribution rules to its recorded usage (records not tied to a team explicitly)."
    )

    def add_arguments(self, parser):
        parser.add_argument("org", help="the org's slug")
        parser.add_argument("--start", type=date.fromisoformat, help="first day (YYYY-MM-DD, org time zone)")
        parser.add_argument("--end", type=date.fromisoformat, help="day after the last (exclusive)")

    def handle(self, *args, org, start, end, **options):
        organisation = Organization.objects.filter(slug=org).first()
        if organisation is None:
            raise CommandError(f"No organisation with slug '{org}'.")
        changed = usage_reattribute(org=organisation, start=start, end=end)
        self.stdout.write(f"{changed} record(s) re-attributed in {organisation.name}.")
