"""Task writes: creation and every status transition, each a guarded UPDATE plus a TaskEvent."""

import logging
import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.applications.models import App
from apps.scheduling.models import Task, TaskEvent, TaskStatus
from apps.scheduling.queues import job_push

logger = logging.getLogger(__name__)


def _time_left_s(deadline_at: datetime | None) -> float | None:
    if deadline_at is None:
        return None
    return (deadline_at - timezone.now()).total_seconds()


def _push_after_commit(task: Task, delay_s: float = 0) -> None:
    task_id, priority, deadline_at = str(task.id), task.priority, task.deadline_at

    def push() -> None:
        try:
            job_push(
                task_id=task_id,
                priority=priority,
                time_left_s=_time_left_s(deadline_at),
                delay_s=delay_s,
            )
        except Exception:
            # The row is committed as queued: the reconciler pushes it again once Redis is back.
            logger.exception("could not push task to Redis", extra={"task_id": task_id})

    transaction.on_commit(push)


@transaction.atomic
def task_create(
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
) -> Task:
    """Record a task as queued and push it to its queue once the transaction commits."""
    now = timezone.now()
    task = Task.objects.create(
        kind=kind,
        app=app,
        end_user=end_user,
        payload=payload or {},
        status=TaskStatus.QUEUED,
        requested_priority=requested_priority,
        priority=priority or requested_priority,
        priority_reason=priority_reason,
        max_attempts=max_attempts or settings.PLATFORM["TASK_MAX_ATTEMPTS"],
        deadline_at=deadline_at,
        enqueued_at=now,
        idempotency_key=idempotency_key,
    )
    TaskEvent.objects.create(
        task=task, from_status="", to_status=TaskStatus.QUEUED, reason="created"
    )
    _push_after_commit(task)
    return task


def task_transition(
    *,
    task_id: uuid.UUID | str,
    from_statuses: tuple[str, ...],
    to_status: str,
    reason: str = "",
    actor: str = "",
    detail: dict[str, Any] | None = None,
    **fields: Any,
) -> Task | None:
    """Move a task between statuses if, and only if, it is in one of `from_statuses` now.

    Returns the updated task, or None when another actor moved it first (the guard lost).
    """
    with transaction.atomic():
        task = Task.objects.select_for_update().filter(id=task_id, status__in=from_statuses).first()
        if task is None:
            return None
        from_status = task.status
        updated = {"status": to_status, **fields}
        Task.objects.filter(id=task.id).update(**updated)
        task.refresh_from_db()
        TaskEvent.objects.create(
            task=task,
            from_status=from_status,
            to_status=to_status,
            reason=reason[:255],
            attempt=task.attempts,
            worker_name=actor,
            detail=detail or {},
        )
        return task


def task_mark_running(*, task_id: str, worker_name: str) -> Task | None:
    return task_transition(
        task_id=task_id,
        from_statuses=(TaskStatus.QUEUED, TaskStatus.RETRYING),
        to_status=TaskStatus.RUNNING,
        reason="started",
        actor=worker_name,
        worker_name=worker_name,
        attempts=F("attempts") + 1,
        started_at=timezone.now(),
    )


def task_mark_succeeded(*, task: Task, result: dict[str, Any], worker_name: str) -> Task | None:
    return task_transition(
        task_id=task.id,
        from_statuses=(TaskStatus.RUNNING,),
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


def task_schedule_retry(*, task: Task, error: Exception, worker_name: str) -> Task | None:
    delay = retry_delay_s(task.attempts)
    retried = task_transition(
        task_id=task.id,
        from_statuses=(TaskStatus.RUNNING,),
        to_status=TaskStatus.RETRYING,
        reason=f"attempt {task.attempts} failed: {type(error).__name__}",
        actor=worker_name,
        detail={"error": str(error)[:2000], "retry_in_s": round(delay, 3)},
        error_type=type(error).__name__,
        error_message=str(error)[:2000],
        not_before=timezone.now() + timedelta(seconds=delay),
    )
    if retried is not None:
        job_push(
            task_id=str(task.id),
            priority=retried.priority,
            time_left_s=_time_left_s(retried.deadline_at),
            delay_s=delay,
        )
    return retried


def task_mark_final_failure(
    *, task: Task, status: str, error: Exception | None, reason: str, worker_name: str = ""
) -> Task | None:
    return task_transition(
        task_id=task.id,
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
    )
