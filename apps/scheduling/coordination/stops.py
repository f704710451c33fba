"""Signals to a running task, through Redis, so that whichever worker runs it sees them.

A stop is a flag per task plus a counter: a worker running hundreds of attempts reads the counter
(one small GET) every few milliseconds and reads the flags of its attempts only when the counter
moved, instead of polling every flag (apps.scheduling.runtime.attempts).
"""

import enum

from apps.core.redis import key, sync_client


class StopReason(enum.StrEnum):
    """Why an attempt stops before its answer is done."""

    # The end user's: the partial answer is kept.
    STOP = "stop"
    # An operator's: the task ends cancelled.
    CANCEL = "cancel"
    # The deadline passed (or an operator expired the task): it ends expired.
    DEADLINE = "deadline"
    # Another attempt owns the task now: this one writes nothing more.
    ABANDONED = "abandoned"
    # The worker is stopping: the task goes back to its queue.
    SHUTDOWN = "shutdown"


STOP_FLAG_TTL_S = 3600


def stop_flag_key(task_id: str) -> str:
    return key("task", task_id, "stop")


def stop_version_key() -> str:
    return key("stops", "version")


def task_request_stop(*, task_id: str, reason: StopReason = StopReason.STOP) -> None:
    """Ask the worker running the task to stop between two tokens (STOP, CANCEL or DEADLINE)."""
    pipe = sync_client().pipeline(transaction=False)
    pipe.set(stop_flag_key(task_id), reason, ex=STOP_FLAG_TTL_S)
    pipe.incr(stop_version_key())
    pipe.execute()


def task_stop_reason(*, task_id: str) -> StopReason | None:
    value = sync_client().get(stop_flag_key(task_id))
    return StopReason(value.decode()) if isinstance(value, bytes) else None


def task_stop_clear(*, task_id: str) -> None:
    """Forget a stop request, so that a task sent back to the queue is not stopped again by the
    flag that ended its last run."""
    sync_client().delete(stop_flag_key(task_id))
