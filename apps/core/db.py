"""Database work called from async code."""

import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

P = ParamSpec("P")
R = TypeVar("R")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def db_executor() -> ThreadPoolExecutor | None:
    """The process's threads for database work from async code (DB_ASYNC_THREADS of them, each
    holding a pooled connection only during a call); None: asgiref's single thread-sensitive
    thread, where a test's transaction is visible."""
    global _executor
    threads = int(settings.DB_ASYNC_THREADS)
    if threads <= 0:
        return None
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="db")
    return _executor


def db_sync_to_async(function: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    """`sync_to_async(function)` that gives the connection back to the pool when the call
    returns. With plain sync_to_async it stays with the request until the response ends, and an
    SSE response lasts as long as its answer: a handful of open streams would hold every pooled
    connection and the next request would wait for one, then fail. Inside a transaction (tests
    run in one) the connection is kept.

    The calls run in a pool of threads, not asgiref's one thread-sensitive thread: requests'
    database round trips then overlap instead of queueing one behind another (a burst of 500
    new answers was admitted at about 20 a second in that one thread)."""

    @wraps(function)
    def releasing(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:
                connection.close()

    @wraps(function)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        executor = db_executor()
        if executor is None:
            return await sync_to_async(releasing)(*args, **kwargs)
        return await sync_to_async(releasing, thread_sensitive=False, executor=executor)(
            *args, **kwargs
        )

    return call
