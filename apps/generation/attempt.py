"""The message a worker is answering, read once per attempt.

The concurrency check, the run and the success hook of one attempt all need the message with its
app and conversation. Reading it once, when the attempt starts, saves two queries per answer on
the worker's hot path. The run saves its changes on this same object, so the success hook sees
what was committed. Keyed by task and attempt: a later attempt (here or on another worker) reads
the row afresh. A worker runs many attempts at once, in several threads: the store is shared,
bounded, and an entry is dropped when its attempt's success hook has used it (an attempt that
ends otherwise leaves its entry to be pushed out by newer ones).
"""

import threading
from collections import OrderedDict

from apps.applications.selectors import app_get
from apps.conversations.models import Message
from apps.scheduling.models import Task

# Attempts remembered at once: more than a worker runs at once (WORKER_CONCURRENCY).
HELD_MAX = 4096

_held: "OrderedDict[tuple[str, int], Message]" = OrderedDict()
_held_lock = threading.Lock()


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
    held_key = (str(task.id), attempt)
    with _held_lock:
        message = _held.get(held_key)
    if message is not None:
        return message
    message = _message_read(task.payload["message_id"])
    if message is None:
        raise Message.DoesNotExist(f"message {task.payload['message_id']} of task {task.id}")
    with _held_lock:
        _held[held_key] = message
        while len(_held) > HELD_MAX:
            _held.popitem(last=False)
    return message


def attempt_message_saved(task: Task) -> Message | None:
    """The message as the task's latest attempt saved it, if this process ran that attempt; else
    read afresh (None if it is gone). Lets go of it: the attempt is over."""
    with _held_lock:
        message = _held.pop((str(task.id), task.attempts), None)
    if message is not None:
        return message
    return _message_read(task.payload.get("message_id"))
