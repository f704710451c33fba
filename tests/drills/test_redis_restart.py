"""Redis restarts (empty: no persistence) while tasks are queued and running, on a private
redis-server, never the machine's shared one. Queues, locks and event logs are gone; PostgreSQL
still has every accepted task, and the platform must finish each of them exactly once."""

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from apps.scheduling.models import Task, TaskStatus
from apps.streams.log import OUTAGE_BUDGET_S
from tests.drills.checks import assert_exactly_once, assert_stream_complete, wait_final
from tests.drills.clients import blocking_answer, blocking_in_background, stream_in_background
from tests.drills.conftest import drill_env, scripted_key, words
from tests.drills.servers import redis_server
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(150)]

TEXT = words(24)


def test_redis_restart_with_queued_and_running_tasks(start_cluster: Callable[..., Any]) -> None:
    api_key, key = scripted_key(text=TEXT, tokens_per_s=8)  # 3 s per answer, 2 workers
    with redis_server() as server:
        # One task at a time per worker, so that the restart finds work queued as well.
        env = drill_env(TEST_REDIS_BASE_URL=server.base_url, WORKER_CONCURRENCY="1")
        with start_cluster(env=env) as cluster:
            streams = [stream_in_background(cluster.url, key, f"s{index}") for index in range(4)]
            blocking = [blocking_in_background(cluster.url, key, f"b{index}") for index in range(2)]
            app_tasks = Task.objects.filter(app_id=api_key.app_id)
            wait_until(
                lambda: (
                    app_tasks.filter(status=TaskStatus.RUNNING).count() == 2
                    and app_tasks.filter(status=TaskStatus.QUEUED).count() == 4
                ),
                30,
                "two running tasks and a backlog of four",
            )
            time.sleep(0.5)  # mid-answer: a few tokens are out
            interrupted = {
                str(task_id)
                for task_id in app_tasks.filter(status=TaskStatus.RUNNING).values_list(
                    "id", flat=True
                )
            }
            server.restart(down_s=1.0)

            # The answers' event logs went with Redis: the readers rode out the outage (or ended
            # cleanly and resumed), and a task run again took back the text clients may have
            # had (`message_replace`), so each client holds exactly the whole answer.
            for stream in streams:
                assert_stream_complete(stream, TEXT)
                if stream.task_id in interrupted:
                    assert "message_replace" in stream.kinds, stream.kinds
            for call in blocking:
                assert call.done.wait(60)
                assert call.response is not None, call.failures
                assert call.response.json()["answer"] == TEXT
            task_ids = [stream.task_id for stream in streams]
            task_ids += [str(call.response.json()["task_id"]) for call in blocking if call.response]
            assert len(set(task_ids)) == 6
            # Every task PostgreSQL accepted is one a client holds (retries used their key).
            accepted = {str(task_id) for task_id in app_tasks.values_list("id", flat=True)}
            assert accepted == set(task_ids)
            found = wait_final(connection.cursor, task_ids, timeout_s=30)
            assert_exactly_once(found, dict.fromkeys(task_ids, TEXT))

            # Served again without restarting anything.
            response = blocking_answer(cluster.url, key, "after the restart")
            assert response.status_code == 200
            assert response.json()["answer"] == TEXT


def test_redis_down_longer_than_readers_wait(start_cluster: Callable[..., Any]) -> None:
    """Past the readers' outage budget, open streams end cleanly (no hung response) and their
    clients resume once Redis is back; every answer still arrives whole, run once per client."""
    _, key = scripted_key(text=TEXT, tokens_per_s=8)
    with redis_server() as server:
        env = drill_env(TEST_REDIS_BASE_URL=server.base_url)
        with start_cluster(env=env) as cluster:
            streams = [stream_in_background(cluster.url, key, f"s{index}") for index in range(2)]
            wait_until(lambda: all(len(s.event_ids) >= 3 for s in streams), 30, "streams going")
            server.restart(down_s=OUTAGE_BUDGET_S + 3)

            for stream in streams:
                assert_stream_complete(stream, TEXT)
                # The response ended (cleanly) during the outage, and the client resumed.
                assert stream.breaks >= 1
            task_ids = [stream.task_id for stream in streams]
            found = wait_final(connection.cursor, task_ids, timeout_s=30)
            assert_exactly_once(found, dict.fromkeys(task_ids, TEXT))
            assert blocking_answer(cluster.url, key, "after").status_code == 200
