"""The events of one answer, in Dify's streaming shapes, appended to the task's event log."""

import json
from typing import Any

from apps.conversations.models import Message
from apps.core.redis import sync_client
from apps.generation.pricing import prices_for
from apps.scheduling.runtime.outbox import AttemptLog
from apps.streams.log import event_append, stream_key


def usage_metadata(message: Message) -> dict[str, Any]:
    """Dify's `usage`: token counts, prices as decimal strings (at the rates the message was
    priced with), latency and time to first token in seconds."""
    prices = prices_for(
        rates=message,
        prompt_tokens=message.prompt_tokens,
        completion_tokens=message.completion_tokens,
    )
    return {
        "prompt_tokens": message.prompt_tokens,
        "prompt_unit_price": prices.prompt_unit_price,
        "prompt_price_unit": prices.prompt_price_unit,
        "prompt_price": prices.prompt_price,
        "completion_tokens": message.completion_tokens,
        "completion_unit_price": prices.completion_unit_price,
        "completion_price_unit": prices.completion_price_unit,
        "completion_price": prices.completion_price,
        "total_tokens": message.total_tokens,
        "total_price": prices.total_price,
        "currency": prices.currency,
        "latency": round(message.latency_s or 0.0, 3),
        "time_to_first_token": (
            round(message.first_token_s, 3) if message.first_token_s is not None else None
        ),
    }


def message_end_event(base: dict[str, Any], message: Message) -> dict[str, Any]:
    """The answer's last event: its usage, and (ext) why the model stopped."""
    metadata = {"usage": usage_metadata(message), "retriever_resources": []}
    event = {"event": "message_end", **base, "metadata": metadata, "files": []}
    if message.finish_reason:
        event["finish_reason"] = message.finish_reason
    return event


class AnswerPublisher:
    """Writes the answer's events; every one carries the task, message and conversation ids.

    With an attempt's `log`, the answer's text goes through it (fenced, batched, never blocking
    the event loop: apps.scheduling.runtime.outbox); the final events (`message_end`, `error`) are
    written directly, after PostgreSQL recorded the outcome, by whoever recorded it."""

    def __init__(
        self,
        *,
        task_id: str,
        message: Message,
        log: AttemptLog | None = None,
        quiet: bool = False,
    ) -> None:
        self.task_id = task_id
        self.message = message
        self.log = log
        # Nobody follows a bulk task's answer (a batch's request: its output file delivers it):
        # a quiet publisher writes no events, which would only fill Redis for the log's TTL.
        self.quiet = quiet
        # The text handed to the log so far, as a reader following from the start holds it.
        self.shown = ""
        if log is not None:
            log.resync = self._resync
        self.base: dict[str, Any] = {
            "task_id": task_id,
            "id": str(message.id),
            "message_id": str(message.id),
            "created_at": int(message.created_at.timestamp()),
        }
        if message.conversation_id is not None:
            self.base["conversation_id"] = str(message.conversation_id)

    def _append(self, event: str, **fields: Any) -> None:
        if self.quiet:
            return
        data = {"event": event, **self.base, **fields}
        if self.log is not None:
            self.log.append(data)
        else:
            event_append(task_id=self.task_id, event=data)

    def text_may_have_been_sent(self) -> bool:
        """Whether a client may hold text from an earlier attempt that a retry must take back:
        the log's last event is a piece of text, or a replacement (moderation) that left some;
        or the log is gone (Redis restarted), so nobody can tell what clients already have."""
        if self.quiet:
            return False
        last: Any = sync_client().xrevrange(stream_key(self.task_id), count=1)
        if not last:
            return True
        event = json.loads(last[0][1][b"d"])
        kind = event.get("event")
        return kind == "message" or (kind == "message_replace" and bool(event.get("answer")))

    def text(self, text: str) -> None:
        self.shown += text
        self._append("message", answer=text)

    def replace(self, text: str, reason: str) -> None:
        self.shown = text
        self._append("message_replace", answer=text, reason=reason)

    def _resync(self) -> list[dict[str, Any]]:
        return [{"event": "message_replace", **self.base, "answer": self.shown, "reason": "resync"}]

    def end(self) -> str:
        if self.quiet:
            return ""
        return event_append(task_id=self.task_id, event=message_end_event(self.base, self.message))

    def error(self, *, status: int, code: str, message: str) -> str:
        if self.quiet:
            return ""
        event = {key: value for key, value in self.base.items() if key != "task_id"}
        event.update(event="error", status=status, code=code, message=message)
        return event_append(task_id=self.task_id, event=event)
