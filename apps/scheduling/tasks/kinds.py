"""Task kinds: what a worker does with a task, registered by the apps that own the work.

Scheduling knows nothing about chat: generation registers the `chat` and `completion` kinds.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

from apps.scheduling.coordination.capacity import Route
from apps.scheduling.coordination.stops import StopReason
from apps.scheduling.models import Task

P = ParamSpec("P")
R = TypeVar("R")


class RunContext(Protocol):
    """What a running task may ask of the scheduler. A worker runs many attempts at once on one
    event loop: a kind's `run` must never block it, and does its database work through `db`."""

    attempt: int
    worker_name: str
    # The deployment this attempt holds (TaskKind.route), "" for a kind that needs none.
    deployment: str

    def should_stop(self) -> bool:
        """Whether to stop now: a stop or cancel request, the deadline, or the attempt lost its
        task to another worker. Cheap: checked on every token."""
        ...

    @property
    def stop_reason(self) -> StopReason | None:
        """Why it stops (StopReason), None while it runs on."""
        ...

    def time_left_s(self) -> float | None: ...

    async def until_stopped(self, work: Awaitable[R]) -> R | None:
        """Run `work`, cancelling it if the attempt is told to stop first (None then): a
        provider that went quiet is stopped at once, not at its next token."""
        ...

    async def db(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Call `function` (blocking: database, sync Redis) off the event loop."""
        ...

    def write_on_success(self, write: Callable[[], None]) -> None:
        """Run `write` inside the transaction that records the attempt as succeeded, only if
        this attempt is still the task's current one (its fencing token holds)."""
        ...

    def log(self) -> Any:
        """The attempt's fenced writer to its task's event log (apps.scheduling.runtime.outbox)."""
        ...


@dataclass(frozen=True)
class TaskKind:
    name: str
    # Runs one attempt and returns the result to store; raises to fail the attempt.
    run: Callable[[Task, RunContext], Awaitable[dict[str, Any]]]
    # Called once when the task ends without success (failed, dead, expired, cancelled).
    on_final_failure: Callable[[Task, "FinalFailure"], None]
    # Called once after the task is recorded as succeeded: the place to tell clients it is done,
    # so that whoever hears "done" finds the task and its results committed.
    on_success: Callable[[Task], None] | None = None
    # Called when an operator sends a finished task back to the queue (dead-letter retry), so the
    # kind can reset what clients will read.
    on_requeue: Callable[[Task], None] | None = None
    max_attempts: int | None = None
    # The model deployments the task needs (one of them, while it runs): it waits for room in
    # one, by priority, then in fair shares between apps (apps.scheduling.coordination.
    # capacity). None (or a None route): it needs none and runs as soon as a worker is free.
    route: Callable[[Task], Route | None] | None = None


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
