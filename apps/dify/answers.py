"""An answer's events folded into the answer a blocking response returns: the same fold whether
the events come from the live log or were rebuilt from PostgreSQL."""

from dataclasses import dataclass, field
from typing import Any

from apps.core.errors import ApiError, error_of
from apps.dify.events import AnswerEvent


@dataclass(frozen=True)
class CollectedAnswer:
    answer: str
    end_event: dict[str, Any]


def error_from_event(event: dict[str, Any]) -> ApiError:
    """An `error` event as the error it reports, with the status it carried."""
    status = event.get("status")
    return error_of(
        str(event.get("code") or ""),
        event.get("message") or None,
        int(status) if status else None,
    )


@dataclass
class AnswerFold:
    """The text so far: pieces appended, a replacement taking back everything before it."""

    parts: list[str] = field(default_factory=list)

    def add(self, kind: str, event: dict[str, Any]) -> CollectedAnswer | None:
        """Fold one event in; the whole answer once it has ended. An `error` raises it."""
        if kind == AnswerEvent.MESSAGE:
            self.parts.append(event.get("answer", ""))
        elif kind == AnswerEvent.MESSAGE_REPLACE:
            self.parts = [event.get("answer", "")]
        elif kind == AnswerEvent.MESSAGE_END:
            return CollectedAnswer(answer="".join(self.parts), end_event=event)
        elif kind == AnswerEvent.ERROR:
            raise error_from_event(event)
        return None
