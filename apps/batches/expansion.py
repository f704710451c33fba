"""Reading a batch's input file (`validating`): each line a request of OpenAI's batch format,
`{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {...}}`, checked as the
chat completions route checks a request, and recorded as a message and a held bulk task of the
app (apps.scheduling: released to the queue in turn, apps.batches.progress).

A line that is not a valid request is recorded with why (it goes to the error file, counted as a
failed request), never skipped. The file is read twice, a chunk at a time: first to count its
requests (more than MAX_REQUESTS fail the batch before anything is recorded), then to record
them, CHUNK_LINES per transaction; a run cut short (a worker killed) goes on after the last line
recorded.
"""

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.api.bodies import json_bytes_text_check, text_storable
from apps.applications.models import App
from apps.batches.models import Batch, BatchLine, BatchStatus
from apps.conversations.inputs import inputs_validate
from apps.conversations.models import Message
from apps.core.errors import ApiError, InvalidJson
from apps.core.priorities import Priority
from apps.deployments.selectors import app_route
from apps.files.services import file_chunks
from apps.openai.requests import OpenAIParamError, chat_completion_parse
from apps.scheduling.tasks.services import PreparedTask, task_prepare, tasks_record_held

logger = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
CHUNK_LINES = 500
# Batch-level errors kept on the batch (OpenAI's `errors.data`); every line's is in the file.
MAX_BATCH_ERRORS = 100
_TOO_LONG = object()


def max_requests() -> int:
    return int(settings.BATCHES["MAX_REQUESTS"])


def file_lines(chunks: Iterator[bytes], max_line_bytes: int) -> Iterator[bytes | object]:
    """The lines of a file read in chunks (without their line ends); a line longer than
    `max_line_bytes` comes as `_TOO_LONG`, without ever being held whole."""
    pending = bytearray()
    too_long = False
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            if too_long or len(pending) + end - start > max_line_bytes:
                yield _TOO_LONG
            else:
                pending += chunk[start:end]
                yield bytes(pending).rstrip(b"\r")
            pending.clear()
            too_long = False
            start = end + 1
        if not too_long:
            pending += chunk[start:]
            if len(pending) > max_line_bytes:
                too_long = True
                pending.clear()
    if too_long:
        yield _TOO_LONG
    elif pending:
        yield bytes(pending).rstrip(b"\r")


def _blank(line: bytes | object) -> bool:
    return isinstance(line, bytes) and not line.strip()


class LineError(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param

    def document(self, number: int) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "param": self.param, "line": number}


@dataclass
class Recording:
    """What one transaction records."""

    prepared: list[PreparedTask] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    lines: list[BatchLine] = field(default_factory=list)


def _request(raw: bytes | object, batch: Batch, seen: set[str]) -> tuple[str, dict[str, Any]]:
    """The line's custom_id and validated request, or LineError saying what is wrong."""
    if raw is _TOO_LONG:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raise LineError("line_too_long", f"The line is longer than {limit} bytes.")
    assert isinstance(raw, bytes)
    try:
        line = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise LineError("invalid_json_line", "The line is not a JSON object.") from None
    if not isinstance(line, dict):
        raise LineError("invalid_json_line", "The line is not a JSON object.")
    try:
        json_bytes_text_check(raw, line)
    except InvalidJson:
        # Refused here, alone: recorded, it would fail the whole chunk of lines it is in.
        raise LineError(
            "invalid_text",
            "The line has text PostgreSQL cannot store: a NUL character or an unpaired "
            "surrogate (written as an escape or as bytes).",
        ) from None
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > 512:
        raise LineError(
            "missing_custom_id", "custom_id must be a string of 1 to 512 characters.", "custom_id"
        )
    if custom_id in seen:
        raise LineError(
            "duplicate_custom_id", f"custom_id {custom_id!r} is used by an earlier line."
        )
    seen.add(custom_id)
    if line.get("method") != "POST":
        raise LineError("invalid_method", "method must be POST.", "method")
    if line.get("url") != batch.endpoint:
        raise LineError(
            "invalid_url", f"url must be the batch's endpoint, {batch.endpoint}.", "url"
        )
    body = line.get("body")
    if not isinstance(body, dict):
        raise LineError("invalid_request", "body must be a JSON object.", "body")
    if body.get("stream"):
        raise LineError("invalid_request", "Batch requests cannot stream.", "body.stream")
    try:
        chat = chat_completion_parse(body)
    except OpenAIParamError as error:
        param = f"body.{error.param}" if error.param else "body"
        raise LineError(error.openai_code or "invalid_request", error.message, param) from None
    except ApiError as error:
        raise LineError("invalid_request", error.message, "body") from None
    if chat.model != app_route(app_id=batch.app_id).model_name:
        raise LineError(
            "model_not_found",
            f"The model `{chat.model}` does not exist or you do not have access to it.",
            "body.model",
        )
    return custom_id, chat.data


def _record_request(
    batch: Batch, app: App, number: int, custom_id: str, data: dict[str, Any], into: Recording
) -> None:
    # First what can refuse the line: nothing of it is recorded then.
    inputs = inputs_validate(user_input_form=app.user_input_form, inputs=data["inputs"])
    message_id = uuid.uuid4()
    prepared = task_prepare(
        kind=app.mode,
        app=app,
        end_user=data["user"],
        payload={"message_id": str(message_id), "batch_id": str(batch.id)},
        requested_priority=Priority.LOW,
        priority=Priority.LOW,
        max_attempts=app.max_attempts,
        deadline_at=batch.expires_at,
        bulk=True,
    )
    into.prepared.append(prepared)
    into.messages.append(
        Message(
            id=message_id,
            app=app,
            end_user=data["user"],
            inputs=inputs,
            query=data["query"],
            history=data["history"],
            generation=data["generation"],
            task=prepared.task,
        )
    )
    into.lines.append(
        BatchLine(
            batch=batch,
            number=number,
            custom_id=custom_id,
            message_id=message_id,
            task=prepared.task,
        )
    )


def _flush(batch: Batch, recording: Recording) -> None:
    with transaction.atomic():
        tasks_record_held(recording.prepared, recording.messages, recording.lines)
    recording.prepared.clear()
    recording.messages.clear()
    recording.lines.clear()


def _fail(batch: Batch, errors: list[dict[str, Any]]) -> None:
    Batch.objects.filter(id=batch.id, status=BatchStatus.VALIDATING).update(
        status=BatchStatus.FAILED, errors=errors[:MAX_BATCH_ERRORS], failed_at=timezone.now()
    )


def batch_expand(*, batch_id: uuid.UUID | str) -> str:
    """Validate the batch's input and record its requests; returns the batch's status after."""
    batch = Batch.objects.select_related("app", "input_file").get(id=batch_id)
    if batch.status != BatchStatus.VALIDATING:
        return str(batch.status)
    if batch.input_file is None:
        _fail(batch, [{"code": "file_not_found", "message": "The input file was deleted."}])
        return BatchStatus.FAILED
    max_line = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    requests = sum(
        1 for line in file_lines(file_chunks(batch.input_file), max_line) if not _blank(line)
    )
    if requests == 0:
        _fail(batch, [{"code": "empty_file", "message": "The input file holds no requests."}])
        return BatchStatus.FAILED
    if requests > max_requests():
        message = f"The input file holds {requests} requests; a batch takes at most "
        _fail(batch, [{"code": "too_many_requests", "message": f"{message}{max_requests()}."}])
        return BatchStatus.FAILED
    return _record_lines(batch)


def _record_lines(batch: Batch) -> str:
    app = batch.app
    done = BatchLine.objects.filter(batch=batch).aggregate(last=Max("number"))["last"] or 0
    seen = set(
        BatchLine.objects.filter(batch=batch)
        .exclude(custom_id="")
        .values_list("custom_id", flat=True)
    )
    recording = Recording()
    assert batch.input_file is not None
    max_line = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    for number, raw in enumerate(file_lines(file_chunks(batch.input_file), max_line), start=1):
        if number <= done or _blank(raw):
            continue
        try:
            custom_id, data = _request(raw, batch, seen)
            _record_request(batch, app, number, custom_id, data, recording)
        except LineError as error:
            recording.lines.append(
                BatchLine(
                    batch=batch,
                    number=number,
                    custom_id=_custom_id_of(raw),
                    error=error.document(number),
                )
            )
        except ApiError as error:  # the app's inputs form refused the line's `inputs`
            recording.lines.append(
                BatchLine(
                    batch=batch,
                    number=number,
                    custom_id=_custom_id_of(raw),
                    error=LineError("invalid_request", error.message, "body.inputs").document(
                        number
                    ),
                )
            )
        if len(recording.lines) >= CHUNK_LINES:
            _flush(batch, recording)
            if not _still_validating(batch):
                return str(Batch.objects.get(id=batch.id).status)  # cancelled meanwhile
    _flush(batch, recording)
    return _validated(batch)


def _custom_id_of(raw: bytes | object) -> str:
    """The custom_id of a line that is not a valid request, when it has a usable one."""
    if not isinstance(raw, bytes):
        return ""
    try:
        custom_id = json.loads(raw).get("custom_id")
    except (ValueError, AttributeError, RecursionError):
        return ""
    return custom_id if isinstance(custom_id, str) and text_storable(custom_id) else ""


def _still_validating(batch: Batch) -> bool:
    return Batch.objects.filter(id=batch.id, status=BatchStatus.VALIDATING).exists()


def _validated(batch: Batch) -> str:
    """In progress if a request was recorded; failed (every line's error) if none was."""
    lines = BatchLine.objects.filter(batch=batch)
    if lines.filter(task__isnull=False).exists():
        Batch.objects.filter(id=batch.id, status=BatchStatus.VALIDATING).update(
            status=BatchStatus.IN_PROGRESS,
            in_progress_at=timezone.now(),
            request_total=lines.count(),
        )
    else:
        errors = list(lines.order_by("number").values_list("error", flat=True)[:MAX_BATCH_ERRORS])
        _fail(batch, [error for error in errors if error])
    return str(Batch.objects.get(id=batch.id).status)
