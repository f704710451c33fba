"""Dify's answer stream as Server-Sent Events: `data: <event JSON>` per event, one event per
write, the bare `event: ping` line after each quiet 10 s.

An event's log id rides in its JSON as `event_id` (ext), for resuming; the SSE `id:` line only on
our resume route: clients written for Dify parse every non-blank line of the answer stream as
`data:` JSON (the official client's documented loop does) and break on it."""

import json
from collections.abc import Iterable
from typing import Any

from apps.core.errors import StreamUnavailable
from apps.streams.feeds import Event

KEEPALIVE_S = 10.0
PING = b"event: ping\n\n"
# A blank line: a valid no-op in SSE, and skipped by clients that parse the stream line by line.
# Sent as soon as the answer is accepted, so clients and proxies see a live response before the
# model's first token.
OPEN = b"\n"


def json_with(raw: str, extra: dict[str, Any]) -> str:
    """A JSON object's text with `extra` fields added, without parsing it."""
    added = json.dumps(extra, ensure_ascii=False, separators=(",", ":"))[1:]
    body = raw.rstrip()[:-1].rstrip()
    return f"{body},{added}" if body != "{" else "{" + added


def sse_frame(event: Event, *, id_line: bool) -> bytes:
    data = json_with(event.raw, {"event_id": event.id})
    if id_line:
        return f"id: {event.id}\ndata: {data}\n\n".encode()
    return f"data: {data}\n\n".encode()


# Followers of one answer in this process get the same events (apps.streams.feeds): each frame
# is formatted once, not once per follower. Keyed by task, event id and framing; bounded.
_FRAMES_KEPT = 4096
_frames: dict[tuple[str, str, bool], bytes] = {}


def _shared_sse_frame(task_id: str, event: Event, *, id_line: bool) -> bytes:
    key = (task_id, event.id, id_line)
    frame = _frames.get(key)
    if frame is None:
        if len(_frames) >= _FRAMES_KEPT:
            _frames.clear()
        frame = _frames[key] = sse_frame(event, id_line=id_line)
    return frame


def _rebuilt(event: Event) -> bool:
    # Rebuilt events are numbered from 0-1 (apps.streams.feeds); the same numbers may stand for
    # another rebuild of the same answer (a resume's, a replay's).
    return event.id.startswith("0-")


class DifyEventStream:
    """The frames of Dify's answer stream (apps.delivery.answers.Frames)."""

    keepalive_s = KEEPALIVE_S

    def __init__(self, task_id: str, *, id_lines: bool = False) -> None:
        self.task_id = task_id
        self.id_lines = id_lines

    def opening(self) -> Iterable[bytes]:
        return (OPEN,)

    def keepalive(self) -> Iterable[bytes]:
        return (PING,)

    def event(self, event: Event) -> Iterable[bytes]:
        if _rebuilt(event):
            return (sse_frame(event, id_line=self.id_lines),)
        return (_shared_sse_frame(self.task_id, event, id_line=self.id_lines),)

    def finished(self) -> bool:
        return False

    def unavailable(self, error: StreamUnavailable) -> Iterable[bytes]:
        # The response ends cleanly, without `message_end` (an error here would leave the client
        # waiting on a half-closed body): the client resumes from its last `event_id` once Redis
        # is back.
        return ()
