"""Publishing one answer's events (apps.dify.events) into the task's event log."""

import json
from typing import Any

from apps.conversations.models import Message
from apps.core.redis import sync_client
from apps.dify.events import (
    AnswerEvent,
    AnswerHeader,
    ReplaceReason,
    error_event,
    message_end_event,
    message_event,
    replace_event,
)
from apps.scheduling.runtime.outbox import AttemptLog
from apps.streams.log import event_append, stream_key


class AnswerPublisher:
    """Writes the answer's events; every one carries the task, message and conversation ids.

    With an attempt's `log`, the answer's text goes through it (fenced, batched, never blocking
    the event loop: apps.scheduling.runtime.outbox); the final events (`message_end`, `error`)
    are written directly, after PostgreSQL recorded the outcome, by whoever recorded it."""

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
        self.header = AnswerHeader.of(task_id, message).fields()

    def _append(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        if self.log is not None:
            self.log.append(event)
        else:
            event_append(task_id=self.task_id, event=event)

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
        return kind == AnswerEvent.MESSAGE or (
            kind == AnswerEvent.MESSAGE_REPLACE and bool(event.get("answer"))
        )

    def text(self, text: str) -> None:
        self.shown += text
        self._append(message_event(self.header, text))

    def replace(self, text: str, reason: ReplaceReason) -> None:
        self.shown = text
        self._append(replace_event(self.header, text, reason))

    def _resync(self) -> list[dict[str, Any]]:
        return [replace_event(self.header, self.shown, ReplaceReason.RESYNC)]

    def end(self) -> str:
        if self.quiet:
            return ""
        return event_append(
            task_id=self.task_id, event=message_end_event(self.header, self.message)
        )

    def error(self, *, status: int, code: str, message: str) -> str:
        if self.quiet:
            return ""
        event = error_event(self.header, status=status, code=code, message=message)
        return event_append(task_id=self.task_id, event=event)
