"""How much the clients of an app may keep in storage: files stored at their request (chat
uploads, files fetched by URL for a question, batch input files) count against the app's quota,
and uploads also against their end user's, by number and by bytes (FILE_QUOTA_*). Files the
platform writes itself (batch output) do not count; expired files no longer do.

A store is checked before its content is written (what it brings, as far as it is known) and
again once its row exists: two stores racing for the last room both see each other, and the
one that finds the quota passed is deleted and refused. The quota is never passed once both
have finished.
"""

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Q, Sum

from apps.files.errors import FileQuotaExceeded
from apps.files.models import FilePurpose, StoredFile
from apps.files.selectors import live_files

MB = 1024 * 1024
CLIENT_PURPOSES = (FilePurpose.UPLOAD, FilePurpose.BATCH)


@dataclass(frozen=True)
class Usage:
    files: int
    bytes: int


@dataclass(frozen=True)
class Quota:
    who: str  # for the client: whose quota it is
    max_files: int
    max_bytes: int
    rows: Q

    def usage(self) -> Usage:
        totals = live_files().filter(self.rows).aggregate(files=Count("id"), size=Sum("size"))
        return Usage(files=int(totals["files"] or 0), bytes=int(totals["size"] or 0))

    def check(self, *, adding_files: int, adding_bytes: int) -> None:
        used = self.usage()
        if self.max_files and used.files + adding_files > self.max_files:
            raise FileQuotaExceeded(
                f"{self.who} keeps at most {self.max_files} files: delete some, or wait for "
                "them to expire."
            )
        if self.max_bytes and used.bytes + adding_bytes > self.max_bytes:
            raise FileQuotaExceeded(
                f"{self.who} keeps at most {self.max_bytes} bytes of files ({used.bytes} now): "
                "delete some, or wait for them to expire."
            )


def quotas_for(*, app_id: object, end_user: str, purpose: str) -> list[Quota]:
    """The quotas a file stored for this app, end user and purpose counts against."""
    if purpose not in CLIENT_PURPOSES:
        return []
    quotas = [
        Quota(
            who="This app",
            max_files=int(settings.FILE_QUOTA_APP_FILES),
            max_bytes=int(settings.FILE_QUOTA_APP_MB) * MB,
            rows=Q(app_id=app_id, purpose__in=CLIENT_PURPOSES),
        )
    ]
    if end_user and purpose == FilePurpose.UPLOAD:
        quotas.append(
            Quota(
                who="This end user",
                max_files=int(settings.FILE_QUOTA_END_USER_FILES),
                max_bytes=int(settings.FILE_QUOTA_END_USER_MB) * MB,
                rows=Q(app_id=app_id, end_user=end_user, purpose=FilePurpose.UPLOAD),
            )
        )
    return quotas


def quota_room_check(*, app_id: object, end_user: str, purpose: str, size: int) -> None:
    """Before a store: FileQuotaExceeded if one more file of `size` bytes would not fit."""
    for quota in quotas_for(app_id=app_id, end_user=end_user, purpose=purpose):
        quota.check(adding_files=1, adding_bytes=size)


def quota_kept_check(file: StoredFile) -> None:
    """After a store (the file counted): FileQuotaExceeded if the quota is passed now."""
    for quota in quotas_for(app_id=file.app_id, end_user=file.end_user, purpose=file.purpose):
        quota.check(adding_files=0, adding_bytes=0)
