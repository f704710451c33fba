"""Housekeeping the scheduler runs for the platform's files (apps.scheduling.housekeeping):
expired files (chat uploads, batch files) are deleted a bounded number at a time, so storage
does not grow with what nobody can read any more, and one round never takes long."""

from django.conf import settings
from django.utils import timezone

from apps.files.services import files_expired_delete
from apps.scheduling.housekeeping.maintenance import housekeeping_register


def expired_files_delete() -> int:
    return files_expired_delete(now=timezone.now(), limit=int(settings.FILE_PURGE_MAX_FILES))


def operations_chores_register() -> None:
    housekeeping_register(
        name="files_expired",
        run=expired_files_delete,
        every_s=float(settings.FILE_PURGE_EVERY_S),
    )
