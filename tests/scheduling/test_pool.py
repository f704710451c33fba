"""The worker pool as `make run` and `run_workers` run it: a worker killed with -9 has its answers
handed on by the pool the moment it sees the process gone (not once their locks lapse), each
answer completes once and reaches its client whole; restarting every worker one by one (SIGTERM,
as a deploy does) under load loses nothing and runs nothing twice."""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import pytest

from apps.applications.models import ApiKey
from apps.conversations.models import Message
from apps.conversations.services import Question, answer_submit
from apps.core.redis import sync_client
from apps.scheduling.models import Task, TaskEvent, TaskStatus
from apps.streams.log import stream_key
from tests.factories import make_app, make_key
from tests.processes import ROOT, process_env
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WORDS = " ".join(f"word{n}" for n in range(24))


@contextmanager
def pool(workers: int = 2) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_workers", "-n", str(workers)],
        cwd=ROOT,
        env=process_env(),
    )
    try:
        wait_until(lambda: len(worker_pids(process)) == workers, 60, "the pool's workers")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=60)


def worker_pids(process: subprocess.Popen[bytes]) -> list[int]:
    """The pool's live workers (not its model server, nor a worker that exited unreaped)."""
    pids = []
    for child in psutil.Process(process.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "worker" in child.cmdline():
                pids.append(child.pid)
        except psutil.Error:
            continue  # gone meanwhile
    return pids


def key_for(tokens_per_s: float) -> ApiKey:
    app = make_app(provider_config={"text": WORDS, "tokens_per_s": tokens_per_s}, max_tokens=32)
    api_key, _ = make_key(app)
    return ApiKey.objects.select_related("app").get(id=api_key.id)


def submit(api_key: ApiKey) -> Task:
    return answer_submit(
        question=Question(
            api_key=api_key,
            route_mode="chat",
            end_user="u1",
            query="hi",
            inputs={},
            auto_generate_name=False,
        )
    ).task


def shown(task: Task) -> str:
    text = ""
    entries: Any = sync_client().xrange(stream_key(str(task.id)))
    for _, fields in entries:
        event = json.loads(fields[b"d"])
        if event["event"] == "message":
            text += event["answer"]
        elif event["event"] == "message_replace":
            text = event["answer"]
    return text


def statuses(tasks: list[Task]) -> set[str]:
    return set(Task.objects.filter(id__in=[t.id for t in tasks]).values_list("status", flat=True))


def test_a_killed_workers_answers_are_handed_on_by_the_pool_at_once() -> None:
    api_key = key_for(tokens_per_s=8)  # 3 s an answer
    with pool() as running:
        tasks = [submit(api_key) for _ in range(6)]
        wait_until(lambda: all(shown(t) for t in tasks), 60, "every answer to begin")
        by_worker = dict(
            Task.objects.filter(id__in=[t.id for t in tasks]).values_list("id", "worker_name")
        )
        victim = next(iter(by_worker.values()))
        os.kill(int(victim.rsplit(".", 1)[1]), signal.SIGKILL)
        wait_until(lambda: statuses(tasks) == {TaskStatus.SUCCEEDED}, 90, "every answer")
        assert len(worker_pids(running)) == 2, "the pool started another worker"

    moved = [task_id for task_id, worker in by_worker.items() if worker == victim]
    assert moved
    for task_id in moved:
        handed = TaskEvent.objects.filter(task_id=task_id, worker_name="pool")
        assert handed.exists(), "handed on by the pool, not the watchdog"
        task = Task.objects.get(id=task_id)
        assert task.attempts == 2
    for task in tasks:
        assert TaskEvent.objects.filter(task=task, to_status=TaskStatus.SUCCEEDED).count() == 1
        assert Message.objects.get(task=task).answer == WORDS == shown(task)


def test_restarting_every_worker_one_by_one_loses_nothing() -> None:
    api_key = key_for(tokens_per_s=16)  # 1.5 s an answer
    with pool() as running:
        tasks = [submit(api_key) for _ in range(8)]
        for pid in worker_pids(running):
            wait_until(
                lambda tasks=tasks: TaskStatus.RUNNING in statuses(tasks),  # type: ignore[misc]
                60,
                "work under way",
            )
            os.kill(pid, signal.SIGTERM)
            wait_until(
                lambda pid=pid: (
                    pid not in worker_pids(running)  # type: ignore[misc]
                    and len(worker_pids(running)) == 2
                ),
                90,
                "the worker to leave and its successor to start",
            )
            tasks += [submit(api_key) for _ in range(4)]
        wait_until(lambda: statuses(tasks) == {TaskStatus.SUCCEEDED}, 120, "every answer")

    for task in tasks:
        assert TaskEvent.objects.filter(task=task, to_status=TaskStatus.SUCCEEDED).count() == 1
        assert Message.objects.get(task=task).answer == WORDS == shown(task)
