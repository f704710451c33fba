"""The three priority classes, shared by apps, keys, tasks and queues."""

from django.db import models


class Priority(models.TextChoices):
    HIGH = "high", "High"
    MEDIUM = "medium", "Medium"
    LOW = "low", "Low"


# Lower rank = more urgent.
PRIORITY_RANK = {Priority.HIGH: 0, Priority.MEDIUM: 1, Priority.LOW: 2}


def capped_priority(requested: str, ceiling: str) -> str:
    """The requested priority, lowered to the ceiling when it asks for more than allowed."""
    return (
        requested
        if PRIORITY_RANK[Priority(requested)] >= PRIORITY_RANK[Priority(ceiling)]
        else ceiling
    )
