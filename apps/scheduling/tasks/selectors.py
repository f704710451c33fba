"""Reads of tasks: dead letters, whether a task is over."""

from django.db.models import QuerySet

from apps.scheduling.models import Task, TaskStatus


def dead_letters(*, kind: str | None = None, app_id: str | None = None) -> QuerySet[Task]:
    tasks = Task.objects.filter(status__in=TaskStatus.DEAD_LETTER).select_related("app")
    if kind:
        tasks = tasks.filter(kind=kind)
    if app_id:
        tasks = tasks.filter(app_id=app_id)
    return tasks.order_by("-finished_at")


def task_is_over(*, task_id: str) -> bool:
    """True once the task reached a final status (or no longer exists)."""
    status = Task.objects.filter(id=task_id).values_list("status", flat=True).first()
    return status is None or status in TaskStatus.FINAL
