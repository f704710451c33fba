"""An answer's events rebuilt from PostgreSQL for a reader whose event log is gone (it lapsed
EVENT_LOG_TTL_S after the answer, or Redis lost it): the same events the worker wrote, from the
task and message rows."""

from typing import Any

from apps.conversations.models import Message
from apps.core.db import db_sync_to_async
from apps.core.errors import Cancelled, DeadlineExceeded, InternalError, NotFound, status_of
from apps.dify.events import (
    AnswerHeader,
    ReplaceReason,
    client_error_message,
    error_event,
    message_end_event,
    message_event,
    replace_event,
)
from apps.scheduling.models import Task, TaskStatus
from apps.streams.feeds import WhenGone

# The code a task that ended without one recorded reports, by how it ended.
_CODE_BY_STATUS = {TaskStatus.EXPIRED: DeadlineExceeded.code, TaskStatus.CANCELLED: Cancelled.code}


def failure_code(task: Task) -> str:
    """The error code the client of a task that ended unsuccessfully is told."""
    recorded = (task.result or {}).get("error_code")
    if recorded:
        return str(recorded)
    return _CODE_BY_STATUS.get(TaskStatus(task.status), InternalError.code)


def answer_events_rebuilt(task: Task, message: Message, *, resumed: bool) -> list[dict[str, Any]]:
    """The answer's events as its log held them. A reader that `resumed` already holds some of
    the text: the answer then comes as one `message_replace`."""
    header = AnswerHeader.of(str(task.id), message).fields()
    if task.status == TaskStatus.SUCCEEDED:
        text = (
            replace_event(header, message.answer, ReplaceReason.REBUILT)
            if resumed
            else message_event(header, message.answer)
        )
        return [text, message_end_event(header, message)]
    code = failure_code(task)
    reported = client_error_message(code, message.error or task.error_message or "")
    return [
        error_event(
            header, status=status_of(code), code=code, message=reported or "The answer failed."
        )
    ]


def task_events_rebuilt(*, task_id: str, resumed: bool) -> list[dict[str, Any]] | None:
    """A finished answer's events, None while its task still runs (its worker writes the rest
    into a new log)."""
    task = Task.objects.filter(id=task_id).only("status", "error_message", "result").first()
    if task is None:
        return [_gone_error(task_id)]
    if task.status not in TaskStatus.FINAL:
        return None
    message = Message.objects.filter(task_id=task_id).first()
    if message is None:
        return [_gone_error(task_id)]
    return answer_events_rebuilt(task, message, resumed=resumed)


def _gone_error(task_id: str) -> dict[str, Any]:
    return error_event(
        {},
        status=NotFound.status,
        code=NotFound.code,
        message=f"Task {task_id} has no answer to relay: its events are gone.",
    )


_task_events_rebuilt = db_sync_to_async(task_events_rebuilt)


def when_log_gone(task_id: str, *, resumed: bool) -> WhenGone:
    """What a reader of the task's events ends with if its log is gone (apps.streams.feeds)."""

    async def rebuilt() -> list[dict[str, Any]] | None:
        return await _task_events_rebuilt(task_id=task_id, resumed=resumed)

    return rebuilt
