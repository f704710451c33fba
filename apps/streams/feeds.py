"""Following task logs in a web process: every followed task on one pub/sub connection.

Every append to a task's log is also published on the task's channel (apps.streams.log). A web
process subscribes, on one connection, to the channels of the tasks its clients follow, so an
event costs it one pushed message, read once and handed to every follower of that task, instead
of a blocking read (and a Redis connection) per open stream, a cost that grows with the streams
a process serves (figures: docs/benchmarks.md).

A follower joins (its task's channel subscribed, the subscription confirmed), then reads what the
log already holds after its own `after_id` (XRANGE); events published meanwhile wait in its queue
and it skips any it has seen, by id. So it misses nothing and sees nothing twice, wherever it
starts. If the pub/sub connection drops, the hub connects again, subscribes again, and reads each
log from the last event it delivered: nothing published in the gap is lost.

Events travel as their JSON text: an SSE follower writes it out with its id spliced in, without
parsing it; only followers that need the fields (a blocking answer, the WebSocket) parse it.
"""

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from apps.core.redis import async_client
from apps.streams.log import (
    OUTAGE_BUDGET_S,
    START_ID,
    EventLogUnavailable,
    channel_key,
    riding_out_outages,
    stream_key,
)
from apps.streams.pubsub import PubSubConnection

logger = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S = 5.0
PING_CHECK_S = 0.25
CONNECTION_PING_S = 30.0


class Event:
    """One event of a task's log: its id, kind and JSON text; its fields parsed on demand."""

    __slots__ = ("_data", "id", "kind", "raw")

    def __init__(self, event_id: str, kind: str, raw: str) -> None:
        self.id = event_id
        self.kind = kind
        self.raw = raw
        self._data: dict[str, Any] | None = None

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = json.loads(self.raw)
        return self._data

    @classmethod
    def from_entry(cls, raw_id: bytes, fields: dict[bytes, bytes]) -> "Event":
        raw = fields[b"d"].decode()
        kind = fields.get(b"k")
        event = cls(raw_id.decode(), kind.decode() if kind is not None else "", raw)
        if kind is None:  # written before entries carried their kind
            event.kind = str(event.data.get("event", ""))
        return event

    @classmethod
    def from_dict(cls, event_id: str, event: dict[str, Any]) -> "Event":
        made = cls(event_id, str(event.get("event", "")), json.dumps(event, ensure_ascii=False))
        made._data = event
        return made


# Asked when the task's log is gone (it lapsed, or Redis lost it): the task's final events rebuilt
# from where the task is recorded if it has finished, or None while it still runs (its worker
# writes the rest into a new log).
WhenGone = Callable[[], Awaitable[list[dict[str, Any]] | None]]


def id_key(event_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = event_id.partition("-")
    return int(milliseconds), int(sequence or 0)


class _Follower:
    __slots__ = ("block_s", "last_put", "queue")

    def __init__(self, block_s: float) -> None:
        self.queue: asyncio.Queue[Event | Exception | None] = asyncio.Queue()
        self.block_s = block_s
        self.last_put = time.monotonic()

    def put(self, item: Event | Exception | None) -> None:
        self.last_put = time.monotonic()
        self.queue.put_nowait(item)


class _Feed:
    """One followed task in this process."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.channel = channel_key(task_id)
        self.stream = stream_key(task_id)
        self.followers: set[_Follower] = set()
        self.last_id = START_ID  # the newest event delivered from the channel
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def deliver(self, event: Event) -> None:
        if id_key(event.id) > id_key(self.last_id):
            self.last_id = event.id
        for follower in self.followers:
            follower.put(event)


class _Hub:
    """The pub/sub connection of one event loop and the feeds on it."""

    def __init__(self) -> None:
        self.feeds: dict[str, _Feed] = {}
        self.by_channel: dict[str, _Feed] = {}
        self.connection = PubSubConnection()
        self.connected: asyncio.Task[None] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    async def _connected(self) -> None:
        if self.connected is None:
            self.connected = asyncio.get_running_loop().create_task(self._connect_first())
        await asyncio.shield(self.connected)

    async def _connect_first(self) -> None:
        await self.connection.connect()
        loop = asyncio.get_running_loop()
        self.tasks = [
            loop.create_task(self._listen(), name="feeds-listen"),
            loop.create_task(self._tick(), name="feeds-tick"),
        ]

    async def join(self, task_id: str, block_s: float) -> tuple[_Feed, _Follower]:
        try:
            await self._connected()
        except (OSError, ConnectionError, TimeoutError) as error:
            self._fail(EventLogUnavailable(f"Redis unreachable: {error}"))
            raise EventLogUnavailable(f"Redis unreachable: {error}") from error
        feed = self.feeds.get(task_id)
        if feed is None:
            feed = _Feed(task_id)
            self.feeds[task_id] = self.by_channel[feed.channel] = feed
            self.connection.send("SUBSCRIBE", feed.channel)
        follower = _Follower(block_s)
        feed.followers.add(follower)
        if not feed.subscribed.done():
            # Subscribed before the log is read: nothing published in between is missed.
            try:
                async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                    await asyncio.shield(feed.subscribed)
            except TimeoutError:
                self.leave(feed, follower)
                raise EventLogUnavailable("could not subscribe to the task's events") from None
        return feed, follower

    def leave(self, feed: _Feed, follower: _Follower) -> None:
        feed.followers.discard(follower)
        if feed.followers or self.feeds.get(feed.task_id) is not feed:
            return
        del self.feeds[feed.task_id]
        del self.by_channel[feed.channel]
        if self.closed:
            return
        if not self.feeds:
            # Nothing followed: let the connection go (a short-lived loop ends cleanly, and an
            # idle web process holds nothing).
            self.close()
            return
        with contextlib.suppress(ConnectionError):
            self.connection.send("UNSUBSCRIBE", feed.channel)

    def close(self) -> None:
        self.closed = True
        if _hubs.get(asyncio.get_running_loop()) is self:
            del _hubs[asyncio.get_running_loop()]
        for task in self.tasks:
            task.cancel()
        closing = asyncio.get_running_loop().create_task(self.connection.close())
        _closing.add(closing)
        closing.add_done_callback(_closing.discard)

    async def _listen(self) -> None:
        while True:
            try:
                replies = await self.connection.read()
            except (OSError, ConnectionError) as error:
                if not await self._reconnect(error):
                    return
                continue
            for reply in replies:
                if isinstance(reply, list) and len(reply) >= 3:
                    self._dispatch(reply)

    async def _tick(self) -> None:
        """Keep-alive markers for quiet followers; a PING now and then keeps the connection
        known to be alive through proxies and idle timeouts."""
        last_ping = time.monotonic()
        while True:
            await asyncio.sleep(PING_CHECK_S)
            now = time.monotonic()
            self._pings(now)
            if now - last_ping >= CONNECTION_PING_S:
                last_ping = now
                with contextlib.suppress(ConnectionError):
                    self.connection.send("PING")

    def _dispatch(self, reply: list[Any]) -> None:
        kind, channel = reply[0], reply[1].decode()
        feed = self.by_channel.get(channel)
        if feed is None:
            return
        if kind == b"message":
            event_id, event_kind, raw = reply[2].decode().split("\n", 2)
            feed.deliver(Event(event_id, event_kind, raw))
        elif kind == b"subscribe" and not feed.subscribed.done():
            feed.subscribed.set_result(None)

    def _pings(self, now: float) -> None:
        """Followers quiet for their keep-alive period get a None (their caller pings)."""
        for feed in self.feeds.values():
            for follower in feed.followers:
                if now - follower.last_put >= follower.block_s:
                    follower.put(None)

    async def _reconnect(self, error: Exception) -> bool:
        """Connect again, subscribe again, catch every feed up from its last event; False (and
        the followers told) if Redis stays away past the outage budget."""
        logger.warning("feeds' connection lost; reconnecting", extra={"error": repr(error)})
        give_up_at = time.monotonic() + OUTAGE_BUDGET_S
        pause_s = 0.1
        while not self.closed:
            try:
                await self.connection.close()
                self.connection = PubSubConnection()
                await self.connection.connect()
                channels = [feed.channel for feed in self.feeds.values()]
                if channels:
                    self.connection.send("SUBSCRIBE", *channels)
                    # Subscribed again before the logs are read: nothing published between
                    # the two is missed.
                    async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                        await self._confirmations(set(channels))
                for feed in list(self.feeds.values()):
                    await self._catch_up(feed)
                return True
            except (OSError, ConnectionError, TimeoutError, RedisConnectionError) as again:
                # (A TimeoutError here: the subscriptions were not confirmed in time.)
                if time.monotonic() + pause_s > give_up_at:
                    self._fail(EventLogUnavailable(f"Redis unreachable: {again}"))
                    return False
                await asyncio.sleep(pause_s)
                pause_s = min(pause_s * 2, 2.0)
        return False

    async def _confirmations(self, channels: set[str]) -> None:
        """Read until Redis confirmed every channel's subscription; messages that come first
        are delivered as usual."""
        while channels:
            for reply in await self.connection.read():
                if not (isinstance(reply, list) and len(reply) >= 3):
                    continue
                self._dispatch(reply)
                if reply[0] == b"subscribe":
                    channels.discard(reply[1].decode())

    async def _catch_up(self, feed: _Feed) -> None:
        entries: Any = await async_client().xrange(feed.stream, min=f"({feed.last_id}", max="+")
        for raw_id, fields in entries or []:
            feed.deliver(Event.from_entry(raw_id, fields))

    def _fail(self, error: Exception) -> None:
        self.closed = True
        for feed in self.feeds.values():
            for follower in feed.followers:
                follower.put(error)
        self.feeds.clear()
        self.by_channel.clear()
        if _hubs.get(asyncio.get_running_loop()) is self:
            del _hubs[asyncio.get_running_loop()]
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()


# Connections being closed (a task nobody awaits must be kept from the garbage collector).
_closing: set[asyncio.Task[None]] = set()
_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Hub]" = weakref.WeakKeyDictionary()


def _hub() -> _Hub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.closed:
        hub = _hubs[loop] = _Hub()
    return hub


async def _rebuilt_if_gone(name: str, when_gone: WhenGone | None) -> list[Event] | None:
    if when_gone is None:
        return None

    def exists(name: str = name) -> Awaitable[Any]:
        return async_client().exists(name)

    if await riding_out_outages(exists):
        return None
    events = await when_gone()
    if events is None:
        return None
    return [Event.from_dict(f"0-{number}", event) for number, event in enumerate(events, 1)]


async def events_follow(
    *,
    task_id: str,
    after_id: str = START_ID,
    block_ms: int = 10_000,
    until: Collection[str] = (),
    when_gone: WhenGone | None = None,
    gone_at_start: bool = False,
) -> AsyncIterator[Event | None]:
    """Yield the events after `after_id`, up to the first of a kind in `until` (for ever
    without); None after each quiet `block_ms`. With `when_gone`, a log found gone in a quiet
    period (or, `gone_at_start`, at once) ends with the events it returns, instead of waiting for
    events that will never come. A log is looked for at the start only when it should exist by
    now (a resume, a replay): a new answer's log may simply not be written yet."""
    hub = _hub()
    feed, follower = await hub.join(task_id, block_ms / 1000)
    try:
        seen = id_key(after_id)
        name = feed.stream

        def held(name: str = name, after_id: str = after_id) -> Awaitable[Any]:
            return async_client().xrange(name, min=f"({after_id}", max="+")

        catch_up: Any = await riding_out_outages(held)
        for raw_id, fields in catch_up or []:
            event = Event.from_entry(raw_id, fields)
            seen = id_key(event.id)
            yield event
            if event.kind in until:
                return
        if gone_at_start and not catch_up and (rebuilt := await _rebuilt_if_gone(name, when_gone)):
            for event in rebuilt:
                yield event
            return
        while True:
            item = await follower.queue.get()
            if item is None:
                if rebuilt := await _rebuilt_if_gone(name, when_gone):
                    for event in rebuilt:
                        yield event
                    return
                yield None
                continue
            if isinstance(item, Exception):
                if isinstance(item, EventLogUnavailable):
                    raise item
                raise EventLogUnavailable(f"the task's feed failed: {item!r}") from item
            if id_key(item.id) <= seen:
                continue
            seen = id_key(item.id)
            yield item
            if item.kind in until:
                return
    finally:
        hub.leave(feed, follower)
