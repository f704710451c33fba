"""Priority policy: what a new task's effective priority is under the current load, and when a
waiting task has aged enough to be promoted."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from apps.core.priorities import Priority
from apps.scheduling.coordination.load_state import load_state_current

PROMOTION = {Priority.LOW.value: Priority.MEDIUM.value, Priority.MEDIUM.value: Priority.HIGH.value}


@dataclass(frozen=True)
class PriorityDecision:
    priority: str
    defer_s: float
    reason: str


def priority_decide(
    *, priority: str, over_share: Callable[[], bool] | None = None
) -> PriorityDecision:
    """Under load, new `low` work is deferred and `medium` work drops to `low`; `high` is kept.
    Only for the apps causing the load: `over_share` says whether the task's app asks more of
    its model deployments than its fair share (None: every app is)."""
    state = load_state_current()
    if not state.overloaded or priority == Priority.HIGH:
        return PriorityDecision(priority, 0.0, "")
    if over_share is not None and not over_share():
        return PriorityDecision(priority, 0.0, "")
    if priority == Priority.LOW:
        defer_s = float(settings.PLATFORM["DEFER_LOW_S"])
        return PriorityDecision(
            priority, defer_s, f"deferred {defer_s:g} s under load ({state.reason})"
        )
    if priority == Priority.MEDIUM:
        return PriorityDecision(
            Priority.LOW.value, 0.0, f"downgraded from medium under load ({state.reason})"
        )
    return PriorityDecision(priority, 0.0, "")


def aging_limit_s(priority: str) -> float | None:
    """How long a task may wait in its class before promotion; None for the top class."""
    limit = settings.PLATFORM["AGING_S"].get(priority)
    return float(limit) if limit is not None else None


def waiting_since(*, enqueued_at: datetime | None, promoted_at: datetime | None) -> datetime:
    return promoted_at or enqueued_at or timezone.now()
