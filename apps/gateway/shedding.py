"""Load shedding: refuse a request early (503 `overloaded`, Retry-After) when the queues hold more
work than can be served before the request stops being useful, instead of accepting work that
will expire in the queue.

Estimated wait = jobs queued ahead of the request (its own queue and every more urgent one, since
workers take strictly by priority), less the free worker slots that will take them at once, plus
the app's own answers waiting for its model deployments at those priorities, divided by recent
throughput (tasks finished per second, cluster-wide, from the metrics counter). Other apps'
answers waiting at a deployment do not count: deployments share their capacity fairly between
apps, so one app's flood never makes another's requests look late.
A request's budget is its `deadline_ms`, else the default wait of its priority
(settings.GATEWAY["SHED_MAX_WAIT_S"]). `low` is refused first (it has the most work ahead and the
smallest default budget), then `medium`; `high` never.
"""

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.core.errors import Overloaded
from apps.core.metrics import counter_totals
from apps.core.priorities import PRIORITY_RANK, Priority
from apps.core.redis import sync_client
from apps.scheduling.coordination.capacity import answers_flow, flow_waiting
from apps.scheduling.coordination.queues import QUEUE_ORDER, queue_for
from apps.scheduling.coordination.reports import workers_slots

# Read at most this often per process: a request pays for Redis only when they are stale.
DEPTH_CACHE_S = 1.0
SAMPLE_EVERY_S = 2.0
FINISHED_COUNTER = "dp_tasks_finished_total"


@dataclass(frozen=True)
class Backlog:
    depth_ahead: int
    throughput_per_s: float

    @property
    def wait_s(self) -> float:
        return self.depth_ahead / self.throughput_per_s


def max_wait_s(priority: str) -> float | None:
    """The default wait a request of this priority accepts; None: never shed."""
    if priority == Priority.HIGH:
        return None
    return float(settings.GATEWAY["SHED_MAX_WAIT_S"][priority])


def finished_total() -> float:
    """Tasks finished so far, all kinds and outcomes, cluster-wide."""
    return sum(counter_totals(FINISHED_COUNTER, "status").values())


class ThroughputMeter:
    """Tasks finished per second over the recent window, from samples of the cluster-wide counter
    taken by this process (at most every SAMPLE_EVERY_S, when a request asks)."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, float]] = deque()
        self.lock = threading.Lock()

    def rate(self) -> float | None:
        now = time.monotonic()
        window = float(settings.GATEWAY["SHED_WINDOW_S"])
        with self.lock:
            if not self.samples or now - self.samples[-1][0] >= SAMPLE_EVERY_S:
                self.samples.append((now, finished_total()))
            # Keep one sample at or before the window's start, so the span covers the window.
            while len(self.samples) > 2 and now - self.samples[1][0] >= window:
                self.samples.popleft()
            (first_at, first), (last_at, last) = self.samples[0], self.samples[-1]
        if last_at - first_at < SAMPLE_EVERY_S:
            return None
        return max(0.0, last - first) / (last_at - first_at)


_meter = ThroughputMeter()
_depths: dict[str, tuple[float, dict[str, int]]] = {}


def queue_depths() -> dict[str, int]:
    """Jobs waiting per queue, and under FREE_SLOTS the workers' free slots (cached a second)."""
    cached = _depths.get("all")
    now = time.monotonic()
    if cached and now - cached[0] < DEPTH_CACHE_S:
        return cached[1]
    pipe = sync_client().pipeline(transaction=False)
    for name in QUEUE_ORDER:
        pipe.llen(queue_for(name).key)
    depths = dict(zip(QUEUE_ORDER, (int(n) for n in pipe.execute()), strict=True))
    busy, capacity = workers_slots()
    depths[FREE_SLOTS] = max(0, capacity - busy)
    _depths["all"] = (now, depths)
    return depths


FREE_SLOTS = "free_slots"


_flows: dict[str, tuple[float, int]] = {}


def own_waiting(app_id: Any, priorities: tuple[str, ...]) -> int:
    """The app's answers waiting for its deployments at these priorities (cached a second)."""
    lookup = f"{app_id}:{','.join(priorities)}"
    cached = _flows.get(lookup)
    now = time.monotonic()
    if cached and now - cached[0] < DEPTH_CACHE_S:
        return cached[1]
    count = flow_waiting(answers_flow(str(app_id)), priorities)
    if len(_flows) > 10_000:
        _flows.clear()
    _flows[lookup] = (now, count)
    return count


def backlog(priority: str, app_id: Any = None) -> Backlog:
    depths = queue_depths()
    rank = PRIORITY_RANK[Priority(priority)]
    ahead_of = tuple(name for name in QUEUE_ORDER if PRIORITY_RANK[Priority(name)] <= rank)
    queued = sum(depths[name] for name in ahead_of)
    # Free slots take queued work at once: only what is beyond them waits for a finish.
    ahead = max(0, queued - depths[FREE_SLOTS])
    if app_id is not None:
        ahead += own_waiting(app_id, ahead_of)
    floor = float(settings.GATEWAY["SHED_MIN_THROUGHPUT_PER_S"])
    measured = _meter.rate()
    return Backlog(depth_ahead=ahead, throughput_per_s=max(floor, measured or 0.0))


def shed_check(*, priority: str, deadline_ms: int | None, app_id: Any = None) -> None:
    """Raise Overloaded when the request would wait past its budget for a worker."""
    if not settings.GATEWAY["SHED_ENABLED"]:
        return
    default = max_wait_s(priority)
    if default is None:
        return
    budget = deadline_ms / 1000 if deadline_ms else default
    estimate = backlog(priority, app_id)
    if estimate.wait_s <= budget:
        return
    retry_after = min(300, max(1, math.ceil(estimate.wait_s - budget)))
    raise Overloaded(
        f"The platform is overloaded: {estimate.depth_ahead} tasks are queued ahead of this "
        f"{priority}-priority request, about {estimate.wait_s:.0f} s of work, more than its "
        f"{budget:g} s budget. Retry later, or with a higher priority or a longer deadline_ms.",
        headers={"Retry-After": str(retry_after)},
    )
