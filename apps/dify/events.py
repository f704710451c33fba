"""The events of one answer, in Dify's streaming shapes: the vocabulary an answer's event log is
written in (by the worker, apps.generation.publishing) and read in (by every door, through
apps.delivery), defined once.

Each event's fields are declared here (`EVENT_FIELDS`) and `event_problems` checks an event
against them; the tests check what every door sends with it, so a door cannot drift from the
vocabulary unnoticed."""

import enum
from dataclasses import dataclass
from typing import Any

from apps.conversations.models import Message
from apps.conversations.pricing import prices_for
from apps.core.errors import InternalError


class AnswerEvent(enum.StrEnum):
    MESSAGE = "message"  # the next piece of the answer
    MESSAGE_REPLACE = "message_replace"  # the whole answer so far, replacing what came before
    MESSAGE_END = "message_end"  # the answer is complete: its usage (final)
    ERROR = "error"  # the answer will not come (final)

    @property
    def final(self) -> bool:
        return self in FINAL_EVENTS


# The events after which nothing more is written to an answer's log.
FINAL_EVENTS: frozenset[str] = frozenset({AnswerEvent.MESSAGE_END, AnswerEvent.ERROR})


class ReplaceReason(enum.StrEnum):
    """Why a `message_replace` takes the text back."""

    MODERATION = "moderation"  # output moderation redacted part of it
    RETRY = "retry"  # a new attempt starts the answer again (its first event, with "")
    RESYNC = "resync"  # the log was lost with Redis: the text so far, for any reader
    REBUILT = "rebuilt"  # a resumed reader whose log lapsed gets the answer from PostgreSQL


@dataclass(frozen=True)
class AnswerHeader:
    """What every event of one answer carries."""

    task_id: str
    message_id: str
    conversation_id: str | None
    created_at: int  # Unix seconds: when the question was asked

    @classmethod
    def of(cls, task_id: str, message: Message) -> "AnswerHeader":
        conversation_id = message.conversation_id
        return cls(
            task_id=task_id,
            message_id=str(message.id),
            conversation_id=str(conversation_id) if conversation_id is not None else None,
            created_at=int(message.created_at.timestamp()),
        )

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "task_id": self.task_id,
            "id": self.message_id,
            "message_id": self.message_id,
            "created_at": self.created_at,
        }
        if self.conversation_id is not None:
            fields["conversation_id"] = self.conversation_id
        return fields


def message_event(header: dict[str, Any], text: str) -> dict[str, Any]:
    return {"event": AnswerEvent.MESSAGE, **header, "answer": text}


def replace_event(header: dict[str, Any], text: str, reason: ReplaceReason) -> dict[str, Any]:
    return {"event": AnswerEvent.MESSAGE_REPLACE, **header, "answer": text, "reason": reason}


def error_event(header: dict[str, Any], *, status: int, code: str, message: str) -> dict[str, Any]:
    """An answer's error: Dify's carries no `task_id`."""
    fields = {name: value for name, value in header.items() if name != "task_id"}
    return {
        "event": AnswerEvent.ERROR,
        **fields,
        "status": status,
        "code": code,
        "message": message,
    }


def client_error_message(code: str, message: str) -> str:
    """What a client is told of a failure: an internal error's details stay in the logs."""
    return InternalError.default_message if code == InternalError.code else message


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


def end_event(
    header: dict[str, Any], metadata: dict[str, Any], *, finish_reason: str = ""
) -> dict[str, Any]:
    """The answer's last event: its usage, and (ext) why the model stopped."""
    event = {"event": AnswerEvent.MESSAGE_END, **header, "metadata": metadata, "files": []}
    if finish_reason:
        event["finish_reason"] = finish_reason
    return event


def message_end_event(header: dict[str, Any], message: Message) -> dict[str, Any]:
    """The end of the answer the message holds."""
    metadata = {"usage": usage_metadata(message), "retriever_resources": []}
    return end_event(header, metadata, finish_reason=message.finish_reason)


# Field: the types its value may have.
Fields = dict[str, tuple[type, ...]]
_TEXT = (str,)
_HEADER: Fields = {"task_id": _TEXT, "id": _TEXT, "message_id": _TEXT, "created_at": (int,)}


@dataclass(frozen=True)
class EventFields:
    required: Fields
    optional: Fields


EVENT_FIELDS: dict[AnswerEvent, EventFields] = {
    AnswerEvent.MESSAGE: EventFields({**_HEADER, "answer": _TEXT}, {"conversation_id": _TEXT}),
    AnswerEvent.MESSAGE_REPLACE: EventFields(
        {**_HEADER, "answer": _TEXT, "reason": _TEXT}, {"conversation_id": _TEXT}
    ),
    AnswerEvent.MESSAGE_END: EventFields(
        {**_HEADER, "metadata": (dict,), "files": (list,)},
        {"conversation_id": _TEXT, "finish_reason": _TEXT},
    ),
    AnswerEvent.ERROR: EventFields(
        {"status": (int,), "code": _TEXT, "message": _TEXT},
        {"id": _TEXT, "message_id": _TEXT, "conversation_id": _TEXT, "created_at": (int,)},
    ),
}
# (ext) Added on the way to a client: the event's id in its log (to resume after), and over the
# WebSocket the query's own `request_id`.
DELIVERY_FIELDS: Fields = {"event_id": _TEXT, "request_id": (str, int)}
USAGE_FIELDS = frozenset(
    {
        "prompt_tokens",
        "prompt_unit_price",
        "prompt_price_unit",
        "prompt_price",
        "completion_tokens",
        "completion_unit_price",
        "completion_price_unit",
        "completion_price",
        "total_tokens",
        "total_price",
        "currency",
        "latency",
        "time_to_first_token",
    }
)


def event_problems(event: dict[str, Any]) -> list[str]:
    """What is wrong with `event` as an answer event a client receives (empty: nothing)."""
    try:
        kind = AnswerEvent(str(event.get("event")))
    except ValueError:
        return [f"unknown event {event.get('event')!r}"]
    declared = EVENT_FIELDS[kind]
    allowed = {"event": _TEXT, **declared.required, **declared.optional, **DELIVERY_FIELDS}
    problems = [f"{kind}: no {name}" for name in declared.required if name not in event]
    for name, value in event.items():
        if name not in allowed:
            problems.append(f"{kind}: unknown field {name}")
        elif not isinstance(value, allowed[name]) or isinstance(value, bool):
            problems.append(f"{kind}: {name} is {type(value).__name__}")
    if kind == AnswerEvent.MESSAGE_END and isinstance(event.get("metadata"), dict):
        metadata = event["metadata"]
        usage = metadata.get("usage")
        if not isinstance(usage, dict) or set(usage) != USAGE_FIELDS:
            problems.append(f"{kind}: metadata.usage is not Dify's usage")
        if "retriever_resources" not in metadata:
            problems.append(f"{kind}: metadata has no retriever_resources")
    return problems
