"""Seal every stored deployment key again with the newest of SEALING_SECRETS (after a rotation)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.sealing import UnsealError
from apps.deployments.services import deployment_keys_reseal


class Command(BaseCommand):
    help = "Re-encrypt the deployments' keys with the first secret of SEALING_SECRETS."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = deployment_keys_reseal()
        except UnsealError as error:
            raise CommandError(f"{error}: keep the old secret in SEALING_SECRETS") from None
        self.stdout.write(f"resealed {count} provider key(s)")
