"""Turning an app, its inputs and a conversation into the messages a model sees."""

import re
from typing import Any

from apps.applications.models import App, AppMode
from apps.conversations.models import Message, MessageStatus
from apps.providers.base import ChatMessage

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# A rough budget: about four characters per token for English text with this tokenizer family.
CHARS_PER_TOKEN = 4
MAX_HISTORY_TURNS = 50


def render_template(template: str, inputs: dict[str, Any]) -> str:
    """Replace `{{variable}}` with the input's value; unknown variables become empty."""
    return _VARIABLE.sub(lambda match: str(inputs.get(match.group(1), "")), template)


def _estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


def conversation_history(message: Message) -> list[Message]:
    """Earlier answered turns of the message's conversation, oldest first."""
    if message.conversation_id is None:
        return []
    earlier = (
        Message.objects.filter(
            conversation_id=message.conversation_id,
            created_at__lt=message.created_at,
            status__in=(MessageStatus.NORMAL, MessageStatus.STOPPED),
        )
        .order_by("-created_at")
        .only("query", "answer")[:MAX_HISTORY_TURNS]
    )
    return list(reversed(earlier))


def build_messages(*, app: App, message: Message, context_tokens: int) -> list[ChatMessage]:
    """System prompt, as many recent turns as fit the context window, then the new question.

    The oldest turns are dropped first; the system prompt and the question are always kept.
    """
    instructions = render_template(app.system_prompt, message.inputs).strip()
    if app.mode == AppMode.COMPLETION:
        parts = [part for part in (instructions, message.query.strip()) if part]
        return [ChatMessage("user", "\n\n".join(parts) or " ")]

    head = [ChatMessage("system", instructions)] if instructions else []
    question = ChatMessage("user", message.query)
    budget = (
        context_tokens
        - app.max_tokens
        - sum(_estimate_tokens(m.content) for m in [*head, question])
    )
    turns: list[ChatMessage] = []
    for earlier in reversed(conversation_history(message)):
        pair = [ChatMessage("user", earlier.query), ChatMessage("assistant", earlier.answer)]
        cost = sum(_estimate_tokens(m.content) for m in pair)
        if cost > budget:
            break
        budget -= cost
        turns[:0] = pair
    return [*head, *turns, question]
