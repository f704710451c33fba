"""Running one attempt of a task: lock, guarded start, run, record the outcome.

Three phases. Starting and finishing are short and blocking (PostgreSQL, Redis) and run in a
database thread; the run itself is the kind's coroutine, on the worker's event loop beside the
other attempts (apps.scheduling.runtime.attempts). Every write of the finish is fenced by the
attempt's number: an attempt that another one replaced changes nothing.

A task whose kind needs a model deployment reaches a worker holding one (the deployment took it
from its line: apps.scheduling.coordination.capacity); the attempt keeps it while it runs and
gives it back the moment the run ends, before its outcome is recorded, so the deployment's next
waiter starts at once.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone

from apps.core.context import task_id_var
from apps.core.metrics import metric_inc
from apps.core.redis import async_client_close, key, sync_client
from apps.scheduling.coordination.capacity import (
    CallOutcome,
    capacity_release,
    capacity_submit,
    grant_of,
)
from apps.scheduling.coordination.leases import ExclusiveLease, task_lock
from apps.scheduling.coordination.queues import job_timeout_s
from apps.scheduling.coordination.stops import StopReason, task_stop_reason
from apps.scheduling.models import Task, TaskStatus
from apps.scheduling.runtime.attempts import Attempt, AttemptRuntime, Held
from apps.scheduling.runtime.outbox import LogAbandoned
from apps.scheduling.tasks import services
from apps.scheduling.tasks.dispatch import task_push, task_route
from apps.scheduling.tasks.errors import Reroute, TaskCancelled, TaskError, WorkerLost
from apps.scheduling.tasks.kinds import task_kind_get

logger = logging.getLogger(__name__)

# A task whose lock someone else still holds (a worker that lost track of it) is tried again
# after this long rather than dropped.
LOCKED_RETRY_S = 2.0


class AttemptTimeout(TaskError):
    """The attempt ran past its time limit (TASK_TIMEOUT_S, or the time left to its deadline)."""


@dataclass
class Started:
    task: Task
    lock: ExclusiveLease
    held: Held
    stop_reason: StopReason | None


@dataclass
class AttemptResult:
    result: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None


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
    task = Task.objects.filter(id=task_id).only(*services.PUSH_FIELDS, "status").first()
    if task is None or task.status not in TaskStatus.WAITING:
        logger.info("task is already running elsewhere; duplicate job dropped")
        return
    logger.warning("task's lock is held by someone else; trying again shortly")
    task_push(task, delay_s=LOCKED_RETRY_S)


def _let_go(task_id: str, held: Held) -> None:
    """Give back a deployment held by an attempt that does not run."""
    if held.deployment:
        capacity_release(task_id=task_id, deployment=held.deployment, outcome=CallOutcome.UNUSED)


def attempt_start(*, task_id: str, worker_name: str, held: Held | None = None) -> Started | None:
    """Lock the task and start an attempt; None when it is not to run here now. `held`: the
    deployment the job came with (read when it was taken)."""
    held = held or Held()
    lock = task_lock(task_id, ttl_s=settings.PLATFORM["TASK_LOCK_TTL_S"])
    if not lock.acquire():
        _lock_busy(task_id)
        return None
    waits: Task | None = None
    try:
        started, waits = _start_locked(task_id, worker_name, lock, held)
    except BaseException:
        lock.release()
        raise
    if started is None:
        lock.release()
        if waits is not None:
            task_push(waits)  # back in its deployments' line, its lock free for who takes it
    return started


def _start_locked(
    task_id: str, worker_name: str, lock: ExclusiveLease, held: Held
) -> tuple[Started | None, Task | None]:
    """(the attempt started, or None; a task sent back to wait for a deployment, to push)."""
    task = services.task_mark_running(
        task_id=task_id, worker_name=worker_name, deployment=held.deployment
    )
    if task is None:
        # Perhaps the job came before the commit of the task's row: wait for its creator, then
        # look again (a no-op wait when the task simply is not runnable).
        services.task_await_creation(task_id=task_id)
        task = services.task_mark_running(
            task_id=task_id, worker_name=worker_name, deployment=held.deployment
        )
    if task is None:
        logger.info("task is not runnable (finished, cancelled, running or never committed)")
        if held.deployment and grant_of(task_id) is not None:
            _let_go(task_id, held)  # ended while it waited on its queue
        return None, None
    if task.deadline_passed():
        _let_go(task_id, held)
        error = TimeoutError("the deadline passed before the task started")
        _finish_failed(task, TaskStatus.EXPIRED, "deadline_exceeded", error, worker_name)
        return None, None
    route = task_route(task) if not held.deployment else None
    if route is not None:
        current = grant_of(task_id)
        if current is None:
            # Its hold was lost (Redis restarted) or it came without one (the reconciler, a
            # plain run): a deployment with room takes it now; otherwise it waits in line, sent
            # there once its lock is free.
            taken = capacity_submit(
                task_id=task_id,
                route=route,
                priority=task.priority,
                arrival_s=(task.enqueued_at or timezone.now()).timestamp(),
                in_place=True,
            )
            if taken is None:
                waits = services.task_wait_for_deployment(
                    task=task,
                    worker_name=worker_name,
                    reason="waiting for a deployment",
                    push=False,
                )
                return None, waits
            current = (taken, route.flow)
        held = Held(*current)
    return Started(task, lock, held, task_stop_reason(task_id=task_id)), None


async def attempt_run(attempt: Attempt) -> AttemptResult:
    """Run the kind's attempt on the loop, within the task's time limit."""
    limit_s = job_timeout_s(attempt.task.time_left_s())
    outcome = AttemptResult()
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


def attempt_finish(attempt: Attempt, outcome: AttemptResult | None) -> None:
    """Give the deployment back, record how the attempt ended (fenced by its number), then let
    go of the lock. An abandoned attempt leaves the deployment alone: the attempt that replaced
    it holds it now (its holder is the task). No outcome: the run was cut short (the worker is
    stopping hard), and the watchdog hands the task on once its lock lapses."""
    resend = None
    try:
        if attempt.held.deployment and attempt.context.stop_reason != StopReason.ABANDONED:
            _release_deployment(attempt, outcome)
        if outcome is not None:
            resend = _record(attempt, outcome)
    finally:
        attempt.lock.release()
    _resend(resend)


def _release_deployment(attempt: Attempt, outcome: AttemptResult | None) -> None:
    error = outcome.error if outcome is not None else None
    if outcome is None:
        call = CallOutcome.UNUSED
    elif isinstance(error, TaskError) and error.deployment_outcome is not None:
        call = error.deployment_outcome
    else:
        call = CallOutcome.OK  # the deployment answered (or was never the problem)
    result = outcome.result if outcome is not None else {}
    tokens = int(result.get("prompt_tokens") or 0) + int(result.get("completion_tokens") or 0)
    if call not in (CallOutcome.OK, CallOutcome.UNUSED):
        metric_inc(
            "dp_deployment_failures_total",
            {"deployment": attempt.held.deployment, "outcome": call.value},
        )
    try:
        capacity_release(
            task_id=attempt.task_id,
            deployment=attempt.held.deployment,
            outcome=call,
            retry_after_s=getattr(error, "retry_after_s", None),
            tokens=tokens,
            reason=str(error)[:200] if call not in (CallOutcome.OK, CallOutcome.UNUSED) else "",
        )
    except Exception:
        # Its hold lapses by itself within a lease TTL.
        logger.exception("could not give the deployment back", extra={"task_id": attempt.task_id})


@dataclass(frozen=True)
class Resend:
    """A task to push once its lock is free (so whoever takes it at once finds the lock free),
    and the deployment it should avoid."""

    task: Task
    avoid: str = ""


def _resend(resend: Resend | None) -> None:
    if resend is not None:
        task_push(resend.task, avoid=resend.avoid)


def _record(attempt: Attempt, outcome: AttemptResult) -> Resend | None:
    task, context = attempt.task, attempt.context
    worker_name = context.worker_name
    reason = context.stop_reason
    if reason == StopReason.ABANDONED:
        logger.warning("attempt abandoned: another attempt owns the task")
        return None
    if reason == StopReason.SHUTDOWN:
        returned = services.task_return_to_queue(
            task=task, worker_name=worker_name, reason="returned: the worker stopped", push=False
        )
        return Resend(returned) if returned is not None else None
    error = outcome.error
    if isinstance(error, TaskCancelled):
        _finish_failed(task, TaskStatus.CANCELLED, "cancelled", error, worker_name)
    elif error is not None and reason == StopReason.DEADLINE:  # an error on the way out
        _finish_failed(task, TaskStatus.EXPIRED, "deadline_exceeded", error, worker_name)
    elif error is not None:
        return handle_attempt_failure(task, error, worker_name, attempt.held.deployment)
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
    return None


def _refused_again(task: Task) -> bool:
    """Count one more refusal of the task; True while it may still wait for free."""
    counter = key("task", str(task.id), "refusals")
    pipe = sync_client().pipeline(transaction=False)
    pipe.incr(counter)
    pipe.expire(counter, 24 * 3600)
    return int(pipe.execute()[0]) <= int(settings.PLATFORM["DEPLOYMENT_REFUSALS_FREE"])


def handle_attempt_failure(
    task: Task, error: BaseException, worker_name: str, deployment: str = ""
) -> Resend | None:
    """A failed attempt (`task` as it started: its number is the fence): waits again, retried,
    dead, failed or expired. `deployment`: the one it held (a retry avoids it). Returns the task
    to push once the caller let go of its lock (`resend_after_unlock`)."""
    retryable = error.retryable if isinstance(error, TaskError) else True
    code = error.code if isinstance(error, TaskError) else "internal_server_error"
    deadline_passed = task.deadline_passed()
    logger.warning(
        "task attempt failed",
        extra={
            "attempt": task.attempts,
            "error": repr(error)[:500],
            "retryable": retryable,
            "deployment": deployment,
        },
        exc_info=None if isinstance(error, TaskError) else error,
    )
    # Refused for load, or the server unreachable before it began: nothing of the task ran.
    refused = isinstance(error, TaskError) and (
        error.deployment_outcome is CallOutcome.REFUSED
        or (error.deployment_outcome is CallOutcome.UNREACHABLE and not error.output_started)
    )
    waits: Task | None = None
    if deadline_passed:
        _finish_failed(task, TaskStatus.EXPIRED, "deadline_exceeded", error, worker_name)
    elif isinstance(error, Reroute):
        waits = services.task_wait_for_deployment(
            task=task,
            worker_name=worker_name,
            reason=f"rerouted: {error}",
            payload=error.payload,
            push=False,
        )
    elif refused and _refused_again(task):
        # The server is full (or away): the deployment cools down, and the task waits for its
        # next turn (elsewhere, if another deployment can take it); a client never sees it.
        waits = services.task_wait_for_deployment(
            task=task,
            worker_name=worker_name,
            reason=f"refused by {deployment}",
            avoid=deployment,
            push=False,
        )
    elif not retryable:
        _finish_failed(task, TaskStatus.FAILED, code, error, worker_name)
    elif task.attempts >= task.max_attempts:
        _finish_failed(task, TaskStatus.DEAD, code, error, worker_name)
    else:
        # The backoff spares a failing server; another deployment takes the answer at once, and
        # an answer whose worker died goes on at once (nothing was wrong with the model).
        at_once = isinstance(error, WorkerLost) or (
            bool(deployment) and _has_other(task, deployment)
        )
        retried = services.task_schedule_retry(
            task=task,
            error=error if isinstance(error, Exception) else Exception(str(error)),
            worker_name=worker_name,
            delay_s=0.0 if at_once else None,
            avoid=deployment,
            push=False,
        )
        waits = retried if at_once else None
    return Resend(waits, avoid=deployment) if waits is not None else None


def resend_after_unlock(resend: Resend | None) -> None:
    """Push what handle_attempt_failure sent back, now that its lock is free."""
    _resend(resend)


def _has_other(task: Task, deployment: str) -> bool:
    route = task_route(task)
    if route is None:
        return False
    return any(target.name != deployment for target in (*route.primaries, *route.fallbacks))


async def task_run(
    runtime: AttemptRuntime,
    *,
    task_id: str,
    held: Held | None = None,
) -> None:
    """One attempt of the task, start to finish. Safe to call twice for the same task: the
    second call does nothing."""
    token = task_id_var.set(task_id)
    try:
        started = await runtime.db(
            attempt_start,
            task_id=task_id,
            worker_name=runtime.worker_name,
            held=held,
        )
        if started is None:
            return
        attempt = Attempt(started.task, started.lock, started.held, runtime)
        if started.stop_reason is not None:
            attempt.context.stop(started.stop_reason)  # stopped while it was still queued
        if runtime.stopping:
            attempt.context.stop(StopReason.SHUTDOWN)
        runtime.add(attempt)
        outcome: AttemptResult | None = None
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
