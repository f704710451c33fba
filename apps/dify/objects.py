"""Dify's answer objects: the blocking response of the answer routes, and /api/v1/ask's."""

from typing import Any

from apps.dify.answers import CollectedAnswer
from apps.dify.events import AnswerEvent, AnswerHeader


def blocking_answer(header: AnswerHeader, mode: str, collected: CollectedAnswer) -> dict[str, Any]:
    """`response_mode: blocking`: the whole answer with its usage."""
    body: dict[str, Any] = {
        "event": AnswerEvent.MESSAGE,
        "task_id": header.task_id,
        "id": header.message_id,
        "message_id": header.message_id,
    }
    if header.conversation_id is not None:
        body["conversation_id"] = header.conversation_id
    body.update(
        mode=mode,
        answer=collected.answer,
        metadata=collected.end_event.get("metadata", {}),
        created_at=header.created_at,
    )
    return body


def ask_answer(task_id: str, collected: CollectedAnswer, duration_ms: float) -> dict[str, Any]:
    """(ext) /api/v1/ask: the moderated answer as `response`."""
    return {"response": collected.answer, "task_id": task_id, "duration_ms": duration_ms}
