"""Reads scoped to one app and one end user."""

import uuid

from apps.scheduling.models import Task


def task_owned_by(*, app_id: uuid.UUID, task_id: str, end_user: str) -> bool:
    """Whether the task answers a question of this end user of this app."""
    return Task.objects.filter(id=task_id, app_id=app_id, end_user=end_user).exists()
