import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.orgs import services
from apps.orgs.permissions import SCOPE_ADMIN


class Command(BaseCommand):
    help = (
        "Create an organisation, its owner (with a printed password if new) and an admin token; prints JSON."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--owner", required=True, help="the owner's e-mail address")
        parser.add_argument("--slug", help="defaults to a slug made from the name")
        parser.add_argument("--currency", default="USD")
        parser.add_argument("--timezone", default="UTC")
        parser.add_argument("--password", help="password for a new owner (default: generated and printed)")

    def handle(self, *args, name, owner, slug, currency, timezone, password, **options):
        try:
            with transaction.atomic():
                user = services.user_get_or_create(email=owner, password=password)
                org = services.org_create(
                    name=name, owner=user.user, slug=slug, currency=currency, timezone_name=timezone
                )
                _, token = services.api_token_create(
                    org=org, name="createorg admin token", scopes=[SCOPE_ADMIN], created_by=user.user
                )
        except ValidationError as exc:
            messages = exc.message_dict if hasattr(exc, "error_dict") else {"error": exc.messages}
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in messages.items())) from exc
        payload = {
            "org": {"id": org.pk, "name": org.name, "slug": org.slug},
            "owner": user.user.email,
            "password": user.password,
            "token": token,
        }
        self.stdout.write(json.dumps(payload))
