"""A batch on its way, moved by the scheduler's housekeeping (one process at a time):

- its requests are released to the queue in turn: all batches together keep at most
  BATCHES["QUEUED_MAX"] of them queued, shared between the apps, then within an app between its
  batches, oldest first. Held back in PostgreSQL, a 50,000-request batch never fills the
  queues: the load monitor, load shedding and live requests queued behind it see a few dozen
  jobs, not the whole batch;
- the request counts are refreshed;
- a batch whose requests have all ended, whose window has closed (the rest expire) or that was
  cancelled (the rest are cancelled) goes to `finalizing`, and work that writes its files is
  queued (apps.batches.output).

Each round's work is bounded whatever the number of open batches (a bounded number of apps
released to, of batches moved on), so the same housekeeping thread keeps pushing every app's
retries and recovering tasks on time.
"""

import logging
import math
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from apps.batches.models import Batch, BatchLine, BatchStatus
from apps.conversations.models import Message, MessageStatus
from apps.core.priorities import Priority
from apps.scheduling.models import Task, TaskEvent, TaskStatus
from apps.scheduling.tasks.services import (
    task_cancel,
    task_create,
    task_expire,
    tasks_release_held,
)

logger = logging.getLogger(__name__)

FINALIZE_KIND = "batch_finalize"
FAILED_STATUSES = ("failed", "dead", "expired", "cancelled")
# How a request still waiting ends when its batch does (and what its message then says).
LINE_ENDINGS = {
    BatchStatus.EXPIRED: (
        TaskStatus.EXPIRED,
        "This request could not be executed before the batch's completion window expired.",
    ),
    BatchStatus.CANCELLED: (TaskStatus.CANCELLED, "This request was cancelled with its batch."),
}


# Where the last round's turn ended among the apps with batches in progress: the next round
# starts after it (the housekeeping is one process at a time; a new one starts from the top).
_release_turn = {"after": ""}


def _apps_in_turn(app_ids: list[str], count: int) -> list[str]:
    """`count` of the apps (sorted), starting after the one the last round ended with."""
    start = next((i for i, app_id in enumerate(app_ids) if app_id > _release_turn["after"]), 0)
    turn = (app_ids[start:] + app_ids[:start])[:count]
    if turn:
        _release_turn["after"] = turn[-1]
    return turn


def batches_release() -> int:
    """Release the next requests of the batches in progress while the queue has room for them;
    returns how many were released.

    The room is shared between apps first (at most RELEASE_APPS_PER_ROUND of them a round, in
    turn), then within an app oldest batch first: an app with many batches gets an app's share,
    not a share per batch, and a round's work stays bounded whatever the number of batches."""
    room = (
        int(settings.BATCHES["QUEUED_MAX"])
        - Task.objects.filter(bulk=True, status=TaskStatus.QUEUED).count()
    )
    if room <= 0:
        return 0
    app_ids = sorted(
        str(app_id)
        for app_id in Batch.objects.filter(status=BatchStatus.IN_PROGRESS)
        .values_list("app_id", flat=True)
        .distinct()
    )
    per_round = min(room, int(settings.BATCHES["RELEASE_APPS_PER_ROUND"]))
    turn = _apps_in_turn(app_ids, per_round)
    released = 0
    for index, app_id in enumerate(turn):
        share = math.ceil((room - released) / (len(turn) - index))
        if share <= 0:
            break
        released += _app_release(app_id, share)
    return released


def _app_release(app_id: str, share: int) -> int:
    """Up to `share` held requests of the app's batches in progress, oldest batch first."""
    released = 0
    batches = (
        Batch.objects.filter(app_id=app_id, status=BatchStatus.IN_PROGRESS)
        .order_by("created_at")
        .only("id", "released_through")
    )
    for batch in batches[: max(1, share)]:
        waiting = list(
            BatchLine.objects.filter(
                batch=batch,
                number__gt=batch.released_through,
                task__status=TaskStatus.PENDING,
            )
            .order_by("number")
            .values_list("number", "task_id")[: share - released]
        )
        if not waiting:
            continue
        released += tasks_release_held(
            task_ids=[task_id for _, task_id in waiting], reason=f"its turn in batch {batch.id}"
        )
        Batch.objects.filter(id=batch.id).update(released_through=waiting[-1][0])
        if released >= share:
            break
    return released


def line_counts(batch: Batch) -> dict[str, int]:
    """OpenAI's request counts: every line; those answered; those that failed (invalid lines
    included) or ended without an answer."""
    counts: dict[str, Any] = BatchLine.objects.filter(batch=batch).aggregate(
        total=Count("id"),
        completed=Count("id", filter=Q(task__status=TaskStatus.SUCCEEDED)),
        failed=Count("id", filter=Q(error__isnull=False) | Q(task__status__in=FAILED_STATUSES)),
    )
    return {name: int(value or 0) for name, value in counts.items()}


def _counts_store(batch: Batch) -> dict[str, int]:
    counts = line_counts(batch)
    Batch.objects.filter(id=batch.id).update(
        request_total=counts["total"],
        request_completed=counts["completed"],
        request_failed=counts["failed"],
    )
    return counts


def _active_lines(batch: Batch) -> Any:
    return Task.objects.filter(batch_lines__batch=batch, status__in=TaskStatus.ACTIVE)


@transaction.atomic
def _end_held(batch: Batch, ending: str) -> int:
    """End the batch's requests still held back (never queued), in bulk, as `ending` says."""
    status, why = LINE_ENDINGS[BatchStatus(ending)]
    now = timezone.now()
    held = list(
        Task.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(batch_lines__batch=batch, status=TaskStatus.PENDING)
        .values_list("id", flat=True)
    )
    if not held:
        return 0
    Task.objects.filter(id__in=held, status=TaskStatus.PENDING).update(
        status=status, finished_at=now, error_type="batch", error_message=why
    )
    TaskEvent.objects.bulk_create(
        TaskEvent(task_id=task_id, from_status=TaskStatus.PENDING, to_status=status, reason=why)
        for task_id in held
    )
    Message.objects.filter(task_id__in=held).update(status=MessageStatus.ERROR, error=why)
    return len(held)


def _end_lines(batch: Batch, ending: str) -> None:
    """End every request of the batch that has not ended: the held ones in bulk, the queued or
    running ones (at most the queue's share and what workers run) one by one."""
    _end_held(batch, ending)
    for task_id in _active_lines(batch).values_list("id", flat=True):
        if ending == BatchStatus.EXPIRED:
            task_expire(task_id=task_id, actor=f"batch {batch.id} expired")
        else:
            task_cancel(task_id=task_id, actor=f"batch {batch.id} cancelled")


def _to_finalizing(batch: Batch, ending: str, from_status: str) -> None:
    moved = Batch.objects.filter(id=batch.id, status=from_status).update(
        status=BatchStatus.FINALIZING, ending=ending, finalizing_at=timezone.now()
    )
    if moved:
        _finalize_queue(batch)


def _finalize_queue(batch: Batch) -> None:
    task = task_create(
        kind=FINALIZE_KIND,
        app=batch.app,
        payload={"batch_id": str(batch.id)},
        requested_priority=Priority.LOW,
    )
    Batch.objects.filter(id=batch.id).update(finalize_task=task)


def _advance_one(batch: Batch, now: Any) -> None:
    if batch.status == BatchStatus.VALIDATING:
        expand = batch.expand_task
        if expand is not None and expand.status in TaskStatus.DEAD_LETTER:
            Batch.objects.filter(id=batch.id, status=BatchStatus.VALIDATING).update(
                status=BatchStatus.FAILED,
                failed_at=now,
                errors=[{"code": "validation_failed", "message": expand.error_message[:500]}],
            )
    elif batch.status == BatchStatus.IN_PROGRESS:
        _counts_store(batch)
        if now >= batch.expires_at:
            _end_lines(batch, BatchStatus.EXPIRED)
            _to_finalizing(batch, BatchStatus.EXPIRED, BatchStatus.IN_PROGRESS)
        elif not _active_lines(batch).exists():
            _to_finalizing(batch, BatchStatus.COMPLETED, BatchStatus.IN_PROGRESS)
    elif batch.status == BatchStatus.CANCELLING:
        _end_lines(batch, BatchStatus.CANCELLED)
        expand = batch.expand_task
        if not _active_lines(batch).exists() and (
            expand is None or expand.status in TaskStatus.FINAL
        ):
            _counts_store(batch)
            _to_finalizing(batch, BatchStatus.CANCELLED, BatchStatus.CANCELLING)
    elif batch.status == BatchStatus.FINALIZING:
        finalize = batch.finalize_task
        if finalize is None:
            _finalize_queue(batch)  # its task was lost (purged): written from the start
        elif finalize.status in TaskStatus.DEAD_LETTER:
            why = finalize.error_message[:500] or finalize.status
            Batch.objects.filter(id=batch.id, status=BatchStatus.FINALIZING).update(
                status=BatchStatus.FAILED,
                failed_at=now,
                errors=[{"code": "finalizing_failed", "message": f"The output files: {why}"}],
            )


def batches_advance() -> None:
    """Move open batches on (see the module docstring): at most ADVANCE_PER_ROUND of them, those
    moved on least recently first, so a round's work is bounded and every batch has its turn."""
    now = timezone.now()
    open_batches = (
        Batch.objects.filter(status__in=BatchStatus.OPEN)
        .select_related("app", "expand_task", "finalize_task")
        .order_by(F("advanced_at").asc(nulls_first=True), "created_at")
    )
    taken = list(open_batches[: int(settings.BATCHES["ADVANCE_PER_ROUND"])])
    if not taken:
        return
    Batch.objects.filter(id__in=[batch.id for batch in taken]).update(advanced_at=now)
    for batch in taken:
        try:
            _advance_one(batch, now)
        except Exception:
            logger.exception("batch housekeeping failed", extra={"batch_id": str(batch.id)})
