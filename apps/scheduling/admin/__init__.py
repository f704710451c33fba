"""The scheduling admin: tasks with their history, operator actions, the queue dashboard."""

from apps.scheduling.admin.task_admin import TaskAdmin

__all__ = ["TaskAdmin"]
