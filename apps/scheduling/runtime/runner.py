"""Running one attempt of a task: lock, guarded start, run, record the outcome.

Three phases. Starting and finishing are short and blocking (PostgreSQL, Redis) and run in a
database thread; the run itself is the kind's coroutine, on the worker's event loop beside the
other attempts (apps.scheduling.runtime.attempts). Every write of the finish is fenced by the
attempt's number: an attempt that another one replaced changes nothing.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone

from apps.core.context import task_id_var
from apps.core.redis import async_client_close
from apps.scheduling.coordination.capacity import Slot, wait_score
from apps.scheduling.coordination.leases import ExclusiveLease, task_lock
from apps.scheduling.coordination.queues import job_timeout_s, task_push
from apps.scheduling.coordination.stops import StopReason, task_stop_reason
from apps.scheduling.models import Task, TaskStatus
from apps.scheduling.runtime.attempts import Attempt, AttemptRuntime
from apps.scheduling.runtime.lanes import LaneGate
from apps.scheduling.runtime.outbox import LogAbandoned
from apps.scheduling.tasks import services
from apps.scheduling.tasks.errors import TaskCancelled, TaskError
from apps.scheduling.tasks.kinds import task_kind_find, task_kind_get

logger = logging.getLogger(__name__)

# A task whose lock someone else still holds (a worker that lost track of it) is tried again
# after this long rather than dropped.
LOCKED_RETRY_S = 2.0
# A task taken without room in its lane (its lane mark was lost with Redis) waits this long.
LANE_RETRY_S = 0.5


class AttemptTimeout(TaskError):
    """The attempt ran past its time limit (TASK_TIMEOUT_S, or the time left to its deadline)."""


@dataclass
class LaneClaim:
    """The lane unit a job holds in this worker ("" for none), released when the job ends."""

    lane: str = ""


@dataclass
class Started:
    task: Task
    lock: ExclusiveLease
    slot: Slot | None
    stop_reason: StopReason | None


@dataclass
class Outcome:
    result: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None


def _take_slot(task: Task) -> tuple[bool, Slot | None]:
    """(may run, slot held). A task whose group has every slot taken may not run: it waits in
    line, without spending an attempt. Unlimited kinds run holding no slot."""
    kind = task_kind_find(task.kind)
    if kind is None or kind.concurrency is None:
        return True, None
    group = kind.concurrency(task)
    if group is None:
        return True, None
    name, limit = group
    slot = Slot(
        name=name, limit=limit, task_id=str(task.id), lease_s=settings.PLATFORM["TASK_LOCK_TTL_S"]
    )
    score = wait_score(
        priority=task.priority,
        enqueued_at_s=(task.enqueued_at or timezone.now()).timestamp(),
    )
    # Bulk work leaves the group's last slots to live work (as a worker's lanes do).
    kept = min(int(settings.PLATFORM["BULK_RESERVED_LANE_UNITS"]), limit - 1) if task.bulk else 0
    return (True, slot) if slot.acquire(score=score, up_to=limit - kept) else (False, None)


def _hand_over(slot: Slot) -> None:
    woken = slot.release()
    if woken is None:
        return
    waiting = Task.objects.filter(id=woken).only("priority", "deadline_at", "lane").first()
    if waiting is not None:
        task_push(waiting)


def _finish_failed(
    task: Task, status: str, code: str, error: BaseException, worker_name: str
) -> None:
    services.task_end_unsuccessfully(
        task=task,
        status=status,
        code=code,
        error=error if isinstance(error, Exception) else Exception(str(error)),
        actor=worker_name,
        attempt=task.attempts,
    )


def _lock_busy(task_id: str) -> None:
    """Another holder has the task's lock. A duplicate job of a running task is dropped; a task
    that waits to run is tried again once that holder lets go, never left without a job."""
    task = Task.objects.filter(id=task_id).only("status", "priority", "deadline_at", "lane").first()
    if task is None or task.status not in TaskStatus.WAITING:
        logger.info("task is already running elsewhere; duplicate job dropped")
        return
    logger.warning("task's lock is held by someone else; trying again shortly")
    task_push(task, delay_s=LOCKED_RETRY_S)


def attempt_start(
    *, task_id: str, worker_name: str, lanes: LaneGate | None = None, claim: LaneClaim | None = None
) -> Started | None:
    """Lock the task and start an attempt; None when it is not to run here now."""
    lock = task_lock(task_id, ttl_s=settings.PLATFORM["TASK_LOCK_TTL_S"])
    if not lock.acquire():
        _lock_busy(task_id)
        return None
    try:
        started = _start_locked(task_id, worker_name, lock, lanes, claim or LaneClaim())
    except BaseException:
        lock.release()
        raise
    if started is None:
        lock.release()
    return started


def _start_locked(
    task_id: str, worker_name: str, lock: ExclusiveLease, lanes: LaneGate | None, claim: LaneClaim
) -> Started | None:
    task = services.task_mark_running(task_id=task_id, worker_name=worker_name)
    if task is None:
        # Perhaps the job came before the commit of the task's row: wait for its creator, then
        # look again (a no-op wait when the task simply is not runnable).
        services.task_await_creation(task_id=task_id)
        task = services.task_mark_running(task_id=task_id, worker_name=worker_name)
    if task is None:
        logger.info("task is not runnable (finished, cancelled, running or never committed)")
        return None
    if task.deadline_passed():
        error = TimeoutError("the deadline passed before the task started")
        _finish_failed(task, TaskStatus.EXPIRED, "deadline_exceeded", error, worker_name)
        return None
    if lanes is not None and task.lane and claim.lane != task.lane:
        # Taken without its lane mark (Redis lost it): room in the lane is needed all the same.
        if not lanes.take(task.lane):
            services.task_wait_for_slot(task=task, worker_name=worker_name)
            task_push(task, delay_s=LANE_RETRY_S)
            return None
        if claim.lane:
            lanes.release(claim.lane)
        claim.lane = task.lane
    may_run, slot = _take_slot(task)
    if not may_run:
        services.task_wait_for_slot(task=task, worker_name=worker_name)
        logger.info("every slot of the task's group is taken; it waits for one")
        return None
    return Started(task, lock, slot, task_stop_reason(task_id=task_id))


async def attempt_run(attempt: Attempt) -> Outcome:
    """Run the kind's attempt on the loop, within the task's time limit."""
    limit_s = job_timeout_s(attempt.task.time_left_s())
    outcome = Outcome()
    try:
        kind = task_kind_get(attempt.task.kind)
        async with asyncio.timeout(limit_s):
            outcome.result = await kind.run(attempt.task, attempt.context)
            await attempt.drain()
    except LogAbandoned:
        attempt.abandon("its lock was taken while it wrote")
    except TimeoutError:
        outcome.error = AttemptTimeout(f"the attempt ran past its {limit_s} s limit")
    except Exception as error:
        outcome.error = error
    if outcome.error is not None:
        try:
            await attempt.drain()  # what it sent before failing goes out before the error
        except Exception:
            logger.warning("could not write an attempt's last events", exc_info=True)
    attempt.finishing = True
    return outcome


def attempt_finish(attempt: Attempt, outcome: Outcome | None) -> None:
    """Record how the attempt ended (fenced by its number), then let go of lock and slot. An
    abandoned attempt leaves the slot alone: the attempt that replaced it holds that slot now
    (a slot's holder is the task). No outcome: the run was cut short (the worker is stopping
    hard), and the watchdog hands the task on once its lock lapses."""
    try:
        if outcome is not None:
            _record(attempt, outcome)
    finally:
        attempt.lock.release()
        if attempt.slot is not None and attempt.context.stop_reason != StopReason.ABANDONED:
            _hand_over(attempt.slot)


def _record(attempt: Attempt, outcome: Outcome) -> None:
    task, context = attempt.task, attempt.context
    worker_name = context.worker_name
    reason = context.stop_reason
    if reason == StopReason.ABANDONED:
        logger.warning("attempt abandoned: another attempt owns the task")
        return
    if reason == StopReason.SHUTDOWN:
        services.task_return_to_queue(
            task=task, worker_name=worker_name, reason="returned: the worker stopped"
        )
        return
    error = outcome.error
    if isinstance(error, TaskCancelled):
        _finish_failed(task, TaskStatus.CANCELLED, "cancelled", error, worker_name)
    elif (
        error is not None and reason == StopReason.DEADLINE
    ):  # an error on the way out of an expired run
        _finish_failed(task, TaskStatus.EXPIRED, "deadline_exceeded", error, worker_name)
    elif error is not None:
        handle_attempt_failure(task, error, worker_name)
    elif reason == StopReason.DEADLINE:
        overrun = TimeoutError("the deadline passed while the task ran")
        _finish_failed(task, TaskStatus.EXPIRED, "deadline_exceeded", overrun, worker_name)
    else:
        done = services.task_mark_succeeded(
            task=task, result=outcome.result, worker_name=worker_name, writes=tuple(context.writes)
        )
        kind = task_kind_get(task.kind)
        if done is not None and kind.on_success is not None:
            kind.on_success(done)
        elif done is None:
            logger.warning("attempt finished after another attempt took over; nothing recorded")


def handle_attempt_failure(task: Task, error: BaseException, worker_name: str) -> None:
    """A failed attempt (`task` as it started: its number is the fence): retried, dead, failed
    or expired."""
    retryable = error.retryable if isinstance(error, TaskError) else True
    code = error.code if isinstance(error, TaskError) else "internal_server_error"
    deadline_passed = task.deadline_passed()
    logger.warning(
        "task attempt failed",
        extra={"attempt": task.attempts, "error": repr(error)[:500], "retryable": retryable},
        exc_info=None if isinstance(error, TaskError) else error,
    )
    if deadline_passed:
        _finish_failed(task, TaskStatus.EXPIRED, "deadline_exceeded", error, worker_name)
    elif not retryable:
        _finish_failed(task, TaskStatus.FAILED, code, error, worker_name)
    elif task.attempts >= task.max_attempts:
        _finish_failed(task, TaskStatus.DEAD, code, error, worker_name)
    else:
        services.task_schedule_retry(
            task=task,
            error=error if isinstance(error, Exception) else Exception(str(error)),
            worker_name=worker_name,
        )


async def task_run(
    runtime: AttemptRuntime,
    *,
    task_id: str,
    lanes: LaneGate | None = None,
    claim: LaneClaim | None = None,
) -> None:
    """One attempt of the task, start to finish. Safe to call twice for the same task: the
    second call does nothing."""
    token = task_id_var.set(task_id)
    try:
        started = await runtime.db(
            attempt_start,
            task_id=task_id,
            worker_name=runtime.worker_name,
            lanes=lanes,
            claim=claim,
        )
        if started is None:
            return
        attempt = Attempt(started.task, started.lock, started.slot, runtime)
        if started.stop_reason is not None:
            attempt.context.stop(started.stop_reason)  # stopped while it was still queued
        if runtime.stopping:
            attempt.context.stop(StopReason.SHUTDOWN)
        runtime.add(attempt)
        outcome: Outcome | None = None
        try:
            outcome = await attempt_run(attempt)
        finally:
            attempt.finishing = True
            try:
                await runtime.db(attempt_finish, attempt, outcome)
            finally:
                runtime.discard(attempt)
    finally:
        task_id_var.reset(token)


async def _execute_once(task_id: str, worker_name: str) -> None:
    runtime = AttemptRuntime(worker_name=worker_name)
    runtime.start()
    try:
        await task_run(runtime, task_id=task_id)
    finally:
        await runtime.close()
        await async_client_close()


def task_execute(*, task_id: str, worker_name: str) -> None:
    """Run one attempt from synchronous code (tests, a plain RQ worker): its own event loop,
    its database work in the calling thread."""
    async_to_sync(_execute_once)(task_id, worker_name)
