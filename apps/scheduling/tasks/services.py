"""Task writes: creation and every status transition, each a guarded UPDATE plus a TaskEvent."""

import enum
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ParamSpec

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from apps.applications.models import App
from apps.core.insert import insert_together
from apps.core.metrics import MetricsBatch, metric_inc
from apps.scheduling.coordination.capacity import capacity_forget, capacity_move
from apps.scheduling.coordination.queues import job_remove
from apps.scheduling.coordination.stops import StopReason, task_request_stop, task_stop_clear
from apps.scheduling.models import Task, TaskEvent, TaskStatus
from apps.scheduling.tasks.dispatch import task_over_share, task_push, tasks_push
from apps.scheduling.tasks.kinds import FinalFailure, task_kind_find
from apps.scheduling.tasks.policy import PriorityDecision, priority_decide
from apps.scheduling.tasks.transitions import Increment, guarded_update

logger = logging.getLogger(__name__)

P = ParamSpec("P")


def _pusher(task: Task, delay_s: float = 0) -> Callable[[], None]:
    # A copy: the caller's row may change before the push runs (on commit).
    pushed = task_for_push(task)

    def push() -> None:
        try:
            task_push(pushed, delay_s=delay_s)
        except Exception:
            # The row is (or is about to be) committed as queued: the reconciler pushes it
            # again once Redis is back.
            logger.exception("could not push task to Redis", extra={"task_id": str(pushed.id)})

    return push


def task_for_push(task: Task) -> Task:
    """What pushing a task reads of it (its route, queue, deadline and place in line), copied."""
    return Task(
        id=task.id,
        kind=task.kind,
        app_id=task.app_id,
        payload=dict(task.payload or {}),
        priority=task.priority,
        deadline_at=task.deadline_at,
        enqueued_at=task.enqueued_at,
        bulk=task.bulk,
    )


PUSH_FIELDS = ("id", "kind", "app_id", "payload", "priority", "deadline_at", "enqueued_at", "bulk")


# The advisory lock a task's creating transaction holds until it commits (see task_record).
CREATION_LOCK_SQL = "hashtextextended(%s, 0)"


@dataclass(frozen=True)
class PreparedTask:
    """A new task and its first event, not yet inserted (see task_prepare)."""

    task: Task
    event: TaskEvent
    decision: PriorityDecision


def task_prepare(
    *,
    kind: str,
    app: App | None,
    end_user: str = "",
    payload: dict[str, Any] | None = None,
    requested_priority: str,
    priority: str | None = None,
    priority_reason: str = "",
    max_attempts: int | None = None,
    deadline_at: datetime | None = None,
    idempotency_key: str | None = None,
    bulk: bool = False,
) -> PreparedTask:
    """The rows of a new queued task, for a caller that records them with its own rows in one
    statement (`task_record`).

    `priority` is what the caller allows (the key may cap the request); the load policy may
    lower it further or defer the task, and says why. A `bulk` task is held `pending` instead
    (recorded with `tasks_record_held`, released by apps.scheduling.bulk): the load policy
    decides nothing for it, its turn does.
    """
    registered = task_kind_find(kind)
    now = timezone.now()
    task = Task(
        id=uuid.uuid4(),
        kind=kind,
        app=app,
        end_user=end_user,
        payload=payload or {},
        status=TaskStatus.PENDING if bulk else TaskStatus.QUEUED,
        bulk=bulk,
        requested_priority=requested_priority,
        max_attempts=(
            max_attempts
            or (registered.max_attempts if registered else None)
            or settings.PLATFORM["TASK_MAX_ATTEMPTS"]
        ),
        deadline_at=deadline_at,
        enqueued_at=None if bulk else now,
        idempotency_key=idempotency_key,
    )
    if bulk:
        decision = PriorityDecision(priority or requested_priority, 0.0, "")
    else:
        decision = priority_decide(
            priority=priority or requested_priority, over_share=lambda: task_over_share(task)
        )
    reasons = [reason for reason in (priority_reason, decision.reason) if reason]
    task.priority = decision.priority
    task.priority_reason = "; ".join(reasons)[:255]
    if decision.defer_s:
        task.not_before = now + timedelta(seconds=decision.defer_s)
    event = TaskEvent(
        task=task,
        from_status="",
        to_status=task.status,
        reason="created"
        + ("; held until workers have room for bulk work" if bulk else "")
        + (f"; {task.priority_reason}" if task.priority_reason else ""),
        detail={"requested_priority": requested_priority, "priority": task.priority},
    )
    return PreparedTask(task=task, event=event, decision=decision)


def task_record(prepared: PreparedTask, *rows: Model) -> None:
    """Insert the prepared task and its event (with the caller's `rows`, in one statement) and
    push it to its queue.

    On its own (no caller transaction), the push goes out between the INSERT and its COMMIT, so
    a worker is already taking the job while the commit is flushed to disk (~3 ms here, the
    largest part of creating a task). The transaction holds an advisory lock on the task until
    it ends; a worker that finds no row waits on that lock, then looks again (see
    `task_await_creation`). Inside a caller's transaction, the push waits for its commit, and a
    savepoint keeps that transaction usable if the INSERT fails (a duplicate Idempotency-Key).
    """
    task, event, decision = prepared.task, prepared.event, prepared.decision
    push = _pusher(task, delay_s=decision.defer_s)
    if connection.in_atomic_block:
        with transaction.atomic():
            insert_together(*rows, task, event)
        transaction.on_commit(push)
    else:
        with transaction.atomic():
            insert_together(
                *rows,
                task,
                event,
                then=f"SELECT pg_advisory_xact_lock({CREATION_LOCK_SQL})",
                then_params=[str(task.id)],
            )
            push()
    if decision.reason:
        change = "deferred" if decision.defer_s else "downgraded"
        metric_inc("dp_priority_changes_total", {"change": change, "to": decision.priority})


@transaction.atomic
def tasks_record_held(prepared: list[PreparedTask], *rows: Sequence[Model]) -> None:
    """Insert many prepared bulk tasks (held `pending`, nothing pushed) with their events and the
    caller's rows (each list in one statement, in the order given: what refers to the tasks
    after them), in one transaction."""
    assert all(item.task.status == TaskStatus.PENDING for item in prepared)
    if prepared:
        Task.objects.bulk_create([item.task for item in prepared])
        TaskEvent.objects.bulk_create([item.event for item in prepared])
    for batch in rows:
        if batch:
            type(batch[0])._default_manager.bulk_create(batch)


def tasks_release_held(*, task_ids: list[uuid.UUID], reason: str) -> int:
    """Queue held tasks now: `pending` to `queued` (guarded: each task once), their events, and
    their jobs pushed in one round trip after the commit. Returns how many were released."""
    now = timezone.now()
    with transaction.atomic():
        released = list(
            Task.objects.select_for_update(skip_locked=True)
            .filter(id__in=task_ids, status=TaskStatus.PENDING)
            .only(*PUSH_FIELDS)
        )
        if not released:
            return 0
        Task.objects.filter(id__in=[task.id for task in released]).update(
            status=TaskStatus.QUEUED, enqueued_at=now
        )
        for task in released:
            task.enqueued_at = now
        TaskEvent.objects.bulk_create(
            TaskEvent(
                task_id=task.id,
                from_status=TaskStatus.PENDING,
                to_status=TaskStatus.QUEUED,
                reason=reason,
            )
            for task in released
        )

        def push() -> None:
            try:
                tasks_push(released)
            except Exception:
                # Committed as queued: the reconciler pushes them again once Redis is back.
                logger.exception("could not push released tasks to Redis")

        transaction.on_commit(push)
    return len(released)


def task_await_creation(*, task_id: str) -> None:
    """Wait until the transaction creating the task (if one is still open) has ended: a worker
    can take a job before the INSERT that made it is committed (see task_record)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_advisory_xact_lock_shared({CREATION_LOCK_SQL})", [task_id])


def _creating(prepare: Callable[P, PreparedTask]) -> Callable[P, Task]:
    def create(*args: P.args, **kwargs: P.kwargs) -> Task:
        prepared = prepare(*args, **kwargs)
        task_record(prepared)
        return prepared.task

    return create


# Record a task as queued and push it to its queue. Takes the arguments of `task_prepare`.
task_create = _creating(task_prepare)


def task_transition(
    *,
    task_id: uuid.UUID | str,
    from_statuses: tuple[str, ...],
    to_status: str,
    reason: str = "",
    actor: str = "",
    detail: dict[str, Any] | None = None,
    attempt: int | None = None,
    **fields: Any,
) -> Task | None:
    """Move a task between statuses if, and only if, it is in one of `from_statuses` now (and,
    for a worker's write, still at `attempt`: an attempt that another one replaced writes
    nothing).

    Returns the updated task, or None when another actor moved it first (the guard lost).
    """
    return guarded_update(
        task_id=task_id,
        from_statuses=from_statuses,
        to_status=to_status,
        reason=reason,
        actor=actor,
        detail=detail or {},
        fields=fields,
        attempt=attempt,
    )


def task_mark_running(*, task_id: str, worker_name: str, deployment: str = "") -> Task | None:
    """Start an attempt; its event says which deployment serves it (the task's history)."""
    return task_transition(
        task_id=task_id,
        from_statuses=TaskStatus.WAITING,
        to_status=TaskStatus.RUNNING,
        reason=f"started on {deployment}" if deployment else "started",
        actor=worker_name,
        detail={"deployment": deployment} if deployment else None,
        worker_name=worker_name,
        attempts=Increment(),
        started_at=timezone.now(),
    )


def task_mark_succeeded(
    *,
    task: Task,
    result: dict[str, Any],
    worker_name: str,
    writes: tuple[Callable[[], None], ...] = (),
) -> Task | None:
    """Record the attempt (`task.attempts`) as succeeded, and run its kind's `writes` in the
    same transaction: the answer is saved only by the attempt that owns the task."""
    with transaction.atomic():
        done = _mark_succeeded(task=task, result=result, worker_name=worker_name)
        if done is not None:
            for write in writes:
                write()
    if done is not None:
        metrics = MetricsBatch()
        metrics.inc("dp_tasks_finished_total", {"kind": done.kind, "status": done.status})
        if done.wait_s is not None:
            metrics.observe("dp_task_wait_seconds", done.wait_s, {"queue": done.priority})
        if done.run_s is not None:
            metrics.observe("dp_task_run_seconds", done.run_s, {"kind": done.kind})
        metrics.send()
    return done


def _mark_succeeded(*, task: Task, result: dict[str, Any], worker_name: str) -> Task | None:
    return task_transition(
        task_id=task.id,
        from_statuses=(TaskStatus.RUNNING,),
        attempt=task.attempts,
        to_status=TaskStatus.SUCCEEDED,
        reason="succeeded",
        actor=worker_name,
        result=result,
        finished_at=timezone.now(),
    )


def retry_delay_s(attempt: int) -> float:
    """Exponential backoff with full jitter: uniform in [base/2, min(max, base * 2^(attempt-1))]."""
    base = settings.PLATFORM["RETRY_BACKOFF_BASE_S"]
    ceiling = min(settings.PLATFORM["RETRY_BACKOFF_MAX_S"], base * (2 ** max(0, attempt - 1)))
    return random.uniform(min(base / 2, ceiling), ceiling)


def task_schedule_retry(
    *,
    task: Task,
    error: Exception,
    worker_name: str,
    delay_s: float | None = None,
    avoid: str = "",
    push: bool = True,
) -> Task | None:
    """Another attempt after a backoff (`delay_s`: 0 when another deployment can take it at
    once: the backoff spares a failing server, not the answer), avoiding deployment `avoid`.
    `push=False` with no delay: the caller pushes it (after letting go of the task's lock)."""
    delay = retry_delay_s(task.attempts) if delay_s is None else delay_s
    retried = task_transition(
        task_id=task.id,
        from_statuses=(TaskStatus.RUNNING,),
        attempt=task.attempts,
        to_status=TaskStatus.RETRYING,
        reason=f"attempt {task.attempts} failed: {type(error).__name__}",
        actor=worker_name,
        detail={
            "error": str(error)[:2000],
            "retry_in_s": round(delay, 3),
            **({"deployment": avoid} if avoid else {}),
        },
        error_type=type(error).__name__,
        error_message=str(error)[:2000],
        not_before=timezone.now() + timedelta(seconds=delay),
    )
    if retried is not None:
        metric_inc("dp_task_retries_total", {"kind": retried.kind})
        if delay > 0:
            task_push(retried, delay_s=delay)
        elif push:
            task_push(retried, avoid=avoid)
    return retried


def task_end_unsuccessfully(
    *,
    task: Task,
    status: str,
    code: str,
    error: Exception,
    actor: str = "",
    attempt: int | None = None,
) -> Task | None:
    """End a task as failed, dead, expired or cancelled, and let its kind tell the client.
    `attempt`: the worker's attempt that ends it (fenced), None for anyone else."""
    ended = task_mark_final_failure(
        task=task,
        status=status,
        error=error,
        reason=f"{status}: {type(error).__name__}",
        worker_name=actor,
        attempt=attempt,
        code=code,
    )
    if ended is not None:
        metric_inc("dp_tasks_finished_total", {"kind": ended.kind, "status": ended.status})
        kind = task_kind_find(ended.kind)
        if kind is not None:
            kind.on_final_failure(ended, FinalFailure(status, code, str(error)))
    return ended


def task_mark_final_failure(
    *,
    task: Task,
    status: str,
    error: Exception | None,
    reason: str,
    worker_name: str = "",
    attempt: int | None = None,
    code: str = "",
) -> Task | None:
    """End the task unsuccessfully; `code` (the API error code clients are told) is kept in
    its result, for whoever reports the failure later (a batch's error file)."""
    return task_transition(
        task_id=task.id,
        attempt=attempt,
        from_statuses=(
            TaskStatus.PENDING,
            TaskStatus.QUEUED,
            TaskStatus.RUNNING,
            TaskStatus.RETRYING,
        ),
        to_status=status,
        reason=reason,
        actor=worker_name,
        detail={"error": str(error)[:2000]} if error else {},
        error_type=type(error).__name__ if error else "",
        error_message=str(error)[:2000] if error else "",
        finished_at=timezone.now(),
        **({"result": {"error_code": code}} if code else {}),
    )


class TaskExpired(Exception):
    """The task's deadline passed."""


class OperatorCancelled(Exception):
    """An operator cancelled the task."""


def task_expire_overdue(*, task: Task, actor: str = "scheduler") -> Task | None:
    """Expire a task that has not started (or is waiting for a retry) past its deadline."""
    ended = task_end_unsuccessfully(
        task=task,
        status=TaskStatus.EXPIRED,
        code="deadline_exceeded",
        error=TaskExpired("the deadline passed before the task could run"),
        actor=actor,
    )
    if ended is not None:
        task_unqueue(task)
    return ended


class EndResult(enum.StrEnum):
    """What asking to end a task did (`task_cancel`, `task_expire`)."""

    CANCELLED = "cancelled"
    EXPIRED = "expired"
    # It was running: its worker stops it within a token or two.
    STOPPING = "stopping"
    # It had ended already (or never existed).
    NOT_ACTIVE = "not active"


def task_unqueue(task: Task) -> None:
    """A task that waited ends: its job off its queue, out of its deployments' line."""
    job_remove(task_id=str(task.id), priority=task.priority)
    capacity_forget(task_id=str(task.id))


def task_cancel(*, task_id: uuid.UUID | str, actor: str) -> EndResult:
    """Cancel a task. Waiting: ended now. Running: its worker stops it within a token or two."""
    task = Task.objects.filter(id=task_id).first()
    if task is None or task.status not in TaskStatus.ACTIVE:
        return EndResult.NOT_ACTIVE
    if task.status == TaskStatus.RUNNING:
        task_request_stop(task_id=str(task.id), reason=StopReason.CANCEL)
        TaskEvent.objects.create(
            task=task,
            from_status=task.status,
            to_status=task.status,
            reason=f"cancel requested by {actor}",
            attempt=task.attempts,
            worker_name=actor,
        )
        return EndResult.STOPPING
    ended = task_end_unsuccessfully(
        task=task,
        status=TaskStatus.CANCELLED,
        code="cancelled",
        error=OperatorCancelled(f"cancelled by {actor}"),
        actor=actor,
    )
    if ended is None:
        return task_cancel(task_id=task_id, actor=actor)  # it started meanwhile: stop it
    task_unqueue(task)
    return EndResult.CANCELLED


def task_reprioritize(
    *, task_id: uuid.UUID | str, priority: str, reason: str, actor: str
) -> Task | None:
    """Move a waiting task to another queue (aging, or an operator). None if it is not waiting."""
    with transaction.atomic():
        task = (
            Task.objects.select_for_update()
            .filter(id=task_id, status__in=TaskStatus.WAITING)
            .first()
        )
        if task is None or task.priority == priority:
            return task
        old = task.priority
        task.priority = priority
        task.priority_reason = reason[:255]
        task.promoted_at = timezone.now()
        task.save(update_fields=["priority", "priority_reason", "promoted_at"])
        TaskEvent.objects.create(
            task=task,
            from_status=task.status,
            to_status=task.status,
            reason=reason[:255],
            attempt=task.attempts,
            worker_name=actor,
            detail={"from": old, "to": priority},
        )
        waiting_for_retry = task.status == TaskStatus.RETRYING
    change = "aged" if actor == "scheduler" else "operator"
    metric_inc("dp_priority_changes_total", {"change": change, "to": priority})
    if not waiting_for_retry and not capacity_move(task_id=str(task.id), priority=priority):
        # A delayed (deferred) task moves now too: promotion means "stop waiting".
        job_remove(task_id=str(task.id), priority=old)
        task_push(task)
    return task


@transaction.atomic
def task_requeue(
    *, task_id: uuid.UUID | str, actor: str, priority: str | None = None
) -> Task | None:
    """Send a finished, unsuccessful task (a dead letter) back to the queue with a fresh budget of
    attempts, on the same queue or another. None if the task is not in such a state."""
    task = (
        Task.objects.select_for_update()
        .filter(
            id=task_id,
            status__in=(
                TaskStatus.DEAD,
                TaskStatus.FAILED,
                TaskStatus.EXPIRED,
                TaskStatus.CANCELLED,
            ),
        )
        .first()
    )
    if task is None:
        return None
    from_status = task.status
    budget = task.app.max_attempts if task.app and task.app.max_attempts else None
    task.status = TaskStatus.QUEUED
    task.priority = priority or task.priority
    task.max_attempts = task.attempts + (budget or settings.PLATFORM["TASK_MAX_ATTEMPTS"])
    task.enqueued_at = timezone.now()
    task.promoted_at = None
    task.started_at = task.finished_at = task.not_before = None
    task.deadline_at = None  # the old deadline has passed; an operator's retry has none
    task.save()
    TaskEvent.objects.create(
        task=task,
        from_status=from_status,
        to_status=TaskStatus.QUEUED,
        reason=f"requeued by {actor}",
        attempt=task.attempts,
        worker_name=actor,
        detail={"priority": task.priority, "max_attempts": task.max_attempts},
    )
    kind = task_kind_find(task.kind)
    if kind is not None and kind.on_requeue is not None:
        kind.on_requeue(task)
    # A task stopped while it ran left its stop flag behind: the new run must not obey it.
    task_stop_clear(task_id=str(task.id))
    transaction.on_commit(_pusher(task))
    return task


def task_purge(*, task_id: uuid.UUID | str, actor: str) -> bool:
    """Delete a finished, unsuccessful task and its history (an operator's decision)."""
    deleted, _ = Task.objects.filter(
        id=task_id,
        status__in=TaskStatus.DEAD_LETTER,
    ).delete()
    if deleted:
        logger.warning("task purged", extra={"task_id": str(task_id), "actor": actor})
    return bool(deleted)


def task_wait_for_deployment(
    *,
    task: Task,
    worker_name: str,
    reason: str,
    avoid: str = "",
    payload: dict[str, Any] | None = None,
    push: bool = True,
) -> Task | None:
    """The task started without a deployment to run on (its hold was lost with Redis, or its
    deployment refused it for load): back to `queued`, the attempt not counted (nothing of it
    ran), and back in its deployments' line (apps.scheduling.coordination.capacity), where
    `avoid` (the deployment that refused it) takes it only if no other can. `payload`: the task's
    new payload (what its route reads); `push=False`: the caller pushes it (after letting go of
    the task's lock)."""
    fields: dict[str, Any] = {} if payload is None else {"payload": payload}
    waited = task_transition(
        task_id=task.id,
        from_statuses=(TaskStatus.RUNNING,),
        attempt=task.attempts,
        to_status=TaskStatus.QUEUED,
        reason=reason,
        actor=worker_name,
        attempts=Increment(-1),
        started_at=None,
        worker_name="",
        **fields,
    )
    if waited is not None and push:
        task_push(waited, avoid=avoid)
    return waited


def task_expire(*, task_id: uuid.UUID | str, actor: str) -> EndResult:
    """Expire a task now (an operator's decision). Waiting: ended as expired at once. Running: its
    deadline becomes now and its worker stops it as expired within a token or two."""
    task = Task.objects.filter(id=task_id).first()
    if task is None or task.status not in TaskStatus.ACTIVE:
        return EndResult.NOT_ACTIVE
    if task.status == TaskStatus.RUNNING:
        now = timezone.now()
        if not Task.objects.filter(id=task.id, status=TaskStatus.RUNNING).update(deadline_at=now):
            return task_expire(task_id=task_id, actor=actor)  # it ended or went back meanwhile
        # The worker holds the row it started with: the flag, not the new deadline, tells it.
        task_request_stop(task_id=str(task.id), reason=StopReason.DEADLINE)
        TaskEvent.objects.create(
            task=task,
            from_status=task.status,
            to_status=task.status,
            reason=f"expiry requested by {actor}",
            attempt=task.attempts,
            worker_name=actor,
            detail={"deadline_at": now.isoformat()},
        )
        return EndResult.STOPPING
    ended = task_end_unsuccessfully(
        task=task,
        status=TaskStatus.EXPIRED,
        code="deadline_exceeded",
        error=TaskExpired(f"expired by {actor}"),
        actor=actor,
    )
    if ended is None:
        return task_expire(task_id=task_id, actor=actor)  # it started meanwhile: stop it
    task_unqueue(task)
    return EndResult.EXPIRED


def task_return_to_queue(
    *, task: Task, worker_name: str, reason: str, push: bool = True
) -> Task | None:
    """A stopping worker hands back an attempt it could not finish in its grace period: the task
    is queued again at once, and the attempt does not spend the retry budget (its number still
    counts, so the next attempt knows to take back the text a client already has)."""
    returned = task_transition(
        task_id=task.id,
        from_statuses=(TaskStatus.RUNNING,),
        attempt=task.attempts,
        to_status=TaskStatus.QUEUED,
        reason=reason,
        actor=worker_name,
        max_attempts=Increment(),
        started_at=None,
        worker_name="",
        enqueued_at=timezone.now(),
    )
    if returned is not None and push:
        task_push(returned)
    return returned
