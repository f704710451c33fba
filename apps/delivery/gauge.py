"""The streams clients are reading now (`dp_active_streams`), counted across web processes.

Each stream is a member of one sorted set, scored with the time it lapses; a stream renews its
member on each quiet period, so a process that dies mid-stream leaves no stale count behind: its
members simply lapse. Best effort: a gauge is no reason to break a client's stream."""

import logging
import time
import uuid

from apps.core.redis import async_client, key, sync_client

logger = logging.getLogger(__name__)


def _streams_key() -> str:
    return key("streams", "active")


def stream_member(task_id: str) -> str:
    """One reader of the task's answer (several may read the same one)."""
    return f"{task_id}:{uuid.uuid4().hex[:8]}"


async def stream_mark_active(member: str, *, for_s: float) -> None:
    try:
        await async_client().zadd(_streams_key(), {member: time.time() + for_s})
    except Exception:
        logger.warning("could not mark a stream active", exc_info=True)


async def stream_mark_done(member: str) -> None:
    try:
        await async_client().zrem(_streams_key(), member)
    except Exception:
        logger.warning("could not unmark a finished stream", exc_info=True)


def streams_active() -> int:
    return int(sync_client().zcount(_streams_key(), time.time(), "+inf"))
