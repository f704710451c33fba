"""What a cheap request costs Redis: no read of the config version per request (it is heard over
pub/sub), no metrics round trip per response (sums sent once per METRICS_FLUSH_S), and refusals
past a limit decided without asking Redis again until the bucket can have a token; the limits
stay exact. Checked by watching the commands a live daphne sends (Redis MONITOR)."""

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import redis
from django.conf import settings
from django.test import override_settings

from apps.applications.config_cache import VERSION_KEY
from apps.core.metrics import metrics_key
from apps.core.redis import sync_client
from apps.gateway.ratelimit import Bucket, Verdict, take_async
from tests.factories import make_app_with_key
from tests.processes import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@contextmanager
def redis_commands() -> Iterator[list[str]]:
    """Every command sent to this test's Redis database while the block runs."""
    database = sync_client().connection_pool.connection_kwargs.get("db", 0)
    seen: list[str] = []
    monitor_client = redis.Redis.from_url(settings.REDIS_URL)
    ready, done = threading.Event(), threading.Event()

    def watch() -> None:
        with monitor_client.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if command.get("db") == database:
                    seen.append(str(command["command"]))
                if done.is_set():
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield seen
    finally:
        time.sleep(0.3)  # the last flush of the processes' figures
        done.set()
        sync_client().ping()  # one more command, so the monitor's loop sees `done`
        thread.join(5)
        monitor_client.close()


def count(commands: list[str], pattern: str) -> int:
    compiled = re.compile(pattern)
    return sum(1 for command in commands if compiled.search(command))


def test_cheap_requests_read_no_config_version_and_send_no_metrics_each(
    live_web: WebServer,
) -> None:
    _, key = make_app_with_key()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=live_web.url, headers=headers) as client:
        assert client.get("/v1/parameters").status_code == 200  # the key and app are cached
        with redis_commands() as commands:
            started = time.monotonic()
            for _ in range(40):
                assert client.get("/v1/parameters").status_code == 200
                assert client.get("/v1/conversations", params={"user": "u1"}).status_code == 200
            elapsed = time.monotonic() - started + 0.3

    # Each process reads the version about once a second besides what it hears; the run
    # takes about a second: a handful of reads for 80 requests, not 80.
    version_reads = count(commands, rf"^GET {re.escape(VERSION_KEY())}$")
    assert version_reads <= 6, version_reads
    # The figures of 80 responses go out once per METRICS_FLUSH_S (a field per route), not one
    # write per response.
    metric_writes = count(commands, rf"^HINCRBYFLOAT {re.escape(metrics_key())} dp_http_requests")
    flushes = elapsed / settings.METRICS_FLUSH_S + 2
    assert 1 <= metric_writes <= min(2 * flushes, 40), (metric_writes, elapsed)


@override_settings(REDIS_KEY_PREFIX="dp-test:")
def test_a_known_empty_bucket_refuses_without_asking_redis_and_stays_exact() -> None:
    bucket = Bucket(key="dp-test:ratelimit:probe", rate=2.0, burst=1, reason="probe", label="probe")

    async def takes(count: int) -> list[Verdict]:
        return [await take_async([bucket]) for _ in range(count)]

    assert asyncio.run(takes(1))[0].allowed
    with redis_commands() as commands:
        # Redis says: empty, a token in about half a second; then this process knows it.
        first, *refusals = asyncio.run(takes(51))
    assert not first.allowed
    assert 0 < first.retry_after_s <= 0.5
    assert not any(verdict.allowed for verdict in refusals)
    assert count(commands, r"^EVAL") == 1, commands

    # Once the bucket can have a token again, Redis decides again: one token, then refusals.
    time.sleep(first.retry_after_s + 0.05)
    verdicts = asyncio.run(takes(5))
    assert [verdict.allowed for verdict in verdicts] == [True, False, False, False, False]
