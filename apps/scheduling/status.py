"""Reads for operators: queue depth and age, workers, load, recent throughput (the dashboard,
`scheduler_status`, /metrics)."""

import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone
from rq import Worker
from rq.job import Job

from apps.core.metrics import counter_totals
from apps.core.redis import key, sync_client
from apps.scheduling.coordination.load_state import LoadState, hosts_cpu, load_state_read
from apps.scheduling.coordination.queues import QUEUE_ORDER, delayed_count, queue_for
from apps.scheduling.coordination.reports import worker_slots_key
from apps.scheduling.models import Task, TaskStatus


@dataclass(frozen=True)
class QueueStatus:
    name: str
    depth: int
    oldest_age_s: float | None


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    hostname: str
    queues: list[str]
    state: str
    current_task: str | None
    heartbeat_age_s: float | None
    # Tasks it runs now, of how many at once (None: not reported, a plain RQ worker).
    slots_busy: int | None = None
    slots_total: int | None = None


@dataclass(frozen=True)
class SchedulerStatus:
    queues: list[QueueStatus]
    delayed: int
    workers: list[WorkerStatus]
    load: LoadState
    hosts_cpu: dict[str, float]
    dead_letters: int


def queue_status(name: str) -> QueueStatus:
    queue = queue_for(name)
    oldest_ids = queue.get_job_ids(0, 1)
    age = None
    if oldest_ids:
        job = Job.fetch(oldest_ids[0], connection=queue.connection) if oldest_ids else None
        if job is not None and job.enqueued_at is not None:
            age = max(0.0, time.time() - job.enqueued_at.timestamp())
    return QueueStatus(name=name, depth=queue.count, oldest_age_s=age)


def workers_status() -> list[WorkerStatus]:
    now = time.time()
    result = []
    workers = Worker.all(connection=sync_client())
    reports = sync_client().mget([worker_slots_key(w.name) for w in workers]) if workers else []
    for worker, report in zip(workers, reports, strict=True):
        heartbeat: Any = worker.last_heartbeat
        busy, total = (int(part) for part in report.split()) if report else (None, None)
        result.append(
            WorkerStatus(
                name=worker.name,
                hostname=str(worker.hostname or ""),
                queues=worker.queue_names(),
                state=str(worker.get_state()),
                current_task=worker.get_current_job_id(),
                heartbeat_age_s=(now - heartbeat.timestamp()) if heartbeat else None,
                slots_busy=busy,
                slots_total=total,
            )
        )
    return sorted(result, key=lambda status: status.name)


def scheduler_status() -> SchedulerStatus:
    return SchedulerStatus(
        queues=[queue_status(name) for name in QUEUE_ORDER],
        delayed=delayed_count(),
        workers=workers_status(),
        load=load_state_read(),
        hosts_cpu=hosts_cpu(),
        dead_letters=Task.objects.filter(status=TaskStatus.DEAD).count(),
    )


@dataclass(frozen=True)
class QueueActivity:
    """What a queue's tasks did lately (from Task rows: the queue is the effective priority)."""

    finished_5m: int
    finished_15m: int
    unsuccessful_5m: int
    wait_p50_s: float | None
    wait_p95_s: float | None
    run_p50_s: float | None
    run_p95_s: float | None


NO_ACTIVITY = QueueActivity(0, 0, 0, None, None, None, None)

# Wait is enqueue to the start of the last attempt, run is that start to the end, both over tasks
# that finished in the last five minutes; the index on finished_at keeps this cheap to poll.
_ACTIVITY_SQL = f"""
    SELECT priority,
        count(*) FILTER (WHERE finished_at >= %(since_5m)s),
        count(*),
        count(*) FILTER (WHERE finished_at >= %(since_5m)s AND status <> %(succeeded)s),
        percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (
            ORDER BY EXTRACT(EPOCH FROM started_at - enqueued_at)
        ) FILTER (WHERE finished_at >= %(since_5m)s AND started_at IS NOT NULL),
        percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (
            ORDER BY EXTRACT(EPOCH FROM finished_at - started_at)
        ) FILTER (WHERE finished_at >= %(since_5m)s AND started_at IS NOT NULL)
    FROM {Task._meta.db_table}
    WHERE finished_at >= %(since_15m)s
    GROUP BY priority
"""


def _pair(values: list[float] | None) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(values[0]), float(values[1])


def queues_activity() -> dict[str, QueueActivity]:
    """Per queue: tasks finished in the last 5 and 15 minutes, and wait and run time p50/p95
    over the last 5 minutes."""
    now = timezone.now()
    params: dict[str, Any] = {
        "since_5m": now - timedelta(minutes=5),
        "since_15m": now - timedelta(minutes=15),
        "succeeded": TaskStatus.SUCCEEDED.value,
    }
    with connection.cursor() as cursor:
        cursor.execute(_ACTIVITY_SQL, params)
        rows = cursor.fetchall()
    activity = {}
    for priority, finished_5m, finished_15m, unsuccessful_5m, wait, run in rows:
        activity[priority] = QueueActivity(
            finished_5m, finished_15m, unsuccessful_5m, *_pair(wait), *_pair(run)
        )
    return activity


def running_by_queue() -> dict[str, int]:
    rows = (
        Task.objects.filter(status=TaskStatus.RUNNING)
        .values_list("priority")
        .annotate(count=Count("id"))
        .order_by()
    )
    return dict(rows)


def priority_changes() -> dict[str, int]:
    """How many tasks had their priority changed since the metrics were reset, by change
    (`downgraded`, `deferred`, `aged`, `operator`)."""
    totals = counter_totals("dp_priority_changes_total", "change")
    return {change: int(value) for change, value in totals.items()}


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def dashboard_snapshot() -> dict[str, Any]:
    """Everything the queue dashboard shows, as plain JSON-ready data."""
    status = scheduler_status()
    activity = queues_activity()
    running = running_by_queue()
    queues = []
    for queue in status.queues:
        recent = activity.get(queue.name, NO_ACTIVITY)
        queues.append(
            {
                "name": queue.name,
                "depth": queue.depth,
                "oldest_age_s": _seconds(queue.oldest_age_s),
                "running": running.get(queue.name, 0),
                "finished_per_min_5m": round(recent.finished_5m / 5, 2),
                "finished_per_min_15m": round(recent.finished_15m / 15, 2),
                "unsuccessful_5m": recent.unsuccessful_5m,
                "wait_p50_s": _seconds(recent.wait_p50_s),
                "wait_p95_s": _seconds(recent.wait_p95_s),
                "run_p50_s": _seconds(recent.run_p50_s),
                "run_p95_s": _seconds(recent.run_p95_s),
            }
        )
    workers = [
        {**asdict(worker), "heartbeat_age_s": _seconds(worker.heartbeat_age_s)}
        | {"cpu_percent": status.hosts_cpu.get(worker.hostname)}
        for worker in status.workers
    ]
    load = status.load
    return {
        "generated_at": timezone.now().isoformat(),
        "queues": queues,
        "delayed": status.delayed,
        "workers": workers,
        "slots": {
            "busy": sum(w.slots_busy or 0 for w in status.workers),
            "total": sum(w.slots_total or 0 for w in status.workers),
        },
        "hosts_cpu": status.hosts_cpu,
        "load": {
            "overloaded": load.overloaded,
            "reason": load.reason,
            "cpu_percent": round(load.cpu_percent, 1),
            "queued": load.queued,
            "since": load.since,
            "since_age_s": round(max(0.0, time.time() - load.since), 1),
            # No state stored means no scheduler process has evaluated the load yet.
            "evaluated": bool(sync_client().exists(key("load", "state"))),
        },
        "priority_changes": priority_changes(),
        "dead_letters": status.dead_letters,
        # A worker silent for longer is presumed dead by RQ.
        "worker_ttl_s": settings.PLATFORM["WORKER_TTL_S"],
    }
