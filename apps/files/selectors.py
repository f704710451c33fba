"""Reading stored files: always within one app, and within one end user's files when asked."""

import uuid

from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.files.errors import FileNotFound
from apps.files.models import StoredFile


def _live(rows: QuerySet[StoredFile]) -> QuerySet[StoredFile]:
    return rows.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))


def live_files() -> QuerySet[StoredFile]:
    """Every file not expired."""
    return _live(StoredFile.objects.all())


def file_get(
    *,
    app_id: uuid.UUID | str,
    file_id: uuid.UUID | str,
    end_user: str | None = None,
    purpose: str | None = None,
) -> StoredFile:
    """The app's file; with `end_user`, only if it is that end user's ("" names the app's own
    files); with `purpose`, only a file for that purpose. Anything else (another app's or end
    user's file, an expired one, an unknown or malformed id) is the same FileNotFound (404)."""
    try:
        found = uuid.UUID(str(file_id))
    except ValueError:
        raise FileNotFound() from None
    rows = StoredFile.objects.filter(id=found, app_id=app_id)
    if end_user is not None:
        rows = rows.filter(end_user=end_user)
    if purpose is not None:
        rows = rows.filter(purpose=purpose)
    file = _live(rows).first()
    if file is None:
        raise FileNotFound()
    return file


def files_of(
    *, app_id: uuid.UUID | str, purpose: str | None = None, end_user: str | None = None
) -> QuerySet[StoredFile]:
    """The app's live files, newest first (ties by id), narrowed like `file_get`."""
    rows = StoredFile.objects.filter(app_id=app_id)
    if end_user is not None:
        rows = rows.filter(end_user=end_user)
    if purpose is not None:
        rows = rows.filter(purpose=purpose)
    return _live(rows).order_by("-created_at", "-id")
