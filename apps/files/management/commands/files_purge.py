"""Delete expired files and content no file points to any more (run it from cron)."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from apps.files.services import files_purge


class Command(BaseCommand):
    help = "Delete files past their expiry, and orphaned content older than FILE_ORPHAN_GRACE_S."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--orphan-grace-s",
            type=float,
            default=settings.FILE_ORPHAN_GRACE_S,
            help="Content younger than this is never taken for an orphan (a store in progress).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        purged = files_purge(now=timezone.now(), orphan_grace_s=options["orphan_grace_s"])
        self.stdout.write(f"{purged.expired} expired files deleted, {purged.orphans} orphans.")
