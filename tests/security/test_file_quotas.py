"""Stored files cannot grow without bound: an app's clients (and each end user, for uploads) keep
at most FILE_QUOTA_* files and bytes, refused with 403 `file_quota_exceeded` past it (racing
stores included); chat uploads and batch files expire, and the housekeeping deletes expired
files a bounded number at a time."""

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from apps.files.errors import FileQuotaExceeded
from apps.files.models import FilePurpose, StoredFile
from apps.files.services import file_store
from apps.operations.chores import expired_files_delete
from tests.factories import make_app, make_app_with_key
from tests.files.samples import png

IMAGE = png(2, 2)


def upload(client: Client, key: str, user: str, content: bytes = IMAGE) -> Any:
    return client.post(
        "/v1/files/upload",
        data={"user": user, "file": _named(content)},
        headers={"Authorization": f"Bearer {key}"},
    )


def _named(content: bytes) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("cat.png", content, content_type="image/png")


def batch_upload(client: Client, key: str) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    lines = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
    return client.post(
        "/v1/files",
        data={"purpose": "batch", "file": SimpleUploadedFile("in.jsonl", lines)},
        headers={"Authorization": f"Bearer {key}"},
    )


@pytest.mark.django_db
@override_settings(FILE_QUOTA_END_USER_FILES=3, FILE_QUOTA_APP_FILES=5)
def test_uploads_past_the_end_users_and_the_apps_quota_are_refused(client: Client) -> None:
    _, key = make_app_with_key(file_upload_enabled=True)
    assert [upload(client, key, "alice").status_code for _ in range(3)] == [201, 201, 201]
    refused = upload(client, key, "alice")
    assert refused.status_code == 403
    assert refused.json()["code"] == "file_quota_exceeded"
    assert "at most 3 files" in refused.json()["message"]
    # Another end user has room of their own, until the app's is used up.
    assert [upload(client, key, "bob").status_code for _ in range(3)] == [201, 201, 403]
    assert "This app" in upload(client, key, "carol").json()["message"]
    # Batch input counts against the app's quota too (in OpenAI's envelope there).
    refused_batch = batch_upload(client, key)
    assert refused_batch.status_code == 403
    assert refused_batch.json()["error"]["code"] == "file_quota_exceeded"
    assert StoredFile.objects.count() == 5


@pytest.mark.django_db
@override_settings(FILE_QUOTA_END_USER_MB=1)
def test_bytes_count_too(client: Client) -> None:
    _, key = make_app_with_key(file_upload_enabled=True)
    big = IMAGE + b"\0" * (600 * 1024)
    assert upload(client, key, "alice", big).status_code == 201
    refused = upload(client, key, "alice", big)
    assert refused.status_code == 403
    assert "bytes" in refused.json()["message"]


@pytest.mark.django_db(transaction=True)
@override_settings(FILE_QUOTA_END_USER_FILES=1)
def test_stores_racing_for_the_last_room_never_pass_the_quota() -> None:
    """Both stores pass the check made before writing (each waits for the other there); once both
    have written, at most one is kept and the other is refused."""
    app = make_app()
    both_checked = threading.Barrier(2, timeout=10)
    outcomes: list[str] = []

    def chunks() -> Any:
        both_checked.wait()
        yield IMAGE

    def store() -> None:
        try:
            file_store(
                app=app,
                end_user="alice",
                purpose=FilePurpose.UPLOAD,
                filename="cat.png",
                mime_type="image/png",
                chunks=chunks(),
                max_bytes=1_000_000,
            )
            outcomes.append("kept")
        except FileQuotaExceeded:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=store) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) in (["kept", "refused"], ["refused", "refused"])
    assert StoredFile.objects.filter(end_user="alice").count() == outcomes.count("kept")


@pytest.mark.django_db
def test_uploads_and_batch_files_expire(client: Client) -> None:
    _, key = make_app_with_key(file_upload_enabled=True)
    before = timezone.now()
    assert upload(client, key, "alice").status_code == 201
    assert batch_upload(client, key).status_code == 200
    chat = StoredFile.objects.get(purpose=FilePurpose.UPLOAD)
    batch = StoredFile.objects.get(purpose=FilePurpose.BATCH)
    assert chat.expires_at is not None
    assert batch.expires_at is not None
    assert chat.expires_at >= before + timedelta(days=29)
    assert batch.expires_at >= before + timedelta(days=29)


@pytest.mark.django_db
@override_settings(FILE_PURGE_MAX_FILES=3)
def test_the_housekeeping_deletes_expired_files_a_bounded_number_a_round() -> None:
    app = make_app()
    for _ in range(5):
        file_store(
            app=app,
            end_user="alice",
            purpose=FilePurpose.UPLOAD,
            filename="cat.png",
            mime_type="image/png",
            chunks=[IMAGE],
            max_bytes=1_000_000,
            expires_at=timezone.now() - timedelta(seconds=1),
        )
    assert expired_files_delete() == 3
    assert expired_files_delete() == 2
    assert StoredFile.objects.count() == 0
