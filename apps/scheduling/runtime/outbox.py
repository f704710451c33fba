"""Answer events on their way from a worker's event loop to the tasks' logs, fenced and batched.

A worker streams hundreds of answers at once. Each piece of text is put here without waiting
(`AttemptLog.append`, called from the provider's callback), and one writer per event loop sends
everything pending, for every answer, in one pipelined round trip to Redis: one script call per
answer, appending its pieces in order.

Every append is fenced by the attempt's lock (its key and token): Redis appends only while the
attempt still holds its task's lock, in the same script, so an attempt that lost its lock (Redis
restarted, or the lock lapsed and the task was handed to another worker) can never write into the
stream of the attempt that replaced it. The attempt hears of it through `on_fence` and either takes
its lock back (the events wait, in order) or abandons the attempt (they are dropped: the answer is
another attempt's now).
"""

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apps.core.redis import LuaScript, async_client, key
from apps.scheduling.coordination.leases import ExclusiveLease, LeaseState
from apps.streams.log import OUTAGE_BUDGET_S, channel_key, event_json, stream_key

logger = logging.getLogger(__name__)

# KEYS: the lock, the stream, the task's channel, the attempts' batch counters. ARGV: the lock
# token, the log's TTL, the batch's number, then kind and JSON of each event (as
# apps.streams.log appends them). A batch sent again after a lost reply (the script ran, the
# answer did not arrive) is not appended twice: each attempt's last batch number is kept.
# 1: appended (or already); 0: the lock is gone; -1: another attempt holds it (nothing appended).
_APPEND = LuaScript(r"""
local holder = redis.call('get', KEYS[1])
if holder ~= ARGV[1] then
  if holder then return -1 end
  return 0
end
local applied = tonumber(redis.call('hget', KEYS[4], ARGV[1]) or '0')
if applied >= tonumber(ARGV[3]) then return 1 end
for i = 4, #ARGV, 2 do
  local id = redis.call('xadd', KEYS[2], '*', 'k', ARGV[i], 'd', ARGV[i + 1])
  redis.call('publish', KEYS[3], id .. '\n' .. ARGV[i] .. '\n' .. ARGV[i + 1])
end
redis.call('hset', KEYS[4], ARGV[1], ARGV[3])
redis.call('expire', KEYS[4], ARGV[2])
redis.call('expire', KEYS[2], ARGV[2])
return 1
""")


class LogAbandoned(Exception):
    """The attempt lost its task to another one: nothing it sends is written any more."""


class AttemptLog:
    """One attempt's writes to its task's log. `on_fence` is called (on the loop) when the
    fence refused a write: with MISSING, the attempt should take its lock back and `resume()`,
    or `abandon()`; with TAKEN, it has lost the task."""

    def __init__(
        self,
        outbox: "EventOutbox",
        task_id: str,
        fence: ExclusiveLease,
        ttl_s: int,
        on_fence: Callable[[LeaseState], None],
    ) -> None:
        self.outbox = outbox
        self.task_id = task_id
        self.stream = stream_key(task_id)
        self.channel = channel_key(task_id)
        self.batches = key("task", task_id, "appended")
        self.batch_number = 0
        self.fence = fence
        self.ttl_s = ttl_s
        self.on_fence = on_fence
        self.pending: collections.deque[str] = collections.deque()
        # Events that bring a reader up to date from scratch (the answer so far, as one
        # replacement), sent instead of what waited when the attempt takes its lock back: the
        # lock vanished with Redis's data, and the log with it, so readers may have missed any
        # of the events before.
        self.resync: Callable[[], list[dict[str, Any]]] | None = None
        self.paused = False
        self.abandoned = False
        self.failure: Exception | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def append(self, event: dict[str, Any]) -> None:
        """Queue one event; it is written on the loop's next turn, after the ones before it."""
        if self.abandoned:
            return
        if self.failure is not None:
            raise self.failure
        self.pending.append(str(event.get("event", "")))
        self.pending.append(event_json(event))
        self._idle.clear()
        if not self.paused:
            self.outbox.wake(self)

    async def drain(self) -> None:
        """Wait until everything appended so far is in the log."""
        await self._idle.wait()
        if self.abandoned:
            raise LogAbandoned(f"task {self.task_id} belongs to another attempt now")
        if self.failure is not None:
            raise self.failure

    def resume(self, *, log_lost: bool = False) -> None:
        """The attempt holds its lock again: send what waited (or, if the log was lost with
        the lock, what brings readers up to date)."""
        if log_lost and self.resync is not None:
            self.pending.clear()
            for event in self.resync():
                self.pending.append(str(event.get("event", "")))
                self.pending.append(event_json(event))
        self.paused = False
        if self.pending:
            self.outbox.wake(self)
        else:
            self._idle.set()

    def abandon(self) -> None:
        self.abandoned = True
        self.pending.clear()
        self._idle.set()

    def _written(self) -> None:
        if not self.pending:
            self._idle.set()

    def _failed(self, error: Exception) -> None:
        self.failure = error
        self.pending.clear()
        self._idle.set()


class EventOutbox:
    """The writer of one event loop: every log with pending events, in one round trip."""

    def __init__(self) -> None:
        self._ready: dict[AttemptLog, None] = {}
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    def open(
        self,
        *,
        task_id: str,
        fence: ExclusiveLease,
        ttl_s: int,
        on_fence: Callable[[LeaseState], None],
    ) -> AttemptLog:
        return AttemptLog(self, task_id, fence, ttl_s, on_fence)

    def wake(self, log: AttemptLog) -> None:
        self._ready[log] = None
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_forever())

    async def close(self) -> None:
        """Stop the writer (the attempts have drained their logs by now)."""
        if self._writer is not None and not self._writer.done():
            self._closing = True
            self._wake.set()
            _, late = await asyncio.wait({self._writer}, timeout=5.0)
            for writer in late:
                writer.cancel()

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch = [log for log in self._ready if log.pending and not log.paused]
            self._ready.clear()
            if not batch:
                if self._closing:
                    return
                continue
            try:
                await self._write(batch)
            except Exception as error:
                logger.exception("event log write failed")
                for log in batch:
                    log._failed(error)

    async def _write(self, batch: list[AttemptLog]) -> None:
        sent = []
        for log in batch:
            log.batch_number += 1
            sent.append((log, [str(log.batch_number), *log.pending]))
            log.pending.clear()
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + OUTAGE_BUDGET_S
        pause_s = 0.05
        while True:
            try:
                replies = await self._send(sent)
                break
            except (RedisConnectionError, RedisTimeoutError) as error:
                if loop.time() + pause_s > give_up_at:
                    for log, _ in sent:
                        log._failed(error)
                    return
                logger.warning("event log write failed; retrying", extra={"error": repr(error)})
                await asyncio.sleep(pause_s)
                pause_s = min(pause_s * 2, 1.0)
        for (log, events), reply in zip(sent, replies, strict=True):
            if isinstance(reply, Exception):  # Redis refused the command itself (out of memory)
                log._failed(reply)
                continue
            state = LeaseState(int(reply))
            if state is LeaseState.HELD:
                log._written()
                continue
            # Refused: the events wait (in order, before anything appended since) until the
            # attempt decides.
            log.pending.extendleft(reversed(events[1:]))  # kinds and JSON, in pairs
            log.paused = True
            log.on_fence(state)

    def _append(self, pipe: Any, log: AttemptLog, events: list[str]) -> None:
        fence = log.fence
        keys = (fence.key, log.stream, log.channel, log.batches)
        number, *pairs = events
        pipe.evalsha(_APPEND.sha, 4, *keys, fence.token, log.ttl_s, number, *pairs)

    async def _send(self, sent: list[tuple[AttemptLog, list[str]]]) -> list[Any]:
        client = async_client()
        pipe = client.pipeline(transaction=False)
        for log, events in sent:
            self._append(pipe, log, events)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            # Redis restarted and forgot the script: load it and send the refused ones again.
            await client.script_load(_APPEND.script)
            again = [
                (index, item)
                for index, (item, reply) in enumerate(zip(sent, replies, strict=True))
                if isinstance(reply, NoScriptError)
            ]
            pipe = client.pipeline(transaction=False)
            for _, (log, events) in again:
                self._append(pipe, log, events)
            retried = await pipe.execute(raise_on_error=False)
            for (index, _), reply in zip(again, retried, strict=True):
                replies[index] = reply
        for reply in replies:
            if isinstance(reply, RedisConnectionError | RedisTimeoutError):
                raise reply
        return replies
