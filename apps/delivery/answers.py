"""One answer on its way to one client, whichever door it leaves by.

The delivery follows the answer's event log (apps.streams.feeds) and handles, once for every
door:
- a new answer's slot under the app's cap (apps.gateway.caps): held while the answer is
  delivered, free before its final event goes out (a client that sends its next request as soon
  as it reads the end finds it free), and kept until the task ends if the client leaves first
  (dropping a connection must not free a slot whose answer is still being generated);
- a log that is gone (lapsed, or lost with Redis): the answer rebuilt from PostgreSQL
  (apps.dify.rebuild), looked for at once by a replay or a resume, whose log should exist;
- a log that stays unreachable: the door says so in its own words, the task goes on;
- a client that leaves before the end (`on_client_gone`);
- the wait of a blocking answer, bounded by the request's deadline;
- the gauge of streams being read (apps.delivery.gauge).

A door gives its frames (`Frames`): what opens its stream, what keeps it alive, what each event
becomes, what an unreachable log becomes."""

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from django.conf import settings

from apps.core.errors import DeadlineExceeded, StreamUnavailable
from apps.delivery.gauge import stream_mark_active, stream_mark_done, stream_member
from apps.dify.answers import AnswerFold, CollectedAnswer
from apps.dify.events import FINAL_EVENTS
from apps.dify.rebuild import when_log_gone
from apps.gateway.caps import Lease, lease_kept, lease_release
from apps.gateway.pipeline import Admission
from apps.streams.feeds import Event, events_follow
from apps.streams.log import START_ID, EventLogUnavailable

logger = logging.getLogger(__name__)

Frame = TypeVar("Frame", bytes, str)
Frame_co = TypeVar("Frame_co", bytes, str, covariant=True)
# A blocking answer's wait looks at least this often whether the log is gone.
COLLECT_QUIET_S = 1.0


class Frames(Protocol[Frame_co]):
    """How a door writes an answer's stream."""

    # How long the stream may stay quiet before `keepalive` (and a look whether the log is gone).
    keepalive_s: float

    def opening(self) -> Iterable[Frame_co]: ...

    def keepalive(self) -> Iterable[Frame_co]: ...

    def event(self, event: Event) -> Iterable[Frame_co]: ...

    def finished(self) -> bool:
        """Whether the door ended the stream itself (before the answer's final event)."""
        ...

    def unavailable(self, error: StreamUnavailable) -> Iterable[Frame_co]: ...


def blocking_timeout_s(deadline_ms: int | None) -> float:
    """How long a blocking request waits for its answer. Past its deadline the worker reports
    `deadline_exceeded` itself: the wait lasts a little longer, for that precise answer."""
    timeout: float = settings.PLATFORM["BLOCKING_TIMEOUT_S"]
    if deadline_ms:
        timeout = min(timeout, deadline_ms / 1000 + 1.0)
    return timeout


@dataclass
class AnswerDelivery:
    """The events of one task's answer for one client, from after `after_id`."""

    task_id: str
    # A new answer's slot under the app's cap; None for a replay or a resume (the slot stays
    # with the answer's first delivery).
    lease: Lease | None = None
    after_id: str = START_ID
    # A retried request (Idempotency-Key) delivered the first run's answer.
    replayed: bool = False
    on_client_gone: Callable[[], None] | None = None

    async def _events(self, quiet_s: float) -> AsyncIterator[Event | None]:
        resumed = self.after_id != START_ID
        async for item in events_follow(
            task_id=self.task_id,
            after_id=self.after_id,
            block_ms=max(1, int(quiet_s * 1000)),
            until=FINAL_EVENTS,
            when_gone=when_log_gone(self.task_id, resumed=resumed),
            gone_at_start=resumed or self.replayed,
        ):
            if item is not None and item.kind in FINAL_EVENTS and self.lease is not None:
                await lease_release(self.lease)
            yield item

    async def stream(self, frames: Frames[Frame]) -> AsyncGenerator[Frame, None]:
        """The answer as the door's frames, one write each, until its final event."""
        member = stream_member(self.task_id)
        # Three quiet periods: a stream whose process died lapses from the gauge.
        gauge_s = 3 * frames.keepalive_s
        await stream_mark_active(member, for_s=gauge_s)
        ended = False
        try:
            async with lease_kept(self.lease, self.task_id):
                for frame in frames.opening():
                    yield frame
                try:
                    async for item in self._events(frames.keepalive_s):
                        if item is None:
                            await stream_mark_active(member, for_s=gauge_s)
                            for frame in frames.keepalive():
                                yield frame
                            continue
                        for frame in frames.event(item):
                            yield frame
                        if item.kind in FINAL_EVENTS or frames.finished():
                            ended = True
                            return
                        # Writes in a tight loop starve the other streams of this process:
                        # daphne sends nothing until the loop yields.
                        await asyncio.sleep(0)
                except EventLogUnavailable:
                    ended = True
                    logger.warning("event log unreachable; the client is told to resume")
                    for frame in frames.unavailable(self._unavailable()):
                        yield frame
        finally:
            await stream_mark_done(member)
            if not ended and self.on_client_gone is not None:
                self.on_client_gone()

    async def collected(self, *, timeout_s: float) -> CollectedAnswer:
        """The whole answer, for a blocking response; raises the answer's error, or
        DeadlineExceeded when it is not ready within `timeout_s` (the task goes on)."""
        fold = AnswerFold()
        async with lease_kept(self.lease, self.task_id):
            try:
                async with asyncio.timeout(timeout_s):
                    async for item in self._events(min(timeout_s, COLLECT_QUIET_S)):
                        if item is not None:
                            answer = fold.add(item.kind, item.data)
                            if answer is not None:
                                return answer
            except TimeoutError:
                pass
            except EventLogUnavailable as error:
                raise self._unavailable() from error
        raise DeadlineExceeded(
            f"The answer was not ready within {timeout_s:g} s; task {self.task_id} goes on "
            f"running: read it from /v1/chat-messages/{self.task_id}/events."
        )

    def _unavailable(self) -> StreamUnavailable:
        # The task is safe in PostgreSQL and goes on; its answer can be had again later.
        return StreamUnavailable(
            f"The answer's event log is unreachable for now; task {self.task_id} goes on "
            "running: resume from your last event_id, retry with the same Idempotency-Key, or "
            f"read /v1/chat-messages/{self.task_id}/events."
        )


def answer_delivery(
    admission: Admission, *, on_client_gone: Callable[[], None] | None = None
) -> AnswerDelivery:
    """The delivery of an admitted answer: a new one with its slot, or the first run's."""
    submitted = admission.submitted
    assert submitted is not None
    return AnswerDelivery(
        task_id=str(submitted.task.id),
        lease=admission.lease,
        replayed=admission.replayed,
        on_client_gone=None if admission.replayed else on_client_gone,
    )
