"""Workers failing under a running cluster: kill -9 mid-task (the pool restarts the process and
the task is taken over), and SIGTERM mid-task (the worker finishes the task, then exits)."""

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest
from django.db import connection

from tests.drills.checks import assert_exactly_once, assert_stream_complete, wait_final
from tests.drills.clients import blocking_answer, stream_in_background
from tests.drills.conftest import running_task, scripted_key, words, worker_pid
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def test_kill_9_of_a_worker_mid_task(start_cluster: Callable[..., Any]) -> None:
    text = words(20)
    _, key = scripted_key(text=text, tokens_per_s=10)
    with start_cluster() as cluster:
        streams = [
            stream_in_background(cluster.url, key, f"q{index}", priority=priority)
            for index, priority in enumerate(["high", "medium", "low", "medium"])
        ]
        wait_until(lambda: all(s.task_id for s in streams), 20, "every stream's first event")
        task_ids = [s.task_id for s in streams]
        victim_task = wait_until(lambda: running_task(task_ids), 20, "a running task")
        time.sleep(0.5)  # mid-task: a few tokens are out
        victim = worker_pid(victim_task)
        # A worker runs many tasks at once: every task it was running is killed with it.
        killed = {t for t in task_ids if running_task([t]) and worker_pid(t) == victim}
        os.kill(victim, signal.SIGKILL)

        for stream in streams:
            assert_stream_complete(stream, text)
        found = wait_final(connection.cursor, task_ids, timeout_s=30)
        assert_exactly_once(found, dict.fromkeys(task_ids, text))
        assert victim_task in killed
        assert all(found[t].attempts == 2 for t in killed)
        assert all(found[t].attempts == 1 for t in task_ids if t not in killed)

        # The pool replaced the killed worker, and new work is served without a restart.
        wait_until(
            lambda: len(cluster.pids()["workers"]) == 2 and victim not in cluster.pids()["workers"],
            10,
            "the pool to replace the worker",
        )
        response = blocking_answer(cluster.url, key, "after the drill")
        assert response.status_code == 200
        assert response.json()["answer"] == text


def test_sigterm_to_a_worker_mid_task_finishes_the_task(start_cluster: Callable[..., Any]) -> None:
    text = words(24)
    _, key = scripted_key(text=text, tokens_per_s=8)  # 3 s
    with start_cluster() as cluster:
        stream = stream_in_background(cluster.url, key, "long one", priority="high")
        wait_until(lambda: stream.task_id, 20, "the first event")
        wait_until(lambda: running_task([stream.task_id]), 20, "the task to run")
        pid = worker_pid(stream.task_id)
        os.kill(pid, signal.SIGTERM)
        stopped_at = time.monotonic()

        assert_stream_complete(stream, text)
        found = wait_final(connection.cursor, [stream.task_id], timeout_s=10)
        assert_exactly_once(found, {stream.task_id: text})
        assert found[stream.task_id].attempts == 1  # finished by the worker that got SIGTERM
        assert str(found[stream.task_id].finisher).endswith(f".{pid}")
        # ... which then exited (and the pool started another in its place).
        wait_until(lambda: not psutil.pid_exists(pid), 10, "the worker to exit")
        assert time.monotonic() - stopped_at < 15
        wait_until(lambda: len(cluster.pids()["workers"]) == 2, 10, "a replacement worker")
        assert blocking_answer(cluster.url, key, "next").status_code == 200
