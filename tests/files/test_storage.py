"""The shared file storage (apps.files): both backends stream content in and out in chunks, keep
nothing of a file past its limit, never show one app's or end user's file to another, and the
purge removes expired files and orphaned content."""

import hashlib
import os
import time
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from apps.files.backends import backend_named
from apps.files.backends.directory import DirectoryBackend
from apps.files.errors import FileContentMissing, FileNotFound, FileTooLarge
from apps.files.models import FilePurpose, StoredFile, StoredFileChunk
from apps.files.selectors import file_get, files_of
from apps.files.services import file_chunks, file_delete, file_store, files_purge
from tests.factories import make_app

pytestmark = pytest.mark.django_db

CHUNK = 64 * 1024


@pytest.fixture(params=["database", "directory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with override_settings(
        FILE_STORAGE_BACKEND=request.param,
        FILE_STORAGE_DIR=str(tmp_path / "files"),
        FILE_STORAGE_CHUNK_BYTES=CHUNK,
    ):
        backend_named.cache_clear()  # the directory backend reads its folder when made
        yield request.param
    backend_named.cache_clear()


def pieces(total: int, size: int = 10_000) -> Iterator[bytes]:
    """`total` bytes of varied content, in pieces of `size` that do not line up with chunks."""
    sent = 0
    pattern = bytes(range(251)) * (size // 251 + 2)
    while sent < total:
        start = sent % 251
        piece = pattern[start : start + min(size, total - sent)]
        sent += len(piece)
        yield piece


def content(total: int) -> bytes:
    return b"".join(pieces(total))


def test_store_and_read_back_in_chunks(backend: str) -> None:
    app = make_app()
    total = 5 * CHUNK + 123
    stored = file_store(
        app=app,
        end_user="u1",
        purpose=FilePurpose.UPLOAD,
        filename="data.bin",
        mime_type="application/octet-stream",
        chunks=pieces(total),
        max_bytes=10 * CHUNK,
    )
    stored.refresh_from_db()
    assert (stored.size, stored.backend) == (total, backend)
    assert stored.sha256 == hashlib.sha256(content(total)).hexdigest()
    read = list(file_chunks(stored))
    assert b"".join(read) == content(total)
    assert max(len(chunk) for chunk in read) <= CHUNK
    if backend == "database":
        assert StoredFileChunk.objects.filter(file=stored).count() == 6


def test_past_the_limit_nothing_is_kept(backend: str, tmp_path: Path) -> None:
    app = make_app()
    with pytest.raises(FileTooLarge):
        file_store(
            app=app,
            end_user="u1",
            purpose=FilePurpose.UPLOAD,
            filename="big.bin",
            mime_type="application/octet-stream",
            chunks=pieces(3 * CHUNK),
            max_bytes=2 * CHUNK,
        )
    assert not StoredFile.objects.exists()
    assert not StoredFileChunk.objects.exists()
    folder = tmp_path / "files"
    assert not folder.exists() or not [path for path in folder.rglob("*") if path.is_file()]


def test_delete_removes_the_content(
    backend: str, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    app = make_app()
    stored = file_store(
        app=app,
        end_user="",
        purpose=FilePurpose.BATCH,
        filename="in.jsonl",
        mime_type="application/jsonl",
        chunks=[b'{"a": 1}\n'],
        max_bytes=1000,
    )
    with django_capture_on_commit_callbacks(execute=True):
        file_delete(file=stored)
    assert not StoredFile.objects.exists()
    assert not StoredFileChunk.objects.exists()
    assert not [path for path in (tmp_path / "files").rglob("*") if path.is_file()]


def test_a_cut_file_is_never_served_whole(backend: str) -> None:
    app = make_app()
    stored = file_store(
        app=app,
        end_user="u1",
        purpose=FilePurpose.UPLOAD,
        filename="a.txt",
        mime_type="text/plain",
        chunks=pieces(3 * CHUNK),
        max_bytes=10 * CHUNK,
    )
    backend_named(stored.backend).delete(stored.storage_key)
    with pytest.raises(FileContentMissing):
        b"".join(file_chunks(stored))


def test_a_large_file_streams_through_a_bounded_memory(backend: str) -> None:
    """16 MiB in and out with 64 KiB chunks: the process never holds more than a few chunks."""
    app = make_app()
    total = 16 * 1024 * 1024
    tracemalloc.start()
    try:
        stored = file_store(
            app=app,
            end_user="",
            purpose=FilePurpose.BATCH,
            filename="big.jsonl",
            mime_type="application/jsonl",
            chunks=pieces(total, size=CHUNK // 3),
            max_bytes=total,
        )
        read = sum(len(chunk) for chunk in file_chunks(stored))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read == total
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes"


def test_file_get_never_shows_another_apps_or_users_file() -> None:
    app, other_app = make_app(), make_app(name="Other")
    mine = file_store(
        app=app,
        end_user="u1",
        purpose=FilePurpose.UPLOAD,
        filename="a.txt",
        mime_type="text/plain",
        chunks=[b"hello"],
        max_bytes=100,
    )
    assert file_get(app_id=app.id, file_id=mine.id, end_user="u1") == mine
    assert file_get(app_id=app.id, file_id=str(mine.id)) == mine  # the app's own view
    strangers: list[tuple[Any, Any, str]] = [
        (other_app.id, mine.id, "u1"),
        (app.id, mine.id, "u2"),
        (app.id, mine.id, ""),
        (app.id, "not-a-uuid", "u1"),
        (app.id, "00000000-0000-0000-0000-000000000000", "u1"),
    ]
    for app_id, file_id, end_user in strangers:
        with pytest.raises(FileNotFound):
            file_get(app_id=app_id, file_id=file_id, end_user=end_user)
    with pytest.raises(FileNotFound):
        file_get(app_id=app.id, file_id=mine.id, purpose=FilePurpose.BATCH)


def test_expired_files_are_gone_and_purged(
    backend: str, django_capture_on_commit_callbacks: Any
) -> None:
    app = make_app()
    expired = file_store(
        app=app,
        end_user="",
        purpose=FilePurpose.BATCH_OUTPUT,
        filename="out.jsonl",
        mime_type="application/jsonl",
        chunks=[b"{}\n"],
        max_bytes=100,
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    kept = file_store(
        app=app,
        end_user="",
        purpose=FilePurpose.BATCH_OUTPUT,
        filename="out2.jsonl",
        mime_type="application/jsonl",
        chunks=[b"{}\n"],
        max_bytes=100,
        expires_at=timezone.now() + timedelta(days=1),
    )
    with pytest.raises(FileNotFound):
        file_get(app_id=app.id, file_id=expired.id)
    assert list(files_of(app_id=app.id, purpose=FilePurpose.BATCH_OUTPUT)) == [kept]
    with django_capture_on_commit_callbacks(execute=True):
        purged = files_purge(now=timezone.now(), orphan_grace_s=3600)
    assert purged.expired == 1
    assert list(StoredFile.objects.all()) == [kept]


def test_purge_removes_orphaned_content_of_the_directory(tmp_path: Path) -> None:
    with override_settings(FILE_STORAGE_BACKEND="directory", FILE_STORAGE_DIR=str(tmp_path)):
        backend_named.cache_clear()
        try:
            app = make_app()
            kept = file_store(
                app=app,
                end_user="u1",
                purpose=FilePurpose.UPLOAD,
                filename="a.txt",
                mime_type="text/plain",
                chunks=[b"kept"],
                max_bytes=100,
            )
            backend = DirectoryBackend(tmp_path)
            orphan = tmp_path / "ab" / "cd" / "orphan"
            orphan.parent.mkdir(parents=True)
            orphan.write_bytes(b"left behind by a crash")
            partial = tmp_path / "ab" / "cd" / ".x.1234.part"
            partial.write_bytes(b"half")
            old = time.time() - 7200
            for path in (orphan, partial, tmp_path / kept.storage_key):
                os.utime(path, (old, old))
            young = tmp_path / "ab" / "cd" / "young"
            young.write_bytes(b"a store in progress")

            purged = files_purge(now=timezone.now(), orphan_grace_s=3600)

            assert purged.orphans == 1
            assert not orphan.exists()
            assert not partial.exists()
            assert young.exists()
            assert b"".join(file_chunks(kept)) == b"kept"
            assert backend.read(kept.storage_key)
        finally:
            backend_named.cache_clear()


def test_directory_keys_cannot_leave_the_folder(tmp_path: Path) -> None:
    backend = DirectoryBackend(tmp_path)
    with pytest.raises(ValueError, match="leaves"):
        backend.delete("../../etc/passwd")
