"""Signals to a running task, through Redis, so that whichever worker runs it sees them.

A stop is a flag per task plus a counter: a worker running hundreds of attempts reads the counter
(one small GET) every few milliseconds and reads the flags of its attempts only when the counter
moved, instead of polling every flag (apps.scheduling.runtime.attempts).
"""

from apps.core.redis import key, sync_client

STOP_FLAG_TTL_S = 3600


def stop_flag_key(task_id: str) -> str:
    return key("task", task_id, "stop")


def stop_version_key() -> str:
    return key("stops", "version")


def task_request_stop(*, task_id: str, reason: str = "stop") -> None:
    """Ask the worker running the task to stop between two tokens: `stop` (the end user's),
    `cancel` (an operator's) or `deadline` (an operator expired it: it ends as expired)."""
    pipe = sync_client().pipeline(transaction=False)
    pipe.set(stop_flag_key(task_id), reason, ex=STOP_FLAG_TTL_S)
    pipe.incr(stop_version_key())
    pipe.execute()


def task_stop_reason(*, task_id: str) -> str | None:
    value = sync_client().get(stop_flag_key(task_id))
    return value.decode() if isinstance(value, bytes) else value


def task_stop_clear(*, task_id: str) -> None:
    """Forget a stop request, so that a task sent back to the queue is not stopped again by the
    flag that ended its last run."""
    sync_client().delete(stop_flag_key(task_id))
