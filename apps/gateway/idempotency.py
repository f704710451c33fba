"""`Idempotency-Key`: a retried request gets the first one's result instead of a second run.

The key is stored on the task (unique per app), with a hash of the request beside it. A retry
with the same key and the same request attaches to the first run: it relays the same event log
(so a retry during the run follows it live, and one after it gets the same answer). The same key
with a different request is 422 `idempotency_key_reused`. `response_mode` is not part of the
hash: it says how the answer is delivered, not what is asked, so a retry may switch it. Once the
event log has lapsed (EVENT_LOG_TTL_S), the answer is rebuilt from the message row.
"""

import hashlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest

from apps.conversations.models import Message
from apps.conversations.services import SubmittedAnswer
from apps.core.db import db_sync_to_async
from apps.core.errors import InvalidParam
from apps.core.redis import sync_client
from apps.gateway.errors import IdempotencyKeyReused
from apps.generation.events import message_end_event
from apps.scheduling.models import Task, TaskStatus
from apps.streams.feeds import WhenGone
from apps.streams.log import stream_key
from apps.streams.relay import OPEN, CollectedAnswer, error_from_event, sse_frame

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_VALID = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$")
# How a task that ended without an answer is reported once its event log is gone.
_FAILURES = {
    TaskStatus.EXPIRED: (504, "deadline_exceeded"),
    TaskStatus.CANCELLED: (499, "cancelled"),
}


def idempotency_key(request: HttpRequest) -> str | None:
    return idempotency_key_checked(request.headers.get(HEADER))


def idempotency_key_checked(raw: Any) -> str | None:
    """A key as a client gave it (a header, a frame's `idempotency_key`), or None without one."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not _VALID.match(raw):
        raise InvalidParam(
            f"{HEADER} must be 1 to 255 printable ASCII characters, without surrounding spaces."
        )
    return raw


def request_hash(route: str, body: dict[str, Any]) -> str:
    asked = {name: value for name, value in body.items() if name != "response_mode"}
    material = json.dumps([route, asked], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(material.encode()).hexdigest()


def same_request(submitted: SubmittedAnswer, expected_hash: str, key: str) -> None:
    """Raise unless the earlier request under this key asked the same thing."""
    if submitted.task.payload.get("request_hash") != expected_hash:
        raise IdempotencyKeyReused(
            f"{HEADER} {key!r} was already used with a different request (task "
            f"{submitted.task.id}); send a new key for a new request."
        )


def rebuilt_events(submitted: SubmittedAnswer) -> list[dict[str, Any]] | None:
    """The answer's events rebuilt from PostgreSQL when its event log has lapsed; None while the
    log can still be relayed (or will be written: the task has not finished)."""
    task, message = submitted.task, submitted.message
    task.refresh_from_db(fields=["status", "error_message"])
    if task.status not in TaskStatus.FINAL or sync_client().exists(stream_key(str(task.id))):
        return None
    message.refresh_from_db()
    return events_from_rows(task, message)


def task_events_rebuilt(*, task_id: str, resumed: bool) -> list[dict[str, Any]] | None:
    """A finished answer's final events from PostgreSQL, for a reader whose log is gone; None
    while the task still runs. A reader that `resumed` already holds some of the text: the
    answer then comes as one `message_replace`."""
    task = Task.objects.filter(id=task_id).only("status", "error_message", "kind").first()
    if task is None:
        return [_gone_error(task_id)]
    if task.status not in TaskStatus.FINAL:
        return None
    message = Message.objects.filter(task_id=task_id).first()
    if message is None:
        return [_gone_error(task_id)]
    return events_from_rows(task, message, replace=resumed)


def _gone_error(task_id: str) -> dict[str, Any]:
    return {
        "event": "error",
        "status": 404,
        "code": "not_found",
        "message": f"Task {task_id} has no answer to relay: its events are gone.",
    }


def events_from_rows(
    task: Task, message: Message, *, replace: bool = False
) -> list[dict[str, Any]]:
    base: dict[str, Any] = {
        "task_id": str(task.id),
        "id": str(message.id),
        "message_id": str(message.id),
        "created_at": int(message.created_at.timestamp()),
    }
    if message.conversation_id is not None:
        base["conversation_id"] = str(message.conversation_id)
    if task.status == TaskStatus.SUCCEEDED:
        text: dict[str, Any] = (
            {"event": "message_replace", **base, "answer": message.answer, "reason": "rebuilt"}
            if replace
            else {"event": "message", **base, "answer": message.answer}
        )
        return [text, message_end_event(base, message)]
    status, code = _FAILURES.get(TaskStatus(task.status), (500, "internal_server_error"))
    base.pop("task_id")
    error = message.error or task.error_message or "The answer failed."
    return [{"event": "error", **base, "status": status, "code": code, "message": error}]


_task_rebuilt = db_sync_to_async(task_events_rebuilt)


def when_log_gone(task_id: str, *, resumed: bool = False) -> WhenGone:
    """What a reader of the task's events ends with if its log is gone (streams.feeds)."""

    async def rebuilt() -> list[dict[str, Any]] | None:
        return await _task_rebuilt(task_id=task_id, resumed=resumed)

    return rebuilt


async def events_stream(events: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Rebuilt events as an SSE stream, like the relay's."""
    yield OPEN
    for number, event in enumerate(events, start=1):
        yield sse_frame(f"0-{number}", event, id_line=False)


def collected_from(events: list[dict[str, Any]]) -> CollectedAnswer:
    """Rebuilt events as a blocking answer, as the relay collects a live log."""
    parts: list[str] = []
    for event in events:
        if event["event"] == "message":
            parts.append(event["answer"])
        elif event["event"] == "message_end":
            return CollectedAnswer(answer="".join(parts), end_event=event)
        elif event["event"] == "error":
            raise error_from_event(event)
    raise ValueError("rebuilt events end neither with message_end nor with error")
