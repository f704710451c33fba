"""The three priority classes, shared by apps, keys, tasks and queues."""

from dataclasses import dataclass

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


@dataclass(frozen=True)
class PriorityGrant:
    """The priority a request runs at (before load policy): what it asked for, within what its
    key may use."""

    requested: str
    granted: str
    ceiling: str

    @property
    def reason(self) -> str:
        if self.granted == self.requested:
            return ""
        return f"capped to the key's maximum ({self.ceiling})"


def priority_grant(requested: str, ceiling: str) -> PriorityGrant:
    return PriorityGrant(requested, capped_priority(requested, ceiling), ceiling)
