"""A provider that stops answering: tasks with a deadline end `expired` on time (504
deadline_exceeded to the client), the workers they held are free again at once, and other apps'
requests are served meanwhile and after."""

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from django.db import connection

from tests.drills.checks import assert_exactly_once, wait_final
from tests.drills.clients import blocking_answer
from tests.drills.conftest import scripted_key, words

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

DEADLINE_MS = 3000


def test_a_hanging_provider_expires_its_tasks_and_frees_the_workers(
    start_cluster: Callable[..., Any],
) -> None:
    _, hanging = scripted_key(text="never", stall_s=120)
    healthy_text = words(6)
    _, healthy = scripted_key(text=healthy_text)
    with start_cluster() as cluster:
        hung: list[tuple[httpx.Response, float]] = []

        def call_hanging(index: int) -> None:
            started = time.monotonic()
            response = blocking_answer(cluster.url, hanging, f"h{index}", deadline_ms=DEADLINE_MS)
            hung.append((response, time.monotonic() - started))

        callers = [threading.Thread(target=call_hanging, args=(i,)) for i in range(2)]
        for caller in callers:
            caller.start()
        time.sleep(1.0)  # both workers are now stuck in the provider
        # Another app's request waits for a worker, and gets one once the deadline frees them.
        started = time.monotonic()
        served = blocking_answer(cluster.url, healthy, "meanwhile")
        waited = time.monotonic() - started
        for caller in callers:
            caller.join(timeout=30)

        assert served.status_code == 200
        assert served.json()["answer"] == healthy_text
        assert waited < DEADLINE_MS / 1000 + 5, f"served after {waited:.1f} s"
        assert len(hung) == 2
        for response, elapsed in hung:
            assert response.status_code == 504, response.text
            assert response.json()["code"] == "deadline_exceeded"
            assert elapsed < DEADLINE_MS / 1000 + 4, f"answered after {elapsed:.1f} s"

        hung_ids = [str(response.json().get("task_id", "")) for response, _ in hung]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id::text, status, attempts FROM scheduling_task WHERE app_id IN"
                " (SELECT app_id FROM applications_apikey WHERE prefix = %s)",
                [hanging[:12]],
            )
            rows = cursor.fetchall()
        assert len(rows) == 2, (rows, hung_ids)
        assert all(status == "expired" and attempts == 1 for _, status, attempts in rows), rows

        # The workers are free: new work is answered at once.
        started = time.monotonic()
        after = blocking_answer(cluster.url, healthy, "after")
        assert after.status_code == 200
        assert time.monotonic() - started < 5
        task_ids = [str(served.json()["task_id"]), str(after.json()["task_id"])]
        found = wait_final(connection.cursor, task_ids, timeout_s=10)
        assert_exactly_once(found, dict.fromkeys(task_ids, healthy_text))
