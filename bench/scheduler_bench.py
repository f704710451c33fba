"""Scheduler benchmarks: our overhead against plain RQ (throughput and idle latency), and how well
`high` work is isolated from a flood of `low` work."""

import time
from collections.abc import Callable
from typing import Any

from bench.harness import median, percentile, running, start, wait_for

NOOP = "bench.jobs.noop"


def _rq_queue(name: str) -> Any:
    from rq import Queue

    from apps.core.redis import sync_client

    return Queue(name, connection=sync_client())


def _rq_workers(count: int, queue: str, burst: bool) -> list[Any]:
    from django.conf import settings

    args = ["-m", "rq.cli", "worker", "--url", settings.REDIS_URL, "-w", "rq.worker.SimpleWorker"]
    if burst:
        args.append("--burst")
    return [start([*args, queue]) for _ in range(count)]


def plain_rq_throughput(jobs: int, workers: int) -> float:
    queue = _rq_queue("bench-rq")
    queue.empty()
    enqueued = [queue.enqueue(NOOP, result_ttl=600) for _ in range(jobs)]
    with running(*_rq_workers(workers, "bench-rq", burst=True)) as processes:
        wait_for(lambda: all(p.poll() is not None for p in processes), 300, "plain RQ to drain")
    from rq.job import Job

    fetched = Job.fetch_many([job.id for job in enqueued], connection=queue.connection)
    starts = [job.started_at.timestamp() for job in fetched if job and job.started_at]
    ends = [job.ended_at.timestamp() for job in fetched if job and job.ended_at]
    assert len(ends) == jobs, f"plain RQ finished {len(ends)} of {jobs}"
    return jobs / (max(ends) - min(starts))


def _our_workers(count: int, burst: bool, queues: tuple[str, ...] = ()) -> list[Any]:
    args = ["manage.py", "worker", *queues]
    if burst:
        args.append("--burst")
    return [start([*args, "--name", f"bench-{i}-{time.time_ns()}"]) for i in range(count)]


def our_throughput(jobs: int, workers: int) -> float:
    from django.db import transaction

    from apps.scheduling.models import Task, TaskStatus
    from apps.scheduling.tasks.services import task_create

    with transaction.atomic():
        ids = [
            task_create(kind="noop", app=None, requested_priority="medium").id for _ in range(jobs)
        ]
    with running(*_our_workers(workers, burst=True)) as processes:
        wait_for(lambda: all(p.poll() is not None for p in processes), 600, "our workers to drain")
    tasks = Task.objects.filter(id__in=ids)
    done = tasks.filter(status=TaskStatus.SUCCEEDED)
    assert done.count() == jobs, f"ours finished {done.count()} of {jobs}"
    starts = [t.started_at.timestamp() for t in done.only("started_at") if t.started_at]
    ends = [t.finished_at.timestamp() for t in done.only("finished_at") if t.finished_at]
    return jobs / (max(ends) - min(starts))


def plain_rq_idle_latency(samples: int) -> list[float]:
    queue = _rq_queue("bench-rq-idle")
    queue.empty()
    with running(*_rq_workers(1, "bench-rq-idle", burst=False)):
        time.sleep(1.5)
        jobs = []
        for _ in range(samples):
            jobs.append(queue.enqueue(NOOP, result_ttl=600))
            time.sleep(0.02)
        wait_for(lambda: all(j.get_status(refresh=True) == "finished" for j in jobs[-3:]), 60, "rq")
        time.sleep(0.2)
    latencies = []
    for job in jobs:
        job.refresh()
        if job.started_at and job.enqueued_at:
            latencies.append((job.started_at - job.enqueued_at).total_seconds())
    return latencies


def our_idle_latency(samples: int) -> list[float]:
    from apps.scheduling.models import Task, TaskStatus
    from apps.scheduling.tasks.services import task_create

    with running(*_our_workers(1, burst=False)):
        time.sleep(1.5)
        ids = []
        for _ in range(samples):
            ids.append(task_create(kind="noop", app=None, requested_priority="high").id)
            time.sleep(0.02)
        wait_for(
            lambda: Task.objects.filter(id__in=ids, status=TaskStatus.SUCCEEDED).count() == samples,
            60,
            "our idle tasks",
        )
    return [
        (t.started_at - t.enqueued_at).total_seconds()
        for t in Task.objects.filter(id__in=ids)
        if t.started_at and t.enqueued_at
    ]


def priority_isolation(workers: int, lows: int, highs: int) -> dict[str, float]:
    """Every worker busy with `low` answers; `high` answers arrive meanwhile."""
    from apps.applications.models import ApiKey
    from apps.applications.services import api_key_create
    from apps.conversations.services import Question, answer_submit
    from apps.deployments.services import app_create_with_endpoint
    from apps.scheduling.models import Task, TaskStatus

    app = app_create_with_endpoint(
        name="bench isolation",
        provider="scripted",
        model="bench",
        deployment_fields={
            "config": {"text": " ".join(["w"] * 10), "tokens_per_s": 100},
            "max_concurrency": 1000,
        },
        max_tokens=16,
    )
    key = ApiKey.objects.select_related("app").get(id=api_key_create(app=app)[0].id)

    def submit(priority: str) -> Any:
        return answer_submit(
            question=Question(
                api_key=key,
                route_mode="chat",
                end_user="bench",
                query="q",
                inputs={},
                priority=priority,
            )
        ).task.id

    with running(*_our_workers(workers, burst=False)):
        time.sleep(2.0)
        low_ids = [submit("low") for _ in range(lows)]
        time.sleep(0.5)
        high_ids = []
        for _ in range(highs):
            high_ids.append(submit("high"))
            time.sleep(0.15)
        wait_for(
            lambda: (
                Task.objects.filter(id__in=high_ids, status=TaskStatus.SUCCEEDED).count() == highs
            ),
            120,
            "high tasks",
        )
        backlog_left = Task.objects.filter(id__in=low_ids, status=TaskStatus.QUEUED).count()
    high_waits = [t.wait_s for t in Task.objects.filter(id__in=high_ids) if t.wait_s is not None]
    low_runs = [
        t.run_s
        for t in Task.objects.filter(id__in=low_ids, status=TaskStatus.SUCCEEDED)
        if t.run_s is not None
    ]
    return {
        "high_wait_p50_ms": percentile(high_waits, 50) * 1000,
        "high_wait_p99_ms": percentile(high_waits, 99) * 1000,
        "low_run_median_ms": median(low_runs) * 1000,
        "low_backlog_when_highs_done": float(backlog_left),
    }


def crash_recovery(runs: int) -> tuple[list[float], list[float]]:
    """kill -9 of a worker mid-answer, in a pool of two as `make run` runs them: seconds from
    the kill until the answer runs again on the other worker (the pool sees its child die and
    hands its tasks on at once), and until it has succeeded there (an answer of 2 s)."""
    import os
    import signal

    from apps.applications.models import ApiKey
    from apps.applications.services import api_key_create
    from apps.conversations.services import Question, answer_submit
    from apps.deployments.services import app_create_with_endpoint
    from apps.scheduling.models import Task, TaskStatus

    app = app_create_with_endpoint(
        name="bench recovery",
        provider="scripted",
        model="bench",
        deployment_fields={
            "config": {"text": " ".join(["w"] * 8), "tokens_per_s": 4},
            "max_concurrency": 1000,
        },
        max_tokens=16,
    )
    key = ApiKey.objects.select_related("app").get(id=api_key_create(app=app)[0].id)

    def status_is(task_id: Any, status: str) -> Callable[[], bool]:
        return lambda: Task.objects.filter(id=task_id, status=status).exists()

    timings, restarts = [], []
    pool = start(["manage.py", "run_workers", "-n", "2"])
    try:
        time.sleep(3.0)
        for _ in range(runs):
            task_id = answer_submit(
                question=Question(
                    api_key=key, route_mode="chat", end_user="bench", query="q", inputs={}
                )
            ).task.id
            wait_for(status_is(task_id, TaskStatus.RUNNING), 30, "the task to start")
            time.sleep(0.5)  # mid-answer
            worker = Task.objects.get(id=task_id).worker_name
            os.kill(int(worker.rsplit(".", 1)[1]), signal.SIGKILL)
            killed_at = time.monotonic()

            def again(task_id: Any = task_id) -> bool:
                return (
                    Task.objects.filter(id=task_id, status=TaskStatus.RUNNING, attempts=2).exists()
                    or status_is(task_id, TaskStatus.SUCCEEDED)()
                )

            wait_for(again, 120, "the answer to run again")
            restarts.append(time.monotonic() - killed_at)
            wait_for(status_is(task_id, TaskStatus.SUCCEEDED), 120, "recovery")
            timings.append(time.monotonic() - killed_at)
            time.sleep(2.0)  # the pool restarts the killed worker
    finally:
        pool.send_signal(signal.SIGTERM)
        pool.wait(timeout=60)
    return restarts, timings
