"""Reads for operators: queue depth and age, workers, load, dead letters."""

import time
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from rq import Worker
from rq.job import Job

from apps.core.redis import sync_client
from apps.scheduling.load import LoadState, hosts_cpu, load_state_read
from apps.scheduling.models import Task, TaskStatus
from apps.scheduling.queues import QUEUE_ORDER, delayed_count, queue_for

DEAD_LETTER_STATUSES = (
    TaskStatus.DEAD,
    TaskStatus.FAILED,
    TaskStatus.EXPIRED,
    TaskStatus.CANCELLED,
)


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
    for worker in Worker.all(connection=sync_client()):
        heartbeat: Any = worker.last_heartbeat
        result.append(
            WorkerStatus(
                name=worker.name,
                hostname=str(worker.hostname or ""),
                queues=worker.queue_names(),
                state=str(worker.get_state()),
                current_task=worker.get_current_job_id(),
                heartbeat_age_s=(now - heartbeat.timestamp()) if heartbeat else None,
            )
        )
    return sorted(result, key=lambda status: status.name)


def dead_letters(*, kind: str | None = None, app_id: str | None = None) -> QuerySet[Task]:
    tasks = Task.objects.filter(status__in=DEAD_LETTER_STATUSES).select_related("app")
    if kind:
        tasks = tasks.filter(kind=kind)
    if app_id:
        tasks = tasks.filter(app_id=app_id)
    return tasks.order_by("-finished_at")


def scheduler_status() -> SchedulerStatus:
    return SchedulerStatus(
        queues=[queue_status(name) for name in QUEUE_ORDER],
        delayed=delayed_count(),
        workers=workers_status(),
        load=load_state_read(),
        hosts_cpu=hosts_cpu(),
        dead_letters=Task.objects.filter(status=TaskStatus.DEAD).count(),
    )
