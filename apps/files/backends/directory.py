"""File content in a directory (FILE_STORAGE_DIR): for a volume every web and worker host mounts
(NFS, a cluster file system). A file is written beside its final name and renamed into place
once complete and flushed, so a reader never sees half a file."""

import os
import secrets
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from django.conf import settings

PARTIAL_SUFFIX = ".part"


class DirectoryBackend:
    name = "directory"
    transactional = False

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root or settings.FILE_STORAGE_DIR).resolve()

    def key_for(self, file_id: uuid.UUID) -> str:
        # Two levels of 256 folders: no folder grows past a few thousand entries.
        digits = file_id.hex
        return f"{digits[:2]}/{digits[2:4]}/{file_id}"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"storage key {key!r} leaves the storage directory")
        return path

    def write(self, key: str, chunks: Iterable[bytes]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
        try:
            with open(partial, "xb") as out:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        _fsync_directory(path.parent)

    def read(self, key: str) -> Iterator[bytes]:
        try:
            stream = open(self._path(key), "rb")  # noqa: SIM115  # closed below, when exhausted
        except FileNotFoundError:
            return
        with stream:
            while chunk := stream.read(settings.FILE_STORAGE_CHUNK_BYTES):
                yield chunk

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def stored_keys(self, *, older_than_s: float) -> Iterator[str]:
        """Keys of content written more than `older_than_s` ago (for the orphan sweep); partial
        writes that old are abandoned (their writer crashed) and are removed on the way."""
        limit = time.time() - older_than_s
        for folder, _, names in os.walk(self.root):
            for name in names:
                path = Path(folder) / name
                try:
                    if path.stat().st_mtime > limit:
                        continue
                except FileNotFoundError:
                    continue
                if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
                    path.unlink(missing_ok=True)
                    continue
                yield path.relative_to(self.root).as_posix()


def _fsync_directory(folder: Path) -> None:
    """The rename itself is durable only once the folder is flushed."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
