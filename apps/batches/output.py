"""A batch's end (`finalizing`): its output file (one line per answered request, in the order of
the input) and its error file (the rest: failed requests, invalid lines, requests that expired or
were cancelled with the batch), in OpenAI's format, keyed by `custom_id`. A cancelled or expired
batch still returns what finished. Written in one transaction with the batch's final status (the
files, the counts and the status appear together, or not at all: a run cut short starts again).
"""

import json
import uuid
from collections.abc import Iterator
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.batches.ids import REQUEST_PREFIX, public_id
from apps.batches.models import Batch, BatchLine, BatchStatus
from apps.batches.progress import FAILED_STATUSES, LINE_ENDINGS, line_counts
from apps.batches.services import batch_file_expiry
from apps.core.errors import error_of
from apps.deployments.selectors import app_route
from apps.dify.events import message_end_event
from apps.dify.rebuild import failure_code
from apps.files.models import FilePurpose, StoredFile
from apps.files.services import file_store
from apps.openai.errors import openai_error_body
from apps.openai.objects import CompletionHead, chat_completion, completion_id
from apps.scheduling.models import TaskStatus

# The files' size is bounded by the input's (50,000 requests); this is only a backstop.
MAX_OUTPUT_BYTES = 16 * 1024**3
ENDED_AT = {
    BatchStatus.COMPLETED: "completed_at",
    BatchStatus.EXPIRED: "expired_at",
    BatchStatus.CANCELLED: "cancelled_at",
}
# What a request that never ran reports, by how it ended.
NEVER_RAN = {
    TaskStatus.EXPIRED: ("batch_expired", LINE_ENDINGS[BatchStatus.EXPIRED][1]),
    TaskStatus.CANCELLED: ("batch_cancelled", LINE_ENDINGS[BatchStatus.CANCELLED][1]),
}


def _jsonl(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _answered(line: BatchLine, model: str) -> dict[str, Any]:
    message, task = line.message, line.task
    assert message is not None
    assert task is not None
    head = CompletionHead(
        id=completion_id(str(task.id)), created=int(message.created_at.timestamp()), model=model
    )
    body = chat_completion(head, message.answer, message_end_event({}, message))
    response = {"status_code": 200, "request_id": str(task.id), "body": body}
    return {
        "id": public_id(REQUEST_PREFIX, line.id),
        "custom_id": line.custom_id,
        "response": response,
        "error": None,
    }


def _unanswered(line: BatchLine) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": public_id(REQUEST_PREFIX, line.id),
        "custom_id": line.custom_id or None,
        "response": None,
        "error": None,
    }
    task = line.task
    if task is None:  # not a valid request
        record["error"] = line.error
    elif task.status in NEVER_RAN and not task.attempts:
        code, message = NEVER_RAN[TaskStatus(task.status)]
        record["error"] = {"code": code, "message": message}
    else:
        code = failure_code(task)
        message = (line.message.error if line.message else "") or task.error_message or code
        error = error_of(code, message)
        body = openai_error_body(error)
        record["response"] = {
            "status_code": error.status,
            "request_id": str(task.id),
            "body": body,
        }
    return record


def _lines(batch: Batch) -> Iterator[BatchLine]:
    return (
        BatchLine.objects.filter(batch=batch)
        .select_related("task", "message")
        .order_by("number")
        .iterator(chunk_size=1000)
    )


def _records(batch: Batch, *, answered: bool) -> Iterator[bytes]:
    model = app_route(app_id=batch.app_id).model_name
    for line in _lines(batch):
        succeeded = line.task is not None and line.task.status == TaskStatus.SUCCEEDED
        if succeeded and answered:
            yield _jsonl(_answered(line, model))
        elif not succeeded and not answered:
            yield _jsonl(_unanswered(line))


def _file(batch: Batch, purpose: str, kind: str, records: Iterator[bytes]) -> StoredFile | None:
    first = next(records, None)
    if first is None:
        return None

    def chunks() -> Iterator[bytes]:
        yield first
        yield from records

    return file_store(
        app=batch.app,
        end_user="",
        purpose=purpose,
        filename=f"{public_id('batch_', batch.id)}_{kind}.jsonl",
        mime_type="application/jsonl",
        chunks=chunks(),
        max_bytes=MAX_OUTPUT_BYTES,
        expires_at=batch_file_expiry(),
    )


def batch_finalize(*, batch_id: uuid.UUID | str) -> str:
    """Write the batch's files and end it as it was set to (`Batch.ending`)."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().select_related("app").get(id=batch_id)
        if batch.status != BatchStatus.FINALIZING:
            return str(batch.status)
        ending = BatchStatus(batch.ending or BatchStatus.COMPLETED)
        output = _file(batch, FilePurpose.BATCH_OUTPUT, "output", _records(batch, answered=True))
        errors = _file(batch, FilePurpose.BATCH_ERROR, "error", _records(batch, answered=False))
        counts = line_counts(batch)
        fields = {
            "status": ending,
            "output_file": output,
            "error_file": errors,
            "request_total": counts["total"],
            "request_completed": counts["completed"],
            "request_failed": counts["failed"],
            ENDED_AT[ending]: timezone.now(),
        }
        Batch.objects.filter(id=batch.id).update(**fields)
    return str(ending)


__all__ = ["FAILED_STATUSES", "batch_finalize"]
