"""Where file content lives. A backend stores bytes under a key it chose for a file, streams
them back in pieces, and deletes them; the StoredFile row (apps.files.models) records which
backend and key, so files stay readable after FILE_STORAGE_BACKEND changes.

Built in: `database` (PostgreSQL, the default: nothing more to run or mount) and `directory`
(FILE_STORAGE_DIR, a volume every web and worker host mounts). Another storage, an object store
say, is one class with these four methods, named in FILE_STORAGE_BACKEND by its dotted path.
"""

import uuid
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string


class FileBackend(Protocol):
    # Recorded on each file: the name FILE_STORAGE_BACKEND gives this backend.
    name: str
    # True when writes and deletes join the caller's database transaction (a failed store leaves
    # nothing behind); otherwise content whose row never committed is an orphan that
    # `manage.py files_purge` removes.
    transactional: bool

    def key_for(self, file_id: uuid.UUID) -> str:
        """The key the content of a new file is stored under."""
        ...

    def write(self, key: str, chunks: Iterable[bytes]) -> None:
        """Store the chunks under `key`, reading them one at a time. On an exception (the
        chunks' own included: a file found too large halfway) nothing is left under `key`."""
        ...

    def read(self, key: str) -> Iterator[bytes]:
        """The content, a piece at a time (nothing when the key holds nothing)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the content; a key that holds nothing is not an error."""
        ...


BUILT_IN = {
    "database": "apps.files.backends.database.DatabaseBackend",
    "directory": "apps.files.backends.directory.DirectoryBackend",
}


@cache
def backend_named(name: str) -> FileBackend:
    """The backend a file was written with (built-in name or dotted path), made once per process."""
    backend: FileBackend = import_string(BUILT_IN.get(name, name))()
    return backend


def backend_default() -> FileBackend:
    """Where new files go: FILE_STORAGE_BACKEND."""
    return backend_named(settings.FILE_STORAGE_BACKEND)
