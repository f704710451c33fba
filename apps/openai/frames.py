"""OpenAI's `chat.completion.chunk` stream, translated from an answer's events (apps.dify.events):
a first chunk with the role, a chunk per piece of text, the finish chunk (and the usage chunk
when asked for), then `data: [DONE]`. A failure after the first byte comes as an
`{"error": ...}` frame, as OpenAI sends it."""

import json
from collections.abc import Iterable
from typing import Any

from apps.core.errors import ApiError
from apps.dify.answers import error_from_event
from apps.dify.events import AnswerEvent
from apps.openai.errors import StreamRestarted, openai_error_body
from apps.openai.objects import CompletionHead, finish_reason, usage_of
from apps.streams.feeds import Event

KEEPALIVE_S = 10.0
DONE = b"data: [DONE]\n\n"
# An SSE comment: keeps proxies from closing a quiet stream; clients skip it.
KEEPALIVE = b": keep-alive\n\n"
CHUNK = "chat.completion.chunk"


def _frame(body: dict[str, Any]) -> bytes:
    return (
        b"data: " + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
    )


class ChatCompletionChunks:
    """The frames of one completion's stream (apps.delivery.answers.Frames). OpenAI's stream
    cannot take text back: a replacement that does not extend what was sent (a retry after a
    failure mid-answer) ends the stream with an error."""

    keepalive_s = KEEPALIVE_S

    def __init__(self, head: CompletionHead, *, include_usage: bool) -> None:
        self.head = head
        self.include_usage = include_usage
        self.sent = ""  # the text the client holds
        self.ended = False

    def _chunk(self, delta: dict[str, Any], reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        return _frame({**self.head.fields(CHUNK), "choices": [choice]})

    def _error(self, error: ApiError) -> list[bytes]:
        self.ended = True
        return [_frame(openai_error_body(error))]

    def opening(self) -> Iterable[bytes]:
        return (self._chunk({"role": "assistant", "content": ""}),)

    def keepalive(self) -> Iterable[bytes]:
        return (KEEPALIVE,)

    def event(self, event: Event) -> Iterable[bytes]:
        data = event.data
        if event.kind == AnswerEvent.MESSAGE:
            if not data.get("answer"):
                return []
            self.sent += data["answer"]
            return [self._chunk({"content": data["answer"]})]
        if event.kind == AnswerEvent.MESSAGE_REPLACE:
            text = str(data.get("answer", ""))
            if not text.startswith(self.sent):
                return self._error(StreamRestarted())
            rest, self.sent = text[len(self.sent) :], text
            return [self._chunk({"content": rest})] if rest else []
        if event.kind == AnswerEvent.MESSAGE_END:
            self.ended = True
            frames = [self._chunk({}, finish_reason(data))]
            if self.include_usage:
                usage = {**self.head.fields(CHUNK), "choices": [], "usage": usage_of(data)}
                frames.append(_frame(usage))
            frames.append(DONE)
            return frames
        if event.kind == AnswerEvent.ERROR:
            return self._error(error_from_event(data))
        return []

    def finished(self) -> bool:
        return self.ended

    def unavailable(self, error: ApiError) -> Iterable[bytes]:
        return self._error(error)
