"""The housekeeping's chores for tasks (run by the lease holder, apps.scheduling.housekeeping.
maintenance): delayed tasks due, deadlines, aging, and recovery of what Redis or a dead worker
lost.

- moves delayed tasks whose time has come onto their queue (retries, work deferred under load);
- expires waiting tasks past their deadline, and promotes tasks that waited too long (aging);
- reconciler: pushes again tasks that PostgreSQL holds as queued but Redis lost;
- watchdog: hands running tasks whose worker died (lock lapsed) back to the queue.
"""

import logging
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.core.redis import sync_client
from apps.scheduling.coordination.capacity import capacity_dispatch_all
from apps.scheduling.coordination.leases import (
    lock_held,
    task_lock,
    task_lock_key,
)
from apps.scheduling.coordination.load_state import load_state_current
from apps.scheduling.coordination.queues import JobCensus, delayed_pop_due
from apps.scheduling.models import Task, TaskStatus
from apps.scheduling.runtime.runner import handle_attempt_failure, resend_after_unlock
from apps.scheduling.tasks.dispatch import task_over_share, task_push
from apps.scheduling.tasks.errors import WorkerLost
from apps.scheduling.tasks.policy import PROMOTION, aging_limit_s, waiting_since
from apps.scheduling.tasks.services import PUSH_FIELDS, task_expire_overdue, task_reprioritize

logger = logging.getLogger(__name__)


def push_due_delayed() -> int:
    """Queue the delayed tasks whose time has come: retries after their backoff, and `low` work
    deferred under load (deferred again while the load lasts, unless it has waited too long)."""
    pushed = 0
    for task_id in delayed_pop_due():
        task = Task.objects.filter(id=task_id, status__in=TaskStatus.WAITING).first()
        if task is None:
            continue
        if task.status == TaskStatus.QUEUED and _still_deferred(task):
            task_push(task, delay_s=float(settings.PLATFORM["DEFER_LOW_S"]))
            continue
        task_push(task)
        pushed += 1
    return pushed


def _still_deferred(task: Task) -> bool:
    limit = aging_limit_s(task.priority)
    waited = timezone.now() - waiting_since(
        enqueued_at=task.enqueued_at, promoted_at=task.promoted_at
    )
    aged = limit is not None and waited.total_seconds() >= limit
    return load_state_current().overloaded and not aged and task_over_share(task)


def promote_aged() -> int:
    """Aging: a task that waited longer than its class's limit moves up one class."""
    promoted = 0
    now = timezone.now()
    for priority, higher in PROMOTION.items():
        limit = aging_limit_s(priority)
        if limit is None:
            continue
        cutoff = now - timedelta(seconds=limit)
        # Bulk work waits for room by design, within its own deadline: it is never aged.
        waiting = Task.objects.filter(
            status=TaskStatus.QUEUED, priority=priority, bulk=False
        ).filter(Q(promoted_at__lt=cutoff) | Q(promoted_at__isnull=True, enqueued_at__lt=cutoff))
        for task in waiting.only("id")[:500]:
            reason = f"aged: waited over {limit:g} s in {priority}"
            if task_reprioritize(
                task_id=task.id, priority=higher, reason=reason, actor="scheduler"
            ):
                promoted += 1
    return promoted


def dispatch_deployments() -> int:
    """Backstop: every deployment takes the waiters it has room for (holds that lapsed with a
    crashed worker, cooldowns that ended, per-minute limits that freed)."""
    return len(capacity_dispatch_all())


def expire_overdue() -> int:
    """Tasks still waiting when their deadline passes end `expired` now, not when a worker frees."""
    overdue = Task.objects.filter(status__in=TaskStatus.WAITING, deadline_at__lt=timezone.now())
    return sum(1 for task in overdue[:500] if task_expire_overdue(task=task) is not None)


# Where the reconciler's last round ended (arrival, id): each round looks at the next page of
# waiting tasks, so every one is looked at in turn however many wait.
_reconcile_after: dict[str, Any] = {}
RECONCILE_PAGE = 1000


def reconcile_lost_jobs() -> int:
    """Re-push queued (or due retrying) tasks that nothing in Redis holds a runnable job for:
    Redis restarted, a push failed, or a worker died between taking the job and starting it."""
    grace = timedelta(seconds=settings.PLATFORM["RECONCILE_GRACE_S"])
    now = timezone.now()
    waiting = Task.objects.filter(status__in=TaskStatus.WAITING, enqueued_at__lt=now - grace)
    after = _reconcile_after.get("at")
    if after is not None:
        at, task_id = after
        waiting = waiting.filter(Q(enqueued_at__gt=at) | Q(enqueued_at=at, id__gt=task_id))
    candidates = list(
        waiting.order_by("enqueued_at", "id").only(*PUSH_FIELDS, "status", "not_before")[
            :RECONCILE_PAGE
        ]
    )
    if len(candidates) < RECONCILE_PAGE:
        _reconcile_after.clear()  # the end: the next round starts again from the oldest
    else:
        _reconcile_after["at"] = (candidates[-1].enqueued_at, candidates[-1].id)
    due = [
        task
        for task in candidates
        if not (
            task.status == TaskStatus.RETRYING and task.not_before and task.not_before > now - grace
        )
    ]
    held = JobCensus().held([str(task.id) for task in due])
    pushed = 0
    for task in due:
        if str(task.id) in held or lock_held(str(task.id)):
            continue
        logger.warning(
            "task had no job in Redis; pushing it again", extra={"task_id": str(task.id)}
        )
        task_push(task)
        pushed += 1
    return pushed


# Running tasks found without a lock, and since when (monotonic seconds), in this process; and
# when it last looked (a process that lost the maintenance lease and got it back starts afresh).
_lockless_since: dict[str, float] = {}
_last_look = {"at": 0.0}
WATCHDOG_PAGE = 1000


def recover_orphaned_running() -> int:
    """Running tasks whose lock lapsed lost their worker: count the attempt as failed.

    A lock can also vanish while its worker is alive (Redis restarted or was flushed); that
    worker takes it back at its next event or renewal, within a third of the lock's TTL. So a
    task is handed over only once its lock has stayed missing for longer than that, and the
    watchdog holds the lock itself while it does, so that a worker taking its lock back at that
    moment either wins (and the task stays its own) or finds it taken (and abandons). Every
    running task is looked at, a page at a time (workers run hundreds each).
    """
    ttl_s = float(settings.PLATFORM["TASK_LOCK_TTL_S"])
    patience_s = ttl_s / 3 + 1.0
    now = time.monotonic()
    if now - _last_look["at"] > 2 * patience_s + 10:
        _lockless_since.clear()  # not looked for a while: what was seen then says nothing now
    _last_look["at"] = now
    started_before = timezone.now() - timedelta(seconds=ttl_s)
    running = Task.objects.filter(status=TaskStatus.RUNNING, started_at__lt=started_before)
    lockless: set[str] = set()
    recovered = 0
    after = None
    while True:
        page = running.order_by("id") if after is None else running.filter(id__gt=after)
        tasks = list(page.order_by("id")[:WATCHDOG_PAGE])
        if not tasks:
            break
        after = tasks[-1].id
        pipe = sync_client().pipeline(transaction=False)
        for task in tasks:
            pipe.exists(task_lock_key(str(task.id)))
        for task, held in zip(tasks, pipe.execute(), strict=True):
            if held:
                continue
            task_id = str(task.id)
            lockless.add(task_id)
            if now - _lockless_since.setdefault(task_id, now) >= patience_s:
                recovered += _recover_orphan(task, ttl_s)
    for task_id in set(_lockless_since) - lockless:
        del _lockless_since[task_id]
    return recovered


def worker_lost(*, worker_name: str) -> int:
    """Hand on at once every task a worker was running when it died (the pool saw its process
    end): each attempt counts as failed and the task goes on elsewhere, without waiting for
    its lock to lapse. Fenced as ever: the attempt is ended by its number first, so a task
    another worker took meanwhile is left alone, and only then is the dead attempt's lock
    let go of. Returns how many were handed on."""
    running = Task.objects.filter(status=TaskStatus.RUNNING, worker_name=worker_name)
    handed = 0
    for task in running.order_by("id")[:WATCHDOG_PAGE]:
        lost = WorkerLost(f"worker {worker_name} died")
        resend = handle_attempt_failure(task, lost, "pool")
        ended = Task.objects.filter(id=task.id, attempts=task.attempts).exclude(
            status=TaskStatus.RUNNING
        )
        if not ended.exists():
            continue  # another attempt has it now: its lock is its own
        sync_client().delete(task_lock_key(str(task.id)))
        resend_after_unlock(resend)
        handed += 1
    if handed:
        logger.warning(
            "a worker died; its tasks were handed on",
            extra={"worker": worker_name, "tasks": handed},
        )
    return handed


def _recover_orphan(task: Task, ttl_s: float) -> int:
    lock = task_lock(str(task.id), ttl_s=ttl_s)
    if not lock.acquire():
        return 0  # its worker took it back just now
    try:
        logger.warning(
            "running task lost its worker; recovering it",
            extra={"task_id": str(task.id), "worker": task.worker_name},
        )
        lost = WorkerLost(f"worker {task.worker_name} stopped")
        resend = handle_attempt_failure(task, lost, "watchdog")
    finally:
        lock.release()
    resend_after_unlock(resend)
    return 1
