"""The per-task event log: a Redis Stream that workers append to and web processes read from.

It outlives connections: a client that connects late or reconnects from an event id gets every
event after it, exactly once, from any web process. Entries expire `EVENT_LOG_TTL_S` after the
last write.
"""

import json
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings

from apps.core.redis import async_client, key, sync_client

FINAL_EVENTS = frozenset({"message_end", "error"})
START_ID = "0-0"


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
    client = async_client()
    name = stream_key(task_id)
    last_id = after_id
    while True:
        # redis-py types replies loosely; a stream read is [(name, [(id, {field: value})])].
        batches: Any = await client.xread({name: last_id}, count=200, block=block_ms)
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
