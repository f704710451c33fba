"""The per-app cap on answers served at once, against real servers: it never overshoots, even
across two web processes, and frees slots when clients disconnect, when the web process serving
an answer is killed (within the lease TTL), and when the worker running it is killed."""

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync

from apps.applications.models import App
from apps.core.redis import sync_client
from apps.gateway.caps import leases_active, leases_key
from apps.scheduling.models import Task, TaskStatus
from tests.factories import make_app, make_key
from tests.gateway.live import TIMEOUT, auth, extra_web, post_all, run
from tests.processes import WebServer, run_worker
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHAT = "/v1/chat-messages"
BODY = {"inputs": {}, "query": "Hello", "user": "u1", "auto_generate_name": False}
WORDS = " ".join(f"w{n}" for n in range(40))


def slow_app(**fields: Any) -> tuple[App, str]:
    """An app whose answers take `seconds` at the scripted provider's pace."""
    app = make_app(provider_config={"text": WORDS, "tokens_per_s": 10}, max_tokens=40, **fields)
    return app, make_key(app)[1]


def active(app: App) -> int:
    return int(async_to_sync(leases_active)(app.id))


def assert_cap_refusal(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "too_many_requests"
    assert response.headers["Retry-After"] == "1"


@pytest.fixture(scope="module")
def second_web(live_web: WebServer) -> Iterator[WebServer]:
    with extra_web() as server:
        yield server


@pytest.fixture
def worker(django_db_setup: None) -> Iterator[Any]:
    with run_worker() as process:
        yield process


async def _sample_peak(app_id: object, stop: asyncio.Event) -> int:
    """The most leases seen at once, sampled every few ms while requests run."""
    client = sync_client()
    peak = 0
    while not stop.is_set():
        peak = max(peak, int(client.zcard(leases_key(app_id))))
        await asyncio.sleep(0.005)
    return peak


def test_cap_never_overshoots_across_two_web_processes(
    live_web: WebServer, second_web: WebServer, worker: Any
) -> None:
    # Each accepted answer takes ~4 s, so every request arrives while the first three are served.
    app, key = slow_app(max_active_requests=3)
    calls = [(f"{(live_web, second_web)[n % 2].url}{CHAT}", BODY, auth(key)) for n in range(20)]

    async def scenario() -> tuple[list[httpx.Response], int]:
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_peak(app.id, stop))
        responses = await post_all(calls)
        stop.set()
        return responses, await sampler

    responses, peak = run(scenario())

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: 3, 429: 17}, statuses
    for response in responses:
        if response.status_code == 429:
            assert_cap_refusal(response)
    assert peak <= 3
    assert Task.objects.filter(kind="chat").count() == 3
    assert active(app) == 0, "every finished answer gives its slot back"


def test_client_disconnect_mid_stream_keeps_the_slot_until_the_answer_ends(
    live_web: WebServer, worker: Any
) -> None:
    """The answer goes on after its client left (and may be resumed from /events): its slot is
    held until it ends, or dropping and resuming would run any number of answers at once."""
    app, key = slow_app(max_active_requests=1)
    url = f"{live_web.url}{CHAT}"
    streaming = {**BODY, "response_mode": "streaming"}

    with (
        httpx.Client(timeout=TIMEOUT) as client,
        client.stream("POST", url, json=streaming, headers=auth(key)) as stream,
    ):
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert any(line.startswith("data:") for line in lines), "the answer started"
        assert active(app) == 1
        assert_cap_refusal(httpx.post(url, json=BODY, headers=auth(key)))
    # The connection is closed, the answer still runs: the slot is still taken.
    assert Task.objects.get().status != TaskStatus.SUCCEEDED
    assert active(app) == 1
    assert_cap_refusal(httpx.post(url, json=BODY, headers=auth(key)))
    # Once the answer ended (4 s at its pace), the slot comes back, not after the lease TTL.
    wait_until(lambda: active(app) == 0, 15, "the slot to come back")
    assert Task.objects.get().status == TaskStatus.SUCCEEDED
    with httpx.stream("POST", url, json=streaming, headers=auth(key), timeout=TIMEOUT) as again:
        assert again.status_code == 200
    _stop_all(live_web, key)


def test_killed_web_process_leaks_no_slot(live_web: WebServer, worker: Any) -> None:
    app, key = slow_app(max_active_requests=1)
    streaming = {**BODY, "response_mode": "streaming"}
    ttl_s = 3.0
    with (
        extra_web(CAP_LEASE_TTL_S=str(ttl_s)) as doomed,
        httpx.stream(
            "POST", f"{doomed.url}{CHAT}", json=streaming, headers=auth(key), timeout=TIMEOUT
        ) as stream,
    ):
        assert stream.status_code == 200
        # Keep the line iterator: dropped, it would close the connection, and the process would
        # see the client go away (and free the slot) before it is killed.
        lines = stream.iter_lines()
        assert any(line.startswith("data:") for line in lines)
        os.kill(doomed.process.pid, signal.SIGKILL)
        doomed.process.wait()
    # Nobody renews the dead process's lease: it holds the slot until it lapses (by Redis's
    # clock, which the lease set's scores are in), then no longer.
    held: Any = sync_client().zrange(leases_key(app.id), 0, -1, withscores=True)
    ((_, lapses_at_ms),) = held
    url = f"{live_web.url}{CHAT}"
    assert_cap_refusal(httpx.post(url, json=BODY, headers=auth(key)))

    def served() -> bool:
        response = httpx.post(url, json=streaming, headers=auth(key), timeout=TIMEOUT)
        if response.status_code != 200:
            assert_cap_refusal(response)
        return response.status_code == 200

    wait_until(served, ttl_s + 10, "the slot to come back")
    seconds, microseconds = (int(part) for part in sync_client().time())
    assert seconds * 1000 + microseconds // 1000 >= float(lapses_at_ms), "freed before it lapsed"
    _stop_all(live_web, key)


def test_killed_worker_frees_the_slot_when_the_request_ends(
    live_web: WebServer, django_db_setup: None
) -> None:
    app, key = slow_app(max_active_requests=1)
    url = f"{live_web.url}{CHAT}"
    with run_worker() as doomed:

        async def first_request() -> httpx.Response:
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                return await client.post(url, json={**BODY, "deadline_ms": 3000}, headers=auth(key))

        async def scenario() -> httpx.Response:
            pending = asyncio.create_task(first_request())
            give_up_at = time.monotonic() + 10
            while not await _running(app):
                assert time.monotonic() < give_up_at, "the task never started"
                await asyncio.sleep(0.05)
            doomed.kill()  # SIGKILL mid-generation: nothing reports the answer
            return await pending

        response = run(scenario())
    assert response.status_code == 504, response.text
    assert response.json()["code"] == "deadline_exceeded"
    assert active(app) == 0, "the request ended: its slot is free at once"
    with run_worker():
        answered = httpx.post(url, json=BODY, headers=auth(key), timeout=TIMEOUT)
    assert answered.status_code == 200, answered.text


async def _running(app: App) -> bool:
    from asgiref.sync import sync_to_async

    return await sync_to_async(Task.objects.filter(app=app, status=TaskStatus.RUNNING).exists)()


def _stop_all(web: WebServer, key: str) -> None:
    """Stop the slow answers still running, so the worker is free for the next test."""
    for task in Task.objects.filter(status__in=(TaskStatus.QUEUED, TaskStatus.RUNNING)):
        httpx.post(
            f"{web.url}/v1/chat-messages/{task.id}/stop",
            json={"user": task.end_user},
            headers=auth(key),
        )
