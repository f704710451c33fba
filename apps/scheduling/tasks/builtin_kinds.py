"""Kinds the scheduler ships itself: `noop`, a task that does nothing, to measure the scheduler's
own overhead (bench/) and to probe the pipeline end to end without a model."""

from typing import Any

from apps.scheduling.models import Task
from apps.scheduling.tasks.kinds import FinalFailure, RunContext, TaskKind, register_task_kind


async def _noop_run(task: Task, context: RunContext) -> dict[str, Any]:
    return {}


def _noop_final_failure(task: Task, failure: FinalFailure) -> None:
    return None


def register_builtin_kinds() -> None:
    register_task_kind(TaskKind(name="noop", run=_noop_run, on_final_failure=_noop_final_failure))
