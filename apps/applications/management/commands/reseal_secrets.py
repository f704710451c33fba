"""Seal every stored provider key again with the newest of SEALING_SECRETS (after a rotation)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.applications.services import provider_keys_reseal
from apps.core.sealing import UnsealError


class Command(BaseCommand):
    help = "Re-encrypt the apps' provider keys with the first secret of SEALING_SECRETS."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = provider_keys_reseal()
        except UnsealError as error:
            raise CommandError(f"{error}: keep the old secret in SEALING_SECRETS") from None
        self.stdout.write(f"resealed {count} provider key(s)")
