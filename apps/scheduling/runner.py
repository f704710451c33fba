"""Running one attempt of a task inside a worker: lock, guarded start, run, record the outcome."""

import logging
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from apps.core.context import task_id_var
from apps.scheduling import services
from apps.scheduling.control import task_stop_reason
from apps.scheduling.errors import TaskCancelled, TaskError
from apps.scheduling.kinds import task_kind_find, task_kind_get
from apps.scheduling.locks import TaskLock
from apps.scheduling.models import Task, TaskStatus
from apps.scheduling.queues import job_push
from apps.scheduling.slots import Slot, wait_score

logger = logging.getLogger(__name__)

# Checking Redis for a stop flag on every token would add a round trip per token; this often is
# enough to stop "within a token or two" at the built-in model's ~100 tokens/s.
STOP_CHECK_INTERVAL_S = 0.02


@dataclass
class WorkerRunContext:
    task: Task
    worker_name: str
    attempt: int
    _last_check: float = field(default=0.0)
    _stop_reason: str | None = field(default=None)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if self._stop_reason is None and now - self._last_check >= STOP_CHECK_INTERVAL_S:
            self._last_check = now
            self._stop_reason = task_stop_reason(task_id=str(self.task.id))
            time_left = self.time_left_s()
            if self._stop_reason is None and time_left is not None and time_left <= 0:
                # A running task cannot outlive its deadline.
                self._stop_reason = "deadline"
        return self._stop_reason is not None

    @property
    def stop_reason(self) -> str | None:
        """`stop` (the end user's: keep the partial answer), `cancel` (an operator's) or
        `deadline` (the task's time window closed, or an operator expired it: the flag carries
        it, because this context holds the row as it was when the task started)."""
        return self._stop_reason

    def time_left_s(self) -> float | None:
        if self.task.deadline_at is None:
            return None
        return (self.task.deadline_at - timezone.now()).total_seconds()


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
        enqueued_at_s=(task.enqueued_at.timestamp() if task.enqueued_at else time.time()),
    )
    return (True, slot) if slot.acquire(score=score) else (False, None)


def _hand_over(slot: Slot) -> None:
    woken = slot.release()
    if woken is None:
        return
    waiting = Task.objects.filter(id=woken).only("priority", "deadline_at").first()
    if waiting is not None:
        time_left = (
            (waiting.deadline_at - timezone.now()).total_seconds() if waiting.deadline_at else None
        )
        job_push(task_id=woken, priority=waiting.priority, time_left_s=time_left)


class _LockHeartbeat(threading.Thread):
    """Keeps the task's lock (and slot) alive while the task runs; if the process dies, they lapse
    within their TTL and the watchdog hands the task to another worker."""

    def __init__(self, lock: TaskLock, slot: Slot | None = None) -> None:
        super().__init__(name="task-lock-heartbeat", daemon=True)
        self.lock = lock
        self.slot = slot
        self.stopped = threading.Event()

    def run(self) -> None:
        interval = self.lock.ttl_ms / 1000 / 3
        while not self.stopped.wait(interval):
            try:
                if not self.lock.extend():
                    logger.error("task lock was lost while the task ran")
                if self.slot is not None:
                    self.slot.renew()
            except Exception:
                logger.exception("could not renew the task lock")

    def stop(self) -> None:
        self.stopped.set()


def _finish_failed(task: Task, status: str, code: str, error: Exception, worker_name: str) -> None:
    services.task_end_unsuccessfully(
        task=task, status=status, code=code, error=error, actor=worker_name
    )


def task_execute(*, task_id: str, worker_name: str) -> None:
    """Run one attempt. Safe to call twice for the same task: the second call does nothing."""
    token = task_id_var.set(task_id)
    try:
        lock = TaskLock(task_id, ttl_s=settings.PLATFORM["TASK_LOCK_TTL_S"])
        if not lock.acquire():
            logger.warning("task is already running elsewhere; duplicate job dropped")
            return
        heartbeat = _LockHeartbeat(lock)
        heartbeat.start()
        try:
            heartbeat.slot = _execute_locked(task_id, worker_name, heartbeat)
        finally:
            heartbeat.stop()
            lock.release()
            if heartbeat.slot is not None:
                _hand_over(heartbeat.slot)
    finally:
        task_id_var.reset(token)


def _execute_locked(task_id: str, worker_name: str, heartbeat: "_LockHeartbeat") -> Slot | None:
    """Start, run and record one attempt; returns the concurrency slot it held, if any."""
    task = services.task_mark_running(task_id=task_id, worker_name=worker_name)
    if task is None:
        # Perhaps the job came before the commit of the task's row: wait for its creator, then
        # look again (a no-op wait when the task simply is not runnable).
        services.task_await_creation(task_id=task_id)
        task = services.task_mark_running(task_id=task_id, worker_name=worker_name)
    if task is None:
        logger.info("task is not runnable (finished, cancelled, running or never committed)")
        return None
    may_run, slot = _take_slot(task)
    if not may_run:
        services.task_wait_for_slot(task=task, worker_name=worker_name)
        logger.info("every slot of the task's group is taken; it waits for one")
        return None
    heartbeat.slot = slot
    _run_started(task, worker_name)
    return slot


def _run_started(task: Task, worker_name: str) -> None:
    if task.deadline_at is not None and task.deadline_at <= timezone.now():
        _finish_failed(
            task,
            TaskStatus.EXPIRED,
            "deadline_exceeded",
            TimeoutError("the deadline passed before the task started"),
            worker_name,
        )
        return
    kind = task_kind_get(task.kind)
    context = WorkerRunContext(task=task, worker_name=worker_name, attempt=task.attempts)
    try:
        result = kind.run(task, context)
    except TaskCancelled as error:
        _finish_failed(task, TaskStatus.CANCELLED, "cancelled", error, worker_name)
    except Exception as error:
        if context.stop_reason == "deadline":  # an error on the way out of an expired run
            _finish_failed(task, TaskStatus.EXPIRED, "deadline_exceeded", error, worker_name)
        else:
            handle_attempt_failure(task, error, worker_name)
    else:
        if context.stop_reason == "deadline":
            overrun = TimeoutError("the deadline passed while the task ran")
            _finish_failed(task, TaskStatus.EXPIRED, "deadline_exceeded", overrun, worker_name)
            return
        done = services.task_mark_succeeded(task=task, result=result, worker_name=worker_name)
        if done is not None and kind.on_success is not None:
            kind.on_success(done)


def handle_attempt_failure(task: Task, error: Exception, worker_name: str) -> None:
    retryable = error.retryable if isinstance(error, TaskError) else True
    code = error.code if isinstance(error, TaskError) else "internal_server_error"
    deadline_passed = task.deadline_at is not None and task.deadline_at <= timezone.now()
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
        services.task_schedule_retry(task=task, error=error, worker_name=worker_name)
