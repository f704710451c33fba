"""The process's Redis clients."""

import threading
import time
from typing import Any

import pytest
import redis

from apps.core import redis as platform_redis

THREADS = 10


def test_first_calls_from_many_threads_share_one_working_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fresh process: its first requests all reach for the client at once, from several threads.
    # Making a client is slowed down so that every thread arrives while the first is being made.
    monkeypatch.setattr(platform_redis, "_sync_client", None)
    make = redis.Redis.from_url

    def slow_make(*args: Any, **kwargs: Any) -> redis.Redis:
        time.sleep(0.02)
        return make(*args, **kwargs)

    monkeypatch.setattr(redis.Redis, "from_url", slow_make)
    start = threading.Barrier(THREADS)
    shared: list[bool] = []
    failures: list[BaseException] = []

    def first_request() -> None:
        start.wait()
        try:
            client = platform_redis.sync_client()
            pipe = client.pipeline(transaction=False)
            for name in ("high", "medium", "low"):
                pipe.llen(platform_redis.key("probe", name))
            assert pipe.execute() == [0, 0, 0]
            shared.append(client is platform_redis.sync_client())
        except BaseException as error:  # reported below, with the others
            failures.append(error)

    threads = [threading.Thread(target=first_request) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert shared == [True] * THREADS, "every thread uses the one client"
