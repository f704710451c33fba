"""Database work called from async code."""

from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connection

P = ParamSpec("P")
R = TypeVar("R")


def db_sync_to_async(function: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    """`sync_to_async(function)` that gives the connection back to the pool when the call
    returns. With plain sync_to_async it stays with the request until the response ends, and an
    SSE response lasts as long as its answer: a handful of open streams would hold every pooled
    connection and the next request would wait for one, then fail. Inside a transaction (tests
    run in one) the connection is kept."""

    @wraps(function)
    def releasing(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:
                connection.close()

    return sync_to_async(releasing)
