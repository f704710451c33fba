"""The per-task event log: a Redis Stream that workers append to and web processes read from.

It outlives connections: a client that connects late or reconnects from an event id gets every
event after it, exactly once, from any web process. Entries expire `EVENT_LOG_TTL_S` after the
last write.

Each entry holds the event's kind (`k`) and its JSON (`d`); every append is also published, in
the same script, on the task's channel as `<id>\n<kind>\n<json>`: web processes that follow
the task hear of it at once without a read per event (apps.streams.feeds), and relay the JSON as
it is, without parsing it.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apps.core.redis import LuaScript, key, sync_client

logger = logging.getLogger(__name__)
T = TypeVar("T")

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


def channel_key(task_id: str) -> str:
    """Where the task's appends are published."""
    return key("task", task_id, "published")


def event_json(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


# KEYS: the stream, the channel. ARGV: the log's TTL, then kind and JSON of each event.
_APPEND = LuaScript(r"""
local last
for i = 2, #ARGV, 2 do
  last = redis.call('xadd', KEYS[1], '*', 'k', ARGV[i], 'd', ARGV[i + 1])
  redis.call('publish', KEYS[2], last .. '\n' .. ARGV[i] .. '\n' .. ARGV[i + 1])
end
redis.call('expire', KEYS[1], ARGV[1])
return last
""")


def event_append(*, task_id: str, event: dict[str, Any]) -> str:
    """Append one event (and publish it); returns its id (also the SSE `id:`)."""
    kind = str(event.get("event", ""))
    ttl = settings.PLATFORM["EVENT_LOG_TTL_S"]
    keys = (stream_key(task_id), channel_key(task_id))
    event_id = _APPEND(sync_client(), keys, [ttl, kind, event_json(event)])
    return event_id.decode() if isinstance(event_id, bytes) else str(event_id)


def event_log_clear(*, task_id: str) -> None:
    sync_client().delete(stream_key(task_id))


async def riding_out_outages(call: Callable[[], Awaitable[T]]) -> T:
    """`call()` (one Redis read), retried with backoff on a broken connection (the pool opens a
    new one) for up to OUTAGE_BUDGET_S. After a Redis restart the log is empty, and a task run
    again writes its events with later ids, so a reader that goes on from its last id loses
    nothing."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + OUTAGE_BUDGET_S
    pause_s = 0.1
    while True:
        try:
            return await call()
        except (RedisConnectionError, RedisTimeoutError) as error:
            if loop.time() + pause_s > give_up_at:
                raise EventLogUnavailable(f"Redis unreachable: {error}") from error
            logger.warning("event log read failed; retrying", extra={"error": repr(error)})
            await asyncio.sleep(pause_s)
            pause_s = min(pause_s * 2, 2.0)
