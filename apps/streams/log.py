"""The per-task event log: a Redis Stream that workers append to and web processes read from.

It outlives connections: a client that connects late or reconnects from an event id gets every
event after it, exactly once, from any web process. Entries expire `EVENT_LOG_TTL_S` after the
last write.
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apps.core.redis import async_client, key, sync_client

logger = logging.getLogger(__name__)

FINAL_EVENTS = frozenset({"message_end", "error"})
START_ID = "0-0"
# How long a reader rides out a Redis outage (a restart, a failover) before giving up: long
# enough for a restart, short enough that a client is told well within its own timeouts.
OUTAGE_BUDGET_S = 10.0


class EventLogUnavailable(Exception):
    """Redis stayed unreachable for longer than the outage budget while a reader followed a log.
    The task itself goes on (its row is in PostgreSQL); the reader should end its response so
    that the client resumes from its last event id later."""


def stream_key(task_id: str) -> str:
    return key("task", task_id, "events")


def event_append(*, task_id: str, event: dict[str, Any]) -> str:
    """Append one event; returns its id (also the SSE `id:`)."""
    client = sync_client()
    name = stream_key(task_id)
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    pipe = client.pipeline(transaction=False)
    pipe.xadd(name, {"d": data})
    pipe.expire(name, settings.PLATFORM["EVENT_LOG_TTL_S"])
    event_id, _ = pipe.execute()
    return event_id.decode()


def event_log_clear(*, task_id: str) -> None:
    sync_client().delete(stream_key(task_id))


async def events_follow(
    *, task_id: str, after_id: str = START_ID, block_ms: int = 10_000
) -> AsyncIterator[tuple[str, dict[str, Any]] | None]:
    """Yield (id, event) from after `after_id` until a final event, forever otherwise.

    Yields None when nothing arrived for `block_ms`, so the caller can send a keep-alive or check
    a deadline, then goes on waiting.
    """
    name = stream_key(task_id)
    last_id = after_id
    while True:
        batches = await _read_riding_out_outages(name, last_id, block_ms)
        if not batches:
            yield None
            continue
        for _, entries in batches:
            for raw_id, fields in entries:
                last_id = raw_id.decode()
                event = json.loads(fields[b"d"])
                yield last_id, event
                if event.get("event") in FINAL_EVENTS:
                    return


async def _read_riding_out_outages(name: str, last_id: str, block_ms: int) -> Any:
    """One XREAD after `last_id`. A broken connection is retried with backoff (the pool opens a
    new one) for up to OUTAGE_BUDGET_S: after a Redis restart the log is empty, and a task run
    again writes its events with later ids, so reading on from `last_id` loses nothing."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + OUTAGE_BUDGET_S
    pause_s = 0.1
    while True:
        try:
            # redis-py types replies loosely; a stream read is [(name, [(id, {field: value})])].
            return await async_client().xread({name: last_id}, count=200, block=block_ms)
        except (RedisConnectionError, RedisTimeoutError) as error:
            if loop.time() + pause_s > give_up_at:
                raise EventLogUnavailable(f"Redis unreachable: {error}") from error
            logger.warning("event log read failed; retrying", extra={"error": repr(error)})
            await asyncio.sleep(pause_s)
            pause_s = min(pause_s * 2, 2.0)
