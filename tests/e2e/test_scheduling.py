"""The scheduler with real worker processes: strict priority, never twice, crash recovery after
kill -9, and the reconciler after Redis lost its queues."""

import itertools
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from apps.applications.models import ApiKey
from apps.conversations.models import Message
from apps.conversations.services import Question, answer_submit
from apps.core.redis import sync_client
from apps.scheduling.coordination.queues import job_push
from apps.scheduling.models import Task, TaskStatus
from tests.factories import make_app, make_key
from tests.processes import run_scheduler, run_worker

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


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


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


def test_a_task_pushed_twice_runs_once() -> None:
    api_key = key_for(provider_config={"text": "only once please", "tokens_per_s": 10})
    with run_worker(), run_worker():
        task = submit(api_key, "medium")
        job_push(task_id=str(task.id), priority="high", time_left_s=None)  # a duplicate job
        wait_until(lambda: status_of(task) == TaskStatus.SUCCEEDED, 60, "the task")
        time.sleep(0.5)  # let the duplicate reach the other worker and be dropped

    task.refresh_from_db()
    assert task.attempts == 1
    assert task.events.filter(to_status=TaskStatus.RUNNING).count() == 1
    assert Message.objects.get(task=task).answer == "only once please"


def test_kill_9_mid_task_is_recovered_on_another_worker() -> None:
    api_key = key_for(provider_config={"text": "word " * 16, "tokens_per_s": 8})
    with (
        run_worker(name="victim", env=FAST_RECOVERY) as victim,
        run_scheduler(env=FAST_RECOVERY),
    ):
        task = submit(api_key)
        wait_until(lambda: status_of(task) == TaskStatus.RUNNING, 30, "the task to start")
        time.sleep(0.5)
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        with run_worker(name="rescuer", env=FAST_RECOVERY):
            wait_until(lambda: status_of(task) == TaskStatus.SUCCEEDED, 60, "recovery")
        recovery_s = time.monotonic() - killed_at

    task.refresh_from_db()
    assert task.worker_name == "rescuer"
    assert task.attempts == 2
    assert task.events.filter(to_status=TaskStatus.SUCCEEDED).count() == 1
    assert Message.objects.get(task=task).answer == ("word " * 16).strip()
    assert recovery_s < 60, f"recovered in {recovery_s:.1f} s"


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
