"""One reader of a task's event log per web process, shared by every client following it.

Before, each follower ran its own blocking XREAD: a Redis connection held per open stream and,
for every event, one reply to read and one JSON document to parse per follower. A feed reads the
log once and hands each event to its followers' queues, so a thousand clients of one answer cost
one connection and one parse per event.

A follower joins first and then reads what the log already holds after its own `after_id`
(XRANGE); events the feed delivers meanwhile land in its queue, and it skips any it has already
seen by id. So it misses nothing and sees nothing twice, wherever it starts.
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from apps.core.redis import async_client
from apps.streams.log import (
    FINAL_EVENTS,
    START_ID,
    EventLogUnavailable,
    riding_out_outages,
    stream_key,
)

logger = logging.getLogger(__name__)

Item = tuple[str, dict[str, Any]]
# Asked when the task's log is gone (it lapsed, or Redis lost it): the task's final events rebuilt
# from where the task is recorded if it has finished, or None while it still runs (its worker
# writes the rest into a new log).
WhenGone = Callable[[], Awaitable[list[dict[str, Any]] | None]]
# How long the feed's XREAD blocks; followers have their own keep-alive timer.
READ_BLOCK_MS = 10_000


def id_key(event_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = event_id.partition("-")
    return int(milliseconds), int(sequence or 0)


class _Feed:
    def __init__(self, task_id: str, start_id: str) -> None:
        self.task_id = task_id
        self.name = stream_key(task_id)
        self.last_id = start_id
        self.followers: set[asyncio.Queue[Item | Exception]] = set()
        self.reader: asyncio.Task[None] | None = None
        self.ended = False

    async def run(self) -> None:
        try:
            while self.followers and not self.ended:
                name, last_id = self.name, self.last_id

                def read(name: str = name, last_id: str = last_id) -> Awaitable[Any]:
                    return async_client().xread({name: last_id}, count=200, block=READ_BLOCK_MS)

                batches: Any = await riding_out_outages(read)
                for _, entries in batches or []:
                    for raw_id, fields in entries:
                        self.last_id = raw_id.decode()
                        item = (self.last_id, json.loads(fields[b"d"]))
                        for queue in self.followers:
                            queue.put_nowait(item)
                        if item[1].get("event") in FINAL_EVENTS:
                            self.ended = True
        except Exception as error:  # the followers decide what an outage means to them
            for queue in self.followers:
                queue.put_nowait(error)
        finally:
            self.ended = True
            _forget(self)


_feeds: dict[tuple[int, str], _Feed] = {}


def _forget(feed: _Feed) -> None:
    loop_key = (id(asyncio.get_running_loop()), feed.task_id)
    if _feeds.get(loop_key) is feed:
        del _feeds[loop_key]


def _join(task_id: str, after_id: str) -> tuple[_Feed, asyncio.Queue[Item | Exception]]:
    loop_key = (id(asyncio.get_running_loop()), task_id)
    feed = _feeds.get(loop_key)
    if feed is None or feed.ended:
        # A new feed starts at this follower's position: whatever it reads twice is skipped.
        feed = _feeds[loop_key] = _Feed(task_id, after_id)
    queue: asyncio.Queue[Item | Exception] = asyncio.Queue()
    feed.followers.add(queue)
    if feed.reader is None:
        feed.reader = asyncio.create_task(feed.run())
    return feed, queue


def _leave(feed: _Feed, queue: asyncio.Queue[Item | Exception]) -> None:
    feed.followers.discard(queue)
    if not feed.followers and feed.reader is not None and not feed.reader.done():
        feed.reader.cancel()
        _forget(feed)


async def _next_item(
    queue: asyncio.Queue[Item | Exception], wait_s: float
) -> Item | Exception | None:
    """The follower's next item, or None after `wait_s` without one. Not `asyncio.wait_for`,
    which makes a task per call: with a thousand followers of a streaming answer that was a
    fifth of the web process's relay work (py-spy)."""
    try:
        return queue.get_nowait()
    except asyncio.QueueEmpty:
        pass
    try:
        async with asyncio.timeout(wait_s):
            return await queue.get()
    except TimeoutError:
        return None


async def _rebuilt_if_gone(name: str, when_gone: WhenGone | None) -> list[Item] | None:
    if when_gone is None:
        return None

    def exists(name: str = name) -> Awaitable[Any]:
        return async_client().exists(name)

    if await riding_out_outages(exists):
        return None
    events = await when_gone()
    if events is None:
        return None
    return [(f"0-{number}", event) for number, event in enumerate(events, start=1)]


async def events_follow(
    *,
    task_id: str,
    after_id: str = START_ID,
    block_ms: int = 10_000,
    when_gone: WhenGone | None = None,
) -> AsyncIterator[Item | None]:
    """Yield (id, event) after `after_id` until a final event; None after each quiet `block_ms`.
    With `when_gone`, a log that is gone (at the start, or found so in a quiet period) ends with
    the events it returns, instead of waiting for events that will never come."""
    feed, queue = _join(task_id, after_id)
    try:
        seen = id_key(after_id)
        name = feed.name

        def held(name: str = name, after_id: str = after_id) -> Awaitable[Any]:
            return async_client().xrange(name, min=f"({after_id}", max="+")

        catch_up: Any = await riding_out_outages(held)
        for raw_id, fields in catch_up or []:
            event_id = raw_id.decode()
            event = json.loads(fields[b"d"])
            seen = id_key(event_id)
            yield event_id, event
            if event.get("event") in FINAL_EVENTS:
                return
        # A resume (a new follower has nothing yet: its task's log may simply not be written to
        # yet, which the quiet periods below look into).
        resuming = after_id != START_ID
        if resuming and not catch_up and (rebuilt := await _rebuilt_if_gone(name, when_gone)):
            for rebuilt_item in rebuilt:
                yield rebuilt_item
            return
        wait_s = block_ms / 1000
        while True:
            item = await _next_item(queue, wait_s)
            if item is None:
                if rebuilt := await _rebuilt_if_gone(name, when_gone):
                    for rebuilt_item in rebuilt:
                        yield rebuilt_item
                    return
                yield None
                continue
            if isinstance(item, Exception):
                if isinstance(item, EventLogUnavailable):
                    raise item
                raise EventLogUnavailable(f"the task's feed failed: {item!r}") from item
            event_id, event = item
            if id_key(event_id) <= seen:
                continue
            seen = id_key(event_id)
            yield event_id, event
            if event.get("event") in FINAL_EVENTS:
                return
    finally:
        _leave(feed, queue)
