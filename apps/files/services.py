"""Storing, reading and deleting files. Content streams through in chunks both ways: a 200 MB
file never costs 200 MB of memory.

    stored = file_store(app=app, end_user="", purpose=FilePurpose.BATCH, filename="in.jsonl",
                        mime_type="application/jsonl", chunks=upload.chunks(), max_bytes=limit)
    for chunk in file_chunks(stored): ...            # or `async for` over file_chunks_async
    file_delete(file=stored)
"""

import logging
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator, Generator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.applications.models import App
from apps.core.db import db_sync_to_async
from apps.files.backends import FileBackend, backend_default, backend_named
from apps.files.chunking import Measured
from apps.files.errors import FileContentMissing, FileQuotaExceeded, FileTooLarge
from apps.files.models import StoredFile
from apps.files.quotas import quota_kept_check, quota_room_check

logger = logging.getLogger(__name__)

MAX_FILENAME_CHARS = 255
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


def filename_clean(filename: str) -> str:
    """A name safe to store and to send back in a header: no folders, no control characters,
    at most 255 characters (the extension kept)."""
    name = _UNSAFE_NAME.sub("_", unicodedata.normalize("NFC", filename)).strip().strip(".")
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, extension = name.rpartition(".")
        extension = extension[:16] if dot else ""
        keep = MAX_FILENAME_CHARS - len(extension) - (1 if extension else 0)
        name = f"{(stem if dot else name)[:keep]}{'.' if extension else ''}{extension}"
    return name or "file"


def file_store(
    *,
    app: App,
    end_user: str,
    purpose: str,
    filename: str,
    mime_type: str,
    chunks: Iterable[bytes],
    max_bytes: int,
    expires_at: datetime | None = None,
    size_hint: int = 0,
) -> StoredFile:
    """Store a new file from `chunks` (read one at a time) in the default backend.

    Raises FileTooLarge (413 `file_too_large`) as soon as more than `max_bytes` came: nothing of
    the file is kept. `end_user` "" makes it the app's own file (batch input and output). A file
    stored for a client counts against the quotas (apps.files.quotas): FileQuotaExceeded (403)
    before anything is written when `size_hint` bytes more would not fit, or after, when a store
    racing this one took the room (this file is then deleted)."""
    quota_room_check(app_id=app.id, end_user=end_user, purpose=purpose, size=size_hint)
    stored = _store(
        app=app,
        end_user=end_user,
        purpose=purpose,
        filename=filename,
        mime_type=mime_type,
        chunks=chunks,
        max_bytes=max_bytes,
        expires_at=expires_at,
    )
    try:
        quota_kept_check(stored)
    except FileQuotaExceeded:
        file_delete(file=stored)
        raise
    return stored


def _store(
    *,
    app: App,
    end_user: str,
    purpose: str,
    filename: str,
    mime_type: str,
    chunks: Iterable[bytes],
    max_bytes: int,
    expires_at: datetime | None,
) -> StoredFile:
    backend = backend_default()
    file_id = uuid.uuid4()
    row = StoredFile(
        id=file_id,
        app=app,
        end_user=end_user,
        purpose=purpose,
        filename=filename_clean(filename),
        mime_type=mime_type[:127],
        backend=backend.name,
        storage_key=backend.key_for(file_id),
        expires_at=expires_at,
    )
    measured = Measured(chunks, max_bytes)
    if backend.transactional:
        with transaction.atomic():
            row.save(force_insert=True)
            backend.write(row.storage_key, measured)
            row.size, row.sha256 = measured.size, measured.sha256
            row.save(update_fields=["size", "sha256"])
        return row
    # The content first, outside any transaction (a long write holds no database connection in
    # a transaction), then the row; content whose row never commits is removed here, or by the
    # orphan sweep if the process dies first.
    backend.write(row.storage_key, measured)
    row.size, row.sha256 = measured.size, measured.sha256
    try:
        row.save(force_insert=True)
    except BaseException:
        backend.delete(row.storage_key)
        raise
    return row


def upload_expiry() -> datetime | None:
    """When a chat upload stored now expires (FILE_UPLOAD_EXPIRE_S; None: never)."""
    seconds = int(settings.FILE_UPLOAD_EXPIRE_S)
    return timezone.now() + timedelta(seconds=seconds) if seconds > 0 else None


def file_chunks(file: StoredFile) -> Generator[bytes, None, None]:
    """The file's content, a chunk at a time. Raises FileContentMissing at the end if the
    storage held less than the file's size (the file was deleted while being read): a reader
    never takes a cut file for a whole one."""
    served = 0
    for chunk in backend_named(file.backend).read(file.storage_key):
        served += len(chunk)
        yield chunk
    if served != file.size:
        raise FileContentMissing(
            f"file {file.id}: the storage held {served} of its {file.size} bytes"
        )


async def file_chunks_async(file: StoredFile) -> AsyncIterator[bytes]:
    """`file_chunks` for async code (a streamed HTTP response): each chunk is read in a database
    thread, so the event loop never waits on storage; a reader that stops early (a client gone)
    lets go of what the storage held for it."""
    chunks = file_chunks(file)
    read = db_sync_to_async(next)
    try:
        while (chunk := await read(chunks, None)) is not None:
            yield chunk
    finally:
        await db_sync_to_async(chunks.close)()


def file_bytes(file: StoredFile, *, max_bytes: int) -> bytes:
    """The whole content, for the few callers that need it at once (an image for a model);
    FileTooLarge when the file is larger than `max_bytes`."""
    if file.size > max_bytes:
        raise FileTooLarge(f"{file.filename} is {file.size} bytes; at most {max_bytes} here.")
    return b"".join(file_chunks(file))


def _content_delete(backend: FileBackend, key: str) -> None:
    try:
        backend.delete(key)
    except OSError:
        # The row is gone; the content is an orphan the sweep removes later.
        logger.warning("stored file content not deleted", extra={"storage_key": key})


@transaction.atomic
def file_delete(*, file: StoredFile) -> None:
    """Delete the file and its content. Content outside the database goes once the row's
    deletion is committed (a rolled-back delete leaves the file whole)."""
    backend = backend_named(file.backend)
    StoredFile.objects.filter(id=file.id).delete()
    if backend.transactional:
        backend.delete(file.storage_key)
    else:
        key = file.storage_key
        transaction.on_commit(lambda: _content_delete(backend, key))


@dataclass(frozen=True)
class Purged:
    expired: int
    orphans: int


def files_expired_delete(*, now: datetime, limit: int | None = None, batch: int = 500) -> int:
    """Delete files past their `expires_at` (at most `limit`); returns how many."""
    expired = 0
    while limit is None or expired < limit:
        size = batch if limit is None else min(batch, limit - expired)
        ids = list(StoredFile.objects.filter(expires_at__lte=now).values_list("id")[:size])
        if not ids:
            break
        for file in StoredFile.objects.filter(id__in=[found for (found,) in ids]):
            file_delete(file=file)
            expired += 1
    return expired


def files_purge(*, now: datetime, orphan_grace_s: float, batch: int = 500) -> Purged:
    """Delete files past their `expires_at`, and content no row points to any more (a store
    that crashed before its row committed, files deleted with their app) once it is older than
    `orphan_grace_s` (a store still in progress is younger)."""
    expired = files_expired_delete(now=now, batch=batch)
    orphans = 0
    names = {backend_default().name, *StoredFile.objects.values_list("backend", flat=True)}
    for name in sorted(names):
        backend = backend_named(name)
        listing = getattr(backend, "stored_keys", None)
        if backend.transactional or listing is None:
            continue  # nothing can outlive its row there
        keys: list[str] = []
        for key in listing(older_than_s=orphan_grace_s):
            keys.append(key)
            if len(keys) >= batch:
                orphans += _orphans_delete(backend, keys)
                keys = []
        orphans += _orphans_delete(backend, keys)
    return Purged(expired=expired, orphans=orphans)


def _orphans_delete(backend: FileBackend, keys: list[str]) -> int:
    known = set(
        StoredFile.objects.filter(backend=backend.name, storage_key__in=keys).values_list(
            "storage_key", flat=True
        )
    )
    orphans = [key for key in keys if key not in known]
    for key in orphans:
        _content_delete(backend, key)
    return len(orphans)
