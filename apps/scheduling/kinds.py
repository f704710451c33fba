"""Task kinds: what a worker does with a task, registered by the apps that own the work.

Scheduling knows nothing about chat: generation registers the `chat` and `completion` kinds.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from apps.scheduling.models import Task


class RunContext(Protocol):
    """What a running task may ask of the scheduler."""

    attempt: int
    worker_name: str

    def should_stop(self) -> bool: ...

    @property
    def stop_reason(self) -> str | None: ...

    def time_left_s(self) -> float | None: ...


@dataclass(frozen=True)
class TaskKind:
    name: str
    # Runs one attempt and returns the result to store; raises to fail the attempt.
    run: Callable[[Task, RunContext], dict[str, Any]]
    # Called once when the task ends without success (failed, dead, expired, cancelled).
    on_final_failure: Callable[[Task, "FinalFailure"], None]
    # Called once after the task is recorded as succeeded: the place to tell clients it is done,
    # so that whoever hears "done" finds the task and its results committed.
    on_success: Callable[[Task], None] | None = None
    # Called when an operator sends a finished task back to the queue (dead-letter retry), so the
    # kind can reset what clients will read.
    on_requeue: Callable[[Task], None] | None = None
    max_attempts: int | None = None
    # (group, limit) when at most `limit` tasks of the group may run at once (e.g. one app's model
    # server); None when unlimited. Tasks over the limit wait for a slot in priority order.
    concurrency: Callable[[Task], tuple[str, int] | None] | None = None


@dataclass(frozen=True)
class FinalFailure:
    status: str
    code: str
    message: str


_REGISTRY: dict[str, TaskKind] = {}


def register_task_kind(kind: TaskKind) -> None:
    _REGISTRY[kind.name] = kind


def task_kind_find(name: str) -> TaskKind | None:
    return _REGISTRY.get(name)


def task_kind_get(name: str) -> TaskKind:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise LookupError(f"no task kind {name!r} is registered") from None
