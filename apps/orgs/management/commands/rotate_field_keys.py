from django.core.management.base import BaseCommand, CommandError
from django.views.decorators.debug import sensitive_variables

from spendctl.common import crypto


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (provider keys, webhook signing secrets) with the first key of "
        "FIELD_ENCRYPTION_KEY. Run it after putting a new key first (FIELD_ENCRYPTION_KEY=new,old), then drop the old."
    )

    @sensitive_variables()
    def handle(self, *args, **options):
        keys = crypto.configured_keys()
        result = crypto.rotate_stored()
        self.stdout.write(
            f"Re-encrypted {result.rotated} stored secret(s) with the first of {len(keys)} configured key(s)."
        )
        if result.failed:
            raise CommandError(
                f"{len(result.failed)} value(s) could not be decrypted with any configured key: "
                + ", ".join(result.failed[:20])
            )
