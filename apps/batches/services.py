"""Creating, cancelling and retrying batches; batch files in and out."""

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.applications.models import App
from apps.batches.expansion import ENDPOINT
from apps.batches.models import Batch, BatchStatus
from apps.core.errors import ApiError, InvalidParam, NotFound
from apps.core.priorities import Priority
from apps.files.models import FilePurpose, StoredFile
from apps.files.selectors import file_get
from apps.files.services import file_store
from apps.scheduling.models import Task, TaskEvent, TaskStatus
from apps.scheduling.tasks.services import task_cancel, task_create

EXPAND_KIND = "batch_expand"
WINDOWS = {"24h": timedelta(hours=24)}
MAX_METADATA_PAIRS = 16


class BatchParamError(InvalidParam):
    """An invalid batch request, naming its parameter (OpenAI's `param`)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class BatchNotFound(NotFound):
    default_message = "No such batch."


class TooManyOpenBatches(ApiError):
    """The app has as many batches open as it may (BATCHES["MAX_OPEN_PER_APP"])."""

    status = 429
    code = "too_many_open_batches"
    default_message = "This app has too many batches open."


def batch_file_expiry() -> datetime | None:
    """When a batch file (input, output or errors) written now expires (None: never)."""
    seconds = int(settings.BATCHES["FILE_EXPIRE_S"])
    return timezone.now() + timedelta(seconds=seconds) if seconds > 0 else None


def batch_file_store(
    *, app: App, filename: str, chunks: Iterable[bytes], size_hint: int = 0
) -> StoredFile:
    """A batch's input file (OpenAI's purpose=batch), up to BATCHES["MAX_FILE_MB"], within the
    app's file quota (apps.files.quotas)."""
    return file_store(
        app=app,
        end_user="",
        purpose=FilePurpose.BATCH,
        filename=filename,
        mime_type="application/jsonl",
        chunks=chunks,
        max_bytes=int(settings.BATCHES["MAX_FILE_MB"]) * 1024 * 1024,
        expires_at=batch_file_expiry(),
        size_hint=size_hint,
    )


def _metadata(metadata: Any) -> dict[str, str]:
    if metadata is None:
        return {}
    if (
        not isinstance(metadata, dict)
        or len(metadata) > MAX_METADATA_PAIRS
        or not all(
            isinstance(key, str) and len(key) <= 64 and isinstance(value, str) and len(value) <= 512
            for key, value in metadata.items()
        )
    ):
        raise BatchParamError(
            f"metadata must be up to {MAX_METADATA_PAIRS} pairs of strings (keys of at most 64 "
            "characters, values of at most 512).",
            "metadata",
        )
    return dict(metadata)


@transaction.atomic
def batch_create(
    *,
    app: App,
    input_file_id: uuid.UUID | None,
    endpoint: Any,
    completion_window: Any,
    metadata: Any = None,
) -> Batch:
    """A batch of the requests in an uploaded file: `validating` until its input has been
    read (by a worker: apps.batches.expansion)."""
    if endpoint != ENDPOINT:
        raise BatchParamError(
            f"endpoint must be {ENDPOINT}: the only one batches serve.", "endpoint"
        )
    if not isinstance(completion_window, str) or completion_window not in WINDOWS:
        raise BatchParamError("completion_window must be 24h.", "completion_window")
    if input_file_id is None:
        raise BatchParamError(
            "input_file_id must name a file uploaded for batches.", "input_file_id"
        )
    try:
        input_file = file_get(app_id=app.id, file_id=input_file_id, purpose=FilePurpose.BATCH)
    except NotFound:
        raise BatchParamError(
            "input_file_id must name a file of this app uploaded with purpose=batch.",
            "input_file_id",
        ) from None
    _open_batches_check(app)
    now = timezone.now()
    batch = Batch.objects.create(
        app=app,
        endpoint=endpoint,
        completion_window=completion_window,
        input_file=input_file,
        metadata=_metadata(metadata),
        expires_at=now + WINDOWS[completion_window],
    )
    batch.expand_task = task_create(
        kind=EXPAND_KIND,
        app=app,
        payload={"batch_id": str(batch.id)},
        requested_priority=Priority.LOW,
    )
    batch.save(update_fields=["expand_task"])
    return batch


def _open_batches_check(app: App) -> None:
    """Within batch_create's transaction: the app's row is locked, so two batches created at
    once are counted one after the other."""
    limit = int(settings.BATCHES["MAX_OPEN_PER_APP"])
    if limit <= 0:
        return
    App.objects.select_for_update().filter(id=app.id).values_list("id").first()
    open_now = Batch.objects.filter(app=app, status__in=BatchStatus.OPEN).count()
    if open_now >= limit:
        raise TooManyOpenBatches(
            f"This app has {open_now} batches open, at most {limit}: wait for one to end "
            "(or cancel one)."
        )


def batch_cancel(*, batch: Batch) -> Batch:
    """Cancel the batch: `cancelling` now, `cancelled` (with what finished) once its requests
    have stopped. A batch that has ended, or is being cancelled, is left as it is."""
    now = timezone.now()
    moved = Batch.objects.filter(id=batch.id, status__in=BatchStatus.CANCELLABLE).update(
        status=BatchStatus.CANCELLING, cancelling_at=now
    )
    if moved and batch.expand_task_id is not None:
        task_cancel(task_id=batch.expand_task_id, actor=f"batch {batch.id} cancelled")
    batch.refresh_from_db()
    if not moved and batch.status not in (BatchStatus.CANCELLING, BatchStatus.CANCELLED):
        raise InvalidParam(f"A batch that is {batch.status} cannot be cancelled.")
    return batch


@transaction.atomic
def batch_retry_failed(*, batch: Batch, actor: str) -> int:
    """Run a completed batch's failed requests again (a fresh budget of attempts), within its
    window: the batch is in progress again, and its files are written anew when they end.
    Returns how many requests go again."""
    batch = Batch.objects.select_for_update().get(id=batch.id)
    if batch.status != BatchStatus.COMPLETED or timezone.now() >= batch.expires_at:
        return 0
    failed = list(
        Task.objects.filter(
            batch_lines__batch=batch, status__in=(TaskStatus.FAILED, TaskStatus.DEAD)
        ).values_list("id", "status")
    )
    if not failed:
        return 0
    Task.objects.filter(id__in=[task_id for task_id, _ in failed]).update(
        status=TaskStatus.PENDING, attempts=0, finished_at=None, error_type="", error_message=""
    )
    TaskEvent.objects.bulk_create(
        TaskEvent(
            task_id=task_id,
            from_status=status,
            to_status=TaskStatus.PENDING,
            reason=f"retried with its batch by {actor}",
        )
        for task_id, status in failed
    )
    Batch.objects.filter(id=batch.id).update(
        status=BatchStatus.IN_PROGRESS,
        ending="",
        released_through=0,
        output_file=None,
        error_file=None,
        completed_at=None,
        finalizing_at=None,
        finalize_task=None,
    )
    return len(failed)
