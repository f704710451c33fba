"""The message a worker is answering, read once per attempt.

The concurrency check, the run and the success hook of one attempt all need the message with its
app and conversation. Reading it once, when the attempt starts, saves two queries per answer on
the worker's hot path. The run saves its changes on this same object, so the success hook sees
what was committed. Keyed by task and attempt: a later attempt (here or on another worker) reads
the row afresh.
"""

import threading
from dataclasses import dataclass

from apps.applications.selectors import app_get
from apps.conversations.models import Message
from apps.scheduling.models import Task


@dataclass(frozen=True)
class _Held:
    task_id: str
    attempt: int
    message: Message


_held = threading.local()


def _message_read(message_id: str | None) -> Message | None:
    if message_id is None:
        return None
    message = Message.objects.select_related("conversation").filter(id=message_id).first()
    if message is None:
        return None
    # The app from this process's config cache: the widest row, and it rarely changes.
    app = app_get(app_id=message.app_id)
    if app is None:
        return None
    message.app = app
    if message.conversation is not None:
        message.conversation.app = app  # the same app: saves the title task a query
    return message


def attempt_message(task: Task, attempt: int) -> Message:
    """The task's message for this attempt, read from PostgreSQL the first time it is asked for."""
    held: _Held | None = getattr(_held, "value", None)
    if held is not None and held.task_id == str(task.id) and held.attempt == attempt:
        return held.message
    message = _message_read(task.payload["message_id"])
    if message is None:
        raise Message.DoesNotExist(f"message {task.payload['message_id']} of task {task.id}")
    _held.value = _Held(task_id=str(task.id), attempt=attempt, message=message)
    return message


def attempt_message_saved(task: Task) -> Message | None:
    """The message as the task's latest attempt saved it, if this thread ran that attempt; else
    read afresh (None if it is gone). Lets go of it: the attempt is over."""
    held: _Held | None = getattr(_held, "value", None)
    _held.value = None
    if held is not None and held.task_id == str(task.id) and held.attempt == task.attempts:
        return held.message
    return _message_read(task.payload.get("message_id"))
