"""Waiting for what another process does: a condition asked again and again until it holds.

A test waits for the event it needs (a status, a stamp, a served request), never for a time."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
EVERY_S = 0.05


def wait_until(condition: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """The first truthy value `condition()` returns; AssertionError naming `what` if none comes
    within `timeout_s`. A condition may raise to give up at once (a process that died)."""
    give_up_at = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= give_up_at:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(EVERY_S)
