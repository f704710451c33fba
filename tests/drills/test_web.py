"""Web processes failing under load through nginx: kill -9 and SIGTERM mid-stream. Clients
resume their streams from the last event id, and retry blocking requests with their
Idempotency-Key, through nginx, which sends them to a web process that is alive."""

import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import psutil
import pytest
from django.db import connection

from apps.operations.cluster import Cluster
from tests.drills.checks import assert_exactly_once, assert_stream_complete, wait_final
from tests.drills.clients import blocking_answer, blocking_in_background, stream_in_background
from tests.drills.conftest import scripted_key, words
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

TEXT = words(24)
LONG_TEXT = words(64)


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def busiest_web(cluster: Cluster) -> Any:
    """The web process holding the most client connections (nginx's, to its port): the one to
    break, so that the drill always cuts streams, wherever nginx put them."""
    held = Counter(
        connection.laddr.port
        for connection in psutil.net_connections("tcp")
        if connection.status == psutil.CONN_ESTABLISHED
    )
    return max(cluster.webs, key=lambda web: held[web.port])


def open_streams(cluster: Cluster, key: str, count: int) -> list[Any]:
    streams = [stream_in_background(cluster.url, key, f"q{index}") for index in range(count)]
    # Every stream is under way (a few tokens out) before the web process goes.
    wait_until(lambda: all(len(s.event_ids) >= 3 for s in streams), 30, "streams under way")
    return streams


def test_kill_9_of_a_web_process_mid_stream(start_cluster: Callable[..., Any]) -> None:
    _, key = scripted_key(text=TEXT, tokens_per_s=8)  # 3 s per answer
    # A worker for each stream: all four are mid-answer when the web process goes, and
    # least_conn has put two of them on it.
    with start_cluster(workers=4) as cluster:
        streams = open_streams(cluster, key, 4)
        victim = busiest_web(cluster)
        assert victim.process is not None
        os.kill(victim.process.pid, signal.SIGKILL)

        for stream in streams:
            assert_stream_complete(stream, TEXT)
        # nginx spread the streams over both processes (least_conn): some were cut and resumed.
        assert sum(stream.breaks for stream in streams) >= 1
        task_ids = [stream.task_id for stream in streams]
        found = wait_final(connection.cursor, task_ids, timeout_s=20)
        assert_exactly_once(found, dict.fromkeys(task_ids, TEXT))
        assert all(outcome.attempts == 1 for outcome in found.values())

        # The cluster restarts the dead process on its port, and new requests are served.
        wait_until(lambda: cluster.supervise_once() is None and healthy(victim.url), 30, "restart")
        assert victim.restarts == 1
        for _ in range(4):
            assert blocking_answer(cluster.url, key, "after").status_code == 200


def test_sigterm_to_a_web_process_hands_its_clients_over(start_cluster: Callable[..., Any]) -> None:
    _, key = scripted_key(text=LONG_TEXT, tokens_per_s=8)  # 8 s: still going when it stops
    # A worker for each stream: all four are mid-answer when the web process goes, and
    # least_conn has put two of them on it.
    with start_cluster(workers=4) as cluster:
        blocking = [blocking_in_background(cluster.url, key, f"b{index}") for index in range(2)]
        streams = open_streams(cluster, key, 4)
        victim = busiest_web(cluster)
        assert victim.process is not None
        victim.process.send_signal(signal.SIGTERM)
        stopping_since = time.monotonic()
        # daphne closes its open responses and exits at once, cleanly.
        assert victim.process.wait(timeout=10) == 0
        assert time.monotonic() - stopping_since < 10

        # Whether daphne cut its streams (their clients resumed through the other process) or
        # finished them before it exited, every client holds the whole answer, once.
        for stream in streams:
            assert_stream_complete(stream, LONG_TEXT)
        for call in blocking:
            assert call.done.wait(45)
            assert call.response is not None, call.failures
            assert call.response.status_code == 200
            assert call.response.json()["answer"] == LONG_TEXT
        task_ids = [stream.task_id for stream in streams]
        task_ids += [str(call.response.json()["task_id"]) for call in blocking if call.response]
        found = wait_final(connection.cursor, task_ids, timeout_s=20)
        # A blocking request cut by the stop and retried with its key got the first run's
        # answer: still one task, run once.
        assert len(set(task_ids)) == 6
        assert_exactly_once(found, dict.fromkeys(task_ids, LONG_TEXT))
        assert all(outcome.attempts == 1 for outcome in found.values())
        assert blocking_answer(cluster.url, key, "after").status_code == 200
