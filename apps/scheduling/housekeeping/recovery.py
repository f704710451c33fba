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

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.core.redis import sync_client
from apps.scheduling.coordination.capacity import slot_forget_waiter, slot_wake_next, waiting_keys
from apps.scheduling.coordination.leases import (
    lock_held,
    task_lock,
    task_lock_key,
)
from apps.scheduling.coordination.load_state import load_state_current
from apps.scheduling.coordination.queues import (
    JobCensus,
    delayed_pop_due,
    job_exists_in_queue,
    task_push,
)
from apps.scheduling.models import Task, TaskStatus
from apps.scheduling.runtime.runner import handle_attempt_failure
from apps.scheduling.tasks.errors import WorkerLost
from apps.scheduling.tasks.policy import PROMOTION, aging_limit_s, waiting_since
from apps.scheduling.tasks.services import task_expire_overdue, task_reprioritize

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
    return load_state_current().overloaded and not aged


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


def wake_slot_waiters() -> int:
    """Backstop: slots freed by a lapsed lease (crashed holder) go to the best waiter."""
    woken = 0
    for name in waiting_keys():
        task_id = slot_wake_next(name)
        if task_id is None:
            continue
        task = (
            Task.objects.filter(id=task_id)
            .only("priority", "deadline_at", "status", "lane")
            .first()
        )
        if task is None or task.status != TaskStatus.QUEUED:
            slot_forget_waiter(name, task_id)  # finished or gone: it waits for nothing
            continue
        if not job_exists_in_queue(task_id=task_id, priority=task.priority):
            task_push(task)
            woken += 1
    return woken


def expire_overdue() -> int:
    """Tasks still waiting when their deadline passes end `expired` now, not when a worker frees."""
    overdue = Task.objects.filter(status__in=TaskStatus.WAITING, deadline_at__lt=timezone.now())
    return sum(1 for task in overdue[:500] if task_expire_overdue(task=task) is not None)


def reconcile_lost_jobs() -> int:
    """Re-push queued (or due retrying) tasks that RQ holds no runnable job for: Redis
    restarted, a push failed, or a worker died between taking the job and starting it."""
    grace = timedelta(seconds=settings.PLATFORM["RECONCILE_GRACE_S"])
    now = timezone.now()
    candidates = Task.objects.filter(
        status__in=TaskStatus.WAITING,
        enqueued_at__lt=now - grace,
    ).only("id", "status", "priority", "deadline_at", "not_before", "lane")[:1000]
    pushed = 0
    census = JobCensus()
    for task in candidates:
        if task.status == TaskStatus.RETRYING and task.not_before and task.not_before > now - grace:
            continue
        if census.holds(str(task.id)) or lock_held(str(task.id)):
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


def _recover_orphan(task: Task, ttl_s: float) -> int:
    lock = task_lock(str(task.id), ttl_s=ttl_s)
    if not lock.acquire():
        return 0  # its worker took it back just now
    try:
        logger.warning(
            "running task lost its worker; recovering it",
            extra={"task_id": str(task.id), "worker": task.worker_name},
        )
        handle_attempt_failure(task, WorkerLost(f"worker {task.worker_name} stopped"), "watchdog")
        return 1
    finally:
        lock.release()
