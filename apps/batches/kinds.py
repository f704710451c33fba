"""The batch's own work, as task kinds (reading its input, writing its files), and the chores the
scheduler's housekeeping runs for batches (apps.batches.progress)."""

from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.batches.expansion import batch_expand
from apps.batches.models import Batch, BatchStatus
from apps.batches.output import batch_finalize
from apps.batches.progress import FINALIZE_KIND, batches_advance, batches_release
from apps.batches.services import EXPAND_KIND
from apps.scheduling.housekeeping.maintenance import housekeeping_register
from apps.scheduling.models import Task
from apps.scheduling.tasks.kinds import FinalFailure, RunContext, TaskKind, register_task_kind


async def batch_expand_run(task: Task, context: RunContext) -> dict[str, Any]:
    status = await context.db(batch_expand, batch_id=task.payload["batch_id"])
    return {"batch_id": task.payload["batch_id"], "status": status}


async def batch_finalize_run(task: Task, context: RunContext) -> dict[str, Any]:
    status = await context.db(batch_finalize, batch_id=task.payload["batch_id"])
    return {"batch_id": task.payload["batch_id"], "status": status}


def batch_expand_failed(task: Task, failure: FinalFailure) -> None:
    """The input could not be read (after its retries): the batch fails, saying why."""
    Batch.objects.filter(id=task.payload["batch_id"], status=BatchStatus.VALIDATING).update(
        status=BatchStatus.FAILED,
        failed_at=timezone.now(),
        errors=[{"code": "validation_failed", "message": failure.message[:500]}],
    )


def batch_finalize_failed(task: Task, failure: FinalFailure) -> None:
    """Left to the housekeeping, which fails the batch (apps.batches.progress)."""


def batch_kinds_register() -> None:
    register_task_kind(
        TaskKind(name=EXPAND_KIND, run=batch_expand_run, on_final_failure=batch_expand_failed)
    )
    register_task_kind(
        TaskKind(name=FINALIZE_KIND, run=batch_finalize_run, on_final_failure=batch_finalize_failed)
    )


def batch_chores_register() -> None:
    every_s = float(settings.BATCHES["HOUSEKEEPING_S"])
    # Released on every round of the housekeeping (5 a second): the queue's share refills as
    # fast as workers take it.
    housekeeping_register(name="batches_release", run=batches_release, every_s=0.0)
    housekeeping_register(name="batches_advance", run=batches_advance, every_s=every_s)
