"""How a task gets to run: straight onto its priority's queue, or, if its kind needs a model
deployment (TaskKind.route), into the waiting line of its deployments, which push its job onto
its queue when one takes it (apps.scheduling.coordination.capacity)."""

import logging
import time

from django.utils import timezone

from apps.core.redis import sync_client
from apps.scheduling.coordination.capacity import Route, app_over_share, capacity_submit_in
from apps.scheduling.coordination.queues import job_delay, job_push, job_save_in
from apps.scheduling.models import Task
from apps.scheduling.tasks.kinds import task_kind_find

logger = logging.getLogger(__name__)


def task_route(task: Task) -> Route | None:
    """The deployments the task needs, None when it needs none (or no deployment serves it:
    its kind then fails it with a clear error when it runs)."""
    kind = task_kind_find(task.kind)
    if kind is None or kind.route is None:
        return None
    return kind.route(task)


# Whether an app is over its fair share, by flow, as this process last read it.
_over_share: dict[str, tuple[float, bool]] = {}
OVER_SHARE_CACHE_S = 1.0


def task_over_share(task: Task) -> bool:
    """Whether the task's app asks more of its deployments than its fair share now (read under
    load only, cached a second per app and route). A task that needs no deployment (a batch's
    bookkeeping, say) is no model's load: it is never over."""
    route = task_route(task)
    if route is None:
        return False
    now = time.monotonic()
    cached = _over_share.get(route.flow)
    if cached is not None and now - cached[0] < OVER_SHARE_CACHE_S:
        return cached[1]
    over = app_over_share(route=route)
    if len(_over_share) > 10_000:
        _over_share.clear()
    _over_share[route.flow] = (now, over)
    return over


def _arrival_s(task: Task) -> float:
    # Its place in its line: when it was first queued (a retry or a promotion keeps it).
    return (task.enqueued_at or timezone.now()).timestamp()


def _push_in(pipe: object, task: Task, avoid: str) -> None:
    route = task_route(task)
    if route is None:
        job_push(
            task_id=str(task.id),
            priority=task.priority,
            time_left_s=task.time_left_s(),
            bulk=task.bulk,
            pipe=pipe,
        )
        return
    job_save_in(
        pipe,
        task_id=str(task.id),
        priority=task.priority,
        time_left_s=task.time_left_s(),
        bulk=task.bulk,
    )
    capacity_submit_in(
        pipe,
        task_id=str(task.id),
        route=route,
        priority=task.priority,
        arrival_s=_arrival_s(task),
        avoid=avoid,
    )


def task_push(task: Task, *, delay_s: float = 0, avoid: str = "") -> None:
    """Send the task on its way, now or after `delay_s` (a retry's backoff). `avoid`: a
    deployment it should go to only if no other has room (the one its last attempt failed on)."""
    if delay_s > 0:
        job_delay(task_id=str(task.id), delay_s=delay_s)
        return
    # One MULTI: RQ puts a pipeline it is given in transaction mode, which must come first.
    pipe = sync_client().pipeline()
    pipe.multi()
    _push_in(pipe, task, avoid)
    pipe.execute()


def tasks_push(tasks: list[Task]) -> None:
    """Send many tasks on their way in one round trip."""
    pipe = sync_client().pipeline()
    pipe.multi()
    for task in tasks:
        _push_in(pipe, task, "")
    pipe.execute()
