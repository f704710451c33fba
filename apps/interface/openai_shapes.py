"""OpenAI's `chat.completion.chunk` stream, translated from the task's event log (the objects
themselves: apps.gateway.openai_objects)."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from apps.core.errors import ApiError, StreamUnavailable
from apps.gateway.openai_errors import openai_error_body
from apps.gateway.openai_objects import CompletionHead, finish_reason, usage_of
from apps.streams.feeds import Event
from apps.streams.log import EventLogUnavailable
from apps.streams.relay import error_from_event, stream_mark_active, stream_mark_done

DONE = b"data: [DONE]\n\n"
# An SSE comment: keeps proxies from closing a quiet stream; clients skip it.
KEEPALIVE = b": keep-alive\n\n"


def _frame(body: dict[str, Any]) -> bytes:
    return (
        b"data: " + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
    )


def _chunk(head: CompletionHead, delta: dict[str, Any], reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
    return _frame({**head.fields("chat.completion.chunk"), "choices": [choice]})


class Restarted(ApiError):
    status = 500
    code = "stream_restarted"
    default_message = (
        "The answer was started again (a retry after a failure) after part of it was sent, and "
        "OpenAI's stream cannot take text back: send the request again."
    )


async def chat_completion_chunks(
    *,
    head: CompletionHead,
    events: AsyncIterator[Event | None],
    include_usage: bool,
    before_final: Callable[[], Awaitable[None]] | None = None,
    on_client_gone: Callable[[], None] | None = None,
) -> AsyncIterator[bytes]:
    """The answer's events (None after each quiet period) as `chat.completion.chunk` frames,
    ended by `data: [DONE]`; a failure after the first byte comes as an `{"error": ...}` frame,
    as OpenAI sends it. A client that leaves before the end calls `on_client_gone`."""
    member = f"{head.id}:{uuid.uuid4().hex[:8]}"
    await stream_mark_active(member)
    ended = False
    sent = ""  # the text the client holds
    try:
        yield _chunk(head, {"role": "assistant", "content": ""})
        async for item in events:
            if item is None:
                await stream_mark_active(member)
                yield KEEPALIVE
                continue
            event = item.data
            if item.final and before_final is not None:
                await before_final()
            if item.kind == "message" and event.get("answer"):
                sent += event["answer"]
                yield _chunk(head, {"content": event["answer"]})
            elif item.kind == "message_replace":
                text = str(event.get("answer", ""))
                if not text.startswith(sent):
                    ended = True
                    yield _frame(openai_error_body(Restarted()))
                    return
                if len(text) > len(sent):
                    yield _chunk(head, {"content": text[len(sent) :]})
                sent = text
            elif item.kind == "message_end":
                ended = True
                yield _chunk(head, {}, finish_reason(event))
                if include_usage:
                    usage = {**head.fields("chat.completion.chunk"), "choices": []}
                    yield _frame({**usage, "usage": usage_of(event)})
                yield DONE
                return
            elif item.kind == "error":
                ended = True
                yield _frame(openai_error_body(error_from_event(event)))
                return
            await asyncio.sleep(0)  # let the loop serve other streams between two writes
    except EventLogUnavailable:
        ended = True
        yield _frame(openai_error_body(StreamUnavailable()))
    finally:
        await stream_mark_done(member)
        if not ended and on_client_gone is not None:
            on_client_gone()
