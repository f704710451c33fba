"""File content in PostgreSQL: rows of about FILE_STORAGE_CHUNK_BYTES, written in the caller's
transaction (with the file's row), read one row per round trip."""

import uuid
from collections.abc import Iterable, Iterator

from django.conf import settings

from apps.files.chunking import rechunked
from apps.files.models import StoredFileChunk


class DatabaseBackend:
    name = "database"
    transactional = True

    def key_for(self, file_id: uuid.UUID) -> str:
        # The chunks point to their file's row: deleting the row (or its app) deletes them.
        return str(file_id)

    def write(self, key: str, chunks: Iterable[bytes]) -> None:
        for index, chunk in enumerate(rechunked(chunks, settings.FILE_STORAGE_CHUNK_BYTES)):
            StoredFileChunk.objects.create(file_id=uuid.UUID(key), index=index, data=chunk)

    def read(self, key: str) -> Iterator[bytes]:
        # One chunk per query, not a cursor over all of them: a 200 MB file never holds more
        # than one chunk in memory, and each read may run in another thread (async callers).
        index = 0
        while True:
            found = list(
                StoredFileChunk.objects.filter(file_id=uuid.UUID(key), index=index).values_list(
                    "data", flat=True
                )[:1]
            )
            if not found:
                return
            yield bytes(found[0])
            index += 1

    def delete(self, key: str) -> None:
        StoredFileChunk.objects.filter(file_id=uuid.UUID(key)).delete()
