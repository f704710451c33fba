"""The scheduler with real worker processes: strict priority, never twice, crash recovery after
kill -9, and the reconciler after Redis lost its queues."""

import itertools
import os
import signal
from typing import Any

import pytest
from rq.job import Job

from apps.applications.models import ApiKey
from apps.conversations.models import Message
from apps.conversations.services import Question, answer_submit
from apps.core.redis import sync_client
from apps.scheduling.coordination.queues import job_push
from apps.scheduling.models import Task, TaskStatus
from apps.streams.log import stream_key
from tests.factories import make_app, make_key
from tests.processes import run_scheduler, run_worker
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Short enough to keep the suite quick; `bench/` measures recovery with the defaults.
FAST_RECOVERY = {"TASK_LOCK_TTL_S": "3", "RECONCILE_GRACE_S": "1"}


def key_for(**app_fields: Any) -> ApiKey:
    app = make_app(**app_fields)
    api_key, _ = make_key(app)
    return ApiKey.objects.select_related("app").get(id=api_key.id)


def submit(api_key: ApiKey, priority: str = "medium") -> Task:
    return answer_submit(
        question=Question(
            api_key=api_key,
            route_mode="chat",
            end_user="u1",
            query="hi",
            inputs={},
            priority=priority,
        )
    ).task


def status_of(task: Task) -> str:
    return Task.objects.values_list("status", flat=True).get(id=task.id)


def test_high_runs_before_a_backlog_of_low() -> None:
    slow = key_for(provider_config={"text": "word " * 20, "tokens_per_s": 20})
    fast = key_for(provider_config={"text": "quick"})
    with run_worker(concurrency=1):  # one slot, taken by the blocker
        blocker = submit(slow, "medium")
        wait_until(lambda: status_of(blocker) == TaskStatus.RUNNING, 30, "the blocker to run")
        backlog = [submit(fast, "low") for _ in range(3)]
        urgent = submit(fast, "high")
        everything = [blocker, *backlog, urgent]
        wait_until(
            lambda: all(status_of(task) == TaskStatus.SUCCEEDED for task in everything), 60, "all"
        )

    started = {
        task.id: task.started_at
        for task in Task.objects.filter(id__in=[t.id for t in everything])
        if task.started_at is not None
    }
    assert all(started[urgent.id] < started[low.id] for low in backlog)


def pieces_sent(task: Task) -> int:
    """The pieces of text in the task's event log so far."""
    entries: Any = sync_client().xrange(stream_key(str(task.id)))
    return sum(1 for _, fields in entries if fields.get(b"k") == b"message")


def jobs_ended(task: Task) -> int:
    """How many times a worker ended the task's job as its own (RQ keeps a result for each)."""
    return len(Job.fetch(str(task.id), connection=sync_client()).results())


def test_a_task_pushed_twice_runs_once() -> None:
    text = " ".join(f"w{number}" for number in range(12))  # 3 s at its pace
    api_key = key_for(provider_config={"text": text, "tokens_per_s": 4})
    with run_worker(), run_worker():
        task = submit(api_key, "medium")
        wait_until(lambda: status_of(task) == TaskStatus.RUNNING, 30, "the task to run")
        # A duplicate while it runs: the other worker finds the task's lock held and drops it.
        job_push(task_id=str(task.id), priority="high", time_left_s=None)
        wait_until(lambda: jobs_ended(task) == 1, 30, "the duplicate to be dropped")
        wait_until(lambda: status_of(task) == TaskStatus.SUCCEEDED, 60, "the task")
        # And one after it ended: whichever worker takes it finds nothing to run.
        ended = jobs_ended(task)
        job_push(task_id=str(task.id), priority="high", time_left_s=None)
        wait_until(lambda: jobs_ended(task) > ended, 30, "the late duplicate to be dropped")

    task.refresh_from_db()
    assert task.attempts == 1
    assert task.events.filter(to_status=TaskStatus.RUNNING).count() == 1
    assert Message.objects.get(task=task).answer == text


def test_kill_9_mid_task_is_recovered_on_another_worker() -> None:
    api_key = key_for(provider_config={"text": "word " * 16, "tokens_per_s": 8})
    with (
        run_worker(name="victim", env=FAST_RECOVERY) as victim,
        run_scheduler(env=FAST_RECOVERY),
    ):
        task = submit(api_key)
        wait_until(lambda: pieces_sent(task) >= 2, 30, "the answer to be under way")
        os.kill(victim.pid, signal.SIGKILL)
        with run_worker(name="rescuer", env=FAST_RECOVERY):
            wait_until(lambda: status_of(task) == TaskStatus.SUCCEEDED, 60, "recovery")

    task.refresh_from_db()
    assert task.worker_name == "rescuer"
    assert task.attempts == 2
    assert task.events.filter(to_status=TaskStatus.SUCCEEDED).count() == 1
    assert Message.objects.get(task=task).answer == ("word " * 16).strip()


def test_reconciler_restores_tasks_after_redis_lost_its_queues() -> None:
    api_key = key_for(provider_config={"text": "restored"})
    tasks = [submit(api_key, priority) for priority in ("high", "medium", "low")]
    sync_client().flushdb()  # Redis restarted empty: every job is gone, PostgreSQL still has them

    with run_worker(env=FAST_RECOVERY), run_scheduler(env=FAST_RECOVERY):
        wait_until(
            lambda: all(status_of(task) == TaskStatus.SUCCEEDED for task in tasks), 60, "restore"
        )
    assert all(Message.objects.get(task=task).answer == "restored" for task in tasks)


def test_provider_concurrency_limit_makes_tasks_wait_in_priority_order() -> None:
    limited = key_for(
        provider_config={"text": "word " * 8, "tokens_per_s": 16, "max_concurrency": 1}
    )
    with run_worker(), run_worker(), run_scheduler():
        first = submit(limited, "low")
        wait_until(lambda: status_of(first) == TaskStatus.RUNNING, 30, "the first task to run")
        second_low = submit(limited, "low")
        urgent = submit(limited, "high")
        everything = [first, second_low, urgent]
        wait_until(
            lambda: all(status_of(task) == TaskStatus.SUCCEEDED for task in everything), 60, "all"
        )

    tasks = {task.id: task for task in Task.objects.filter(id__in=[t.id for t in everything])}
    # Waiting for a slot spends no attempt, and two tasks of the app never ran at once.
    assert all(task.attempts == 1 for task in tasks.values())
    spans = sorted((task.started_at, task.finished_at) for task in tasks.values())
    assert all(
        earlier[1] is not None and later[0] is not None and earlier[1] <= later[0]
        for earlier, later in itertools.pairwise(spans)
    )
    started_urgent, started_low = tasks[urgent.id].started_at, tasks[second_low.id].started_at
    assert started_urgent is not None
    assert started_low is not None
    assert started_urgent < started_low
