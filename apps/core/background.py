"""Work a request starts and does not wait for."""

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)

# The loop keeps only weak references to tasks: these are the strong ones until each is done.
_running: set[asyncio.Task[Any]] = set()


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.warning("background work failed", exc_info=task.exception())


def in_background(work: Coroutine[Any, Any, Any]) -> None:
    """Run `work` on the current loop without waiting for it; a failure is logged."""
    task = asyncio.create_task(work)
    _running.add(task)
    task.add_done_callback(_finished)
