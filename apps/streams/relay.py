"""Relaying a task's event log to clients: collected into one answer, or as Server-Sent Events."""

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from apps.core.errors import ERRORS_BY_CODE, ApiError, DeadlineExceeded, StreamUnavailable
from apps.core.redis import async_client, key
from apps.streams.feeds import Event, WhenGone, events_follow
from apps.streams.log import START_ID, EventLogUnavailable

logger = logging.getLogger(__name__)

KEEPALIVE_S = 10.0
PING = b"event: ping\n\n"


@dataclass(frozen=True)
class CollectedAnswer:
    answer: str
    end_event: dict[str, Any]


def error_from_event(event: dict[str, Any]) -> ApiError:
    error_class = ERRORS_BY_CODE.get(event.get("code", ""), ApiError)
    error = error_class(event.get("message") or None)
    error.status = int(event.get("status") or error.status)
    error.code = str(event.get("code") or error.code)
    return error


async def answer_collect(
    *, task_id: str, timeout_s: float, when_gone: WhenGone | None = None
) -> CollectedAnswer:
    """Wait for the task's answer without holding a thread or a database connection."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + timeout_s
    parts: list[str] = []
    block_ms = max(1, int(min(timeout_s, 1.0) * 1000))
    try:
        async for item in events_follow(task_id=task_id, block_ms=block_ms, when_gone=when_gone):
            if item is not None:
                event = item.data
                kind = item.kind
                if kind == "message":
                    parts.append(event.get("answer", ""))
                elif kind == "message_replace":
                    parts = [event.get("answer", "")]
                elif kind == "message_end":
                    return CollectedAnswer(answer="".join(parts), end_event=event)
                elif kind == "error":
                    raise error_from_event(event)
            if loop.time() >= give_up_at:
                break
    except EventLogUnavailable as error:
        # The task is safe in PostgreSQL and goes on; a retry with the same Idempotency-Key
        # gets its answer.
        raise StreamUnavailable(
            f"The answer's event log is unreachable for now; task {task_id} goes on running: "
            "retry with the same Idempotency-Key, or read "
            f"/v1/chat-messages/{task_id}/events."
        ) from error
    raise DeadlineExceeded(
        f"The answer was not ready within {timeout_s:g} s; task {task_id} goes on running: "
        f"read it from /v1/chat-messages/{task_id}/events."
    )


# A blank line: a valid no-op in SSE, and skipped by clients that parse the stream line by line.
OPEN = b"\n"


# Followers of one answer in this process get the same events (apps.streams.feeds): each frame
# is formatted once, not once per follower. Keyed by task, event id and framing; bounded.
_FRAMES_KEPT = 4096
_frames: dict[tuple[str, str, bool], bytes] = {}


def shared_sse_frame(task_id: str, event: Event, *, id_line: bool) -> bytes:
    key = (task_id, event.id, id_line)
    frame = _frames.get(key)
    if frame is None:
        if len(_frames) >= _FRAMES_KEPT:
            _frames.clear()
        frame = _frames[key] = raw_sse_frame(event.id, event.raw, id_line=id_line)
    return frame


def json_with(raw: str, extra: dict[str, Any]) -> str:
    """A JSON object's text with `extra` fields added, without parsing it."""
    added = json.dumps(extra, ensure_ascii=False, separators=(",", ":"))[1:]
    body = raw.rstrip()[:-1].rstrip()
    return f"{body},{added}" if body != "{" else "{" + added


def raw_sse_frame(event_id: str, raw: str, *, id_line: bool) -> bytes:
    """One event. Its log id rides in the JSON as `event_id` (ext) for resuming; the SSE `id:`
    line only on our resume route: clients written for Dify parse every non-blank line of the
    answer stream as `data:` JSON (the official client's documented loop does) and break on it."""
    data = json_with(raw, {"event_id": event_id})
    if id_line:
        return f"id: {event_id}\ndata: {data}\n\n".encode()
    return f"data: {data}\n\n".encode()


def sse_frame(event_id: str, event: dict[str, Any], *, id_line: bool) -> bytes:
    return raw_sse_frame(event_id, json.dumps(event, ensure_ascii=False), id_line=id_line)


async def sse_stream(
    *,
    task_id: str,
    after_id: str = START_ID,
    id_lines: bool = False,
    when_gone: WhenGone | None = None,
    before_final: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    """Every event after `after_id`, one per write, with a ping after each quiet 10 s.
    `before_final` runs before the final event goes out: a client that sends its next request
    as soon as it reads `message_end` finds what this answer held (its cap slot) free."""
    member = f"{task_id}:{uuid.uuid4().hex[:8]}"
    await stream_mark_active(member)
    # The first byte goes out as soon as the task is accepted, so clients and proxies see a live
    # response before the model's first token.
    yield OPEN
    try:
        async for item in events_follow(
            task_id=task_id,
            after_id=after_id,
            block_ms=int(KEEPALIVE_S * 1000),
            when_gone=when_gone,
        ):
            if item is None:
                await stream_mark_active(member)
                yield PING
            else:
                if item.final and before_final is not None:
                    await before_final()
                yield shared_sse_frame(task_id, item, id_line=id_lines)
            # Let the event loop serve other streams between two writes (see DESIGN: streaming).
            await asyncio.sleep(0)
    except EventLogUnavailable:
        # End the response cleanly (an exception here would leave the client waiting on a
        # half-closed body): the client sees the stream end without `message_end` and resumes
        # from its last `event_id` once Redis is back. The task itself goes on.
        logger.warning("event log unreachable; ending the stream for the client to resume")
    finally:
        await stream_mark_done(member)


async def stream_mark_active(member: str) -> None:
    """Count a stream as active for the next three keep-alive periods: a process that dies
    mid-stream leaves no stale count behind, its entries simply lapse. Best effort: a gauge is
    no reason to break a client's stream."""
    try:
        await async_client().zadd(ACTIVE_KEY(), {member: time.time() + 3 * KEEPALIVE_S})
    except Exception:
        logger.warning("could not mark a stream active", exc_info=True)


async def stream_mark_done(member: str) -> None:
    try:
        await async_client().zrem(ACTIVE_KEY(), member)
    except Exception:
        logger.warning("could not unmark a finished stream", exc_info=True)


def ACTIVE_KEY() -> str:
    return key("streams", "active")
