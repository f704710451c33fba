"""Turning an app, its inputs and a conversation into the messages a model sees, within the
model's context window."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apps.applications.models import App, AppMode
from apps.conversations.models import Message, MessageStatus
from apps.generation.attachments import NO_ATTACHMENTS, Attachments, Document
from apps.providers.base import ChatMessage

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MAX_HISTORY_TURNS = 50
# An answer needs some room: a prompt that leaves less than this is refused, not cut.
MIN_ANSWER_TOKENS = 16
# Before the exact count, history far beyond the window is cut on characters alone: no real text
# packs more than this many characters into one token, so nothing that could fit is lost.
MAX_CHARS_PER_TOKEN = 16
DOCUMENTS_INTRO = "The user attached these files:"
CUT_NOTE = "\n[… the rest of this file did not fit in the model's context window]"

TokenCounter = Callable[[list[ChatMessage]], int]


class PromptTooLong(Exception):
    """The instructions and the question alone leave the model no room to answer. `needed`:
    the context window it would take (None: not known)."""

    def __init__(self, message: str, *, needed: int | None = None) -> None:
        super().__init__(message)
        self.needed = needed


@dataclass(frozen=True)
class Prompt:
    messages: list[ChatMessage]
    prompt_tokens: int
    # The answer's budget: the app's max tokens, or what the window has left when that is less.
    max_tokens: int
    history_turns: int
    history_dropped: int


def render_template(template: str, inputs: dict[str, Any]) -> str:
    """Replace `{{variable}}` with the input's value; unknown variables become empty."""
    return _VARIABLE.sub(lambda match: str(inputs.get(match.group(1), "")), template)


def conversation_history(message: Message, *, first_turn: bool = False) -> list[Message]:
    """Earlier answered turns of the message's conversation, oldest first. `first_turn`: the
    message opened its conversation, so there is nothing to read."""
    if message.conversation_id is None or first_turn:
        return []
    earlier = (
        Message.objects.filter(
            conversation_id=message.conversation_id,
            created_at__lt=message.created_at,
            status__in=(MessageStatus.NORMAL, MessageStatus.STOPPED),
        )
        .exclude(answer="")
        .order_by("-created_at")
        .only("query", "answer")[:MAX_HISTORY_TURNS]
    )
    return list(reversed(earlier))


def prompt_build(
    *,
    app: App,
    message: Message,
    count: TokenCounter,
    context_tokens: int,
    first_turn: bool = False,
    attachments: Attachments = NO_ATTACHMENTS,
) -> Prompt:
    """The system prompt, as many of the most recent turns as fit, then the new question with
    its files (images as parts; documents' text before the question, cut to the room there is).

    The oldest turns are dropped first; the system prompt and the question are always kept, and
    prompt plus answer never exceed `context_tokens` as `count` measures them. A stateless
    request's own turns (`message.history`) are all kept, or the prompt is refused: the client
    decides what its conversation holds.
    """
    instructions = render_template(app.system_prompt, message.inputs).strip()
    images = attachments.images
    budget = answer_budget(app, message)
    room = context_tokens - budget  # what the prompt may take
    if message.history is not None:
        return _stateless_prompt(
            instructions, message, count, context_tokens, budget, room, attachments
        )
    if app.mode == AppMode.COMPLETION:

        def completion(documents: str) -> list[ChatMessage]:
            parts = [part for part in (instructions, documents, message.query.strip()) if part]
            return [ChatMessage("user", "\n\n".join(parts) or " ", images)]

        messages = completion(_documents_fitted(attachments.documents, completion, room, count))
        return _fitted(budget, messages, count(messages), context_tokens, turns=0, dropped=0)

    head = [ChatMessage("system", instructions)] if instructions else []

    def asked(documents: str) -> list[ChatMessage]:
        text = f"{documents}\n\n{message.query}" if documents else message.query
        return [*head, ChatMessage("user", text, images)]

    # The question's own files come before older turns: history fills the room they leave.
    question = asked(_documents_fitted(attachments.documents, asked, room, count))[-1]
    turns = [
        (ChatMessage("user", earlier.query), ChatMessage("assistant", earlier.answer))
        for earlier in conversation_history(message, first_turn=first_turn)
    ]

    def build(kept: int) -> list[ChatMessage]:
        recent = turns[len(turns) - kept :] if kept else []
        return [*head, *(m for pair in recent for m in pair), question]

    kept = _loose_fit(turns, room * MAX_CHARS_PER_TOKEN)
    tokens = count(build(kept))
    if tokens > room and kept > 0:
        # The most recent `low` turns fit and `high` do not: halve the gap with exact counts.
        low, high = 0, kept
        tokens_low = count(build(0))
        while high - low > 1:
            middle = (low + high) // 2
            tokens_middle = count(build(middle))
            if tokens_middle <= room:
                low, tokens_low = middle, tokens_middle
            else:
                high = middle
        kept, tokens = low, tokens_low
    return _fitted(
        budget, build(kept), tokens, context_tokens, turns=kept, dropped=len(turns) - kept
    )


# The roles a stateless request's turns may have, as the model is given them (OpenAI's
# `developer` is the newer name of `system`).
CLIENT_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def answer_budget(app: App, message: Message) -> int:
    """The most tokens the answer may take: the request's own limit, else the app's."""
    requested = (message.generation or {}).get("max_tokens")
    return int(requested) if requested else app.max_tokens


def _stateless_prompt(
    instructions: str,
    message: Message,
    count: TokenCounter,
    context_tokens: int,
    budget: int,
    room: int,
    attachments: Attachments,
) -> Prompt:
    """The app's instructions, then the client's turns as it sent them, then its question."""
    head = [ChatMessage("system", instructions)] if instructions else []
    turns = [
        ChatMessage(CLIENT_ROLES[turn["role"]], str(turn["content"]))
        for turn in message.history or []
    ]

    def asked(documents: str) -> list[ChatMessage]:
        text = f"{documents}\n\n{message.query}" if documents else message.query
        return [*head, *turns, ChatMessage("user", text, attachments.images)]

    messages = asked(_documents_fitted(attachments.documents, asked, room, count))
    return _fitted(budget, messages, count(messages), context_tokens, turns=len(turns), dropped=0)


def _document_block(documents: tuple[Document, ...], cap: int | None) -> str:
    """The documents as the prompt shows them, each cut to `cap` characters (None: whole)."""
    if not documents:
        return ""
    shown = [DOCUMENTS_INTRO]
    for document in documents:
        text = document.text if cap is None else document.text[:cap]
        cut = document.truncated or len(text) < len(document.text)
        name = document.name.replace('"', "'")
        shown.append(f'<file name="{name}">\n{text}{CUT_NOTE if cut else ""}\n</file>')
    return "\n\n".join(shown)


def _documents_fitted(
    documents: tuple[Document, ...],
    build: Callable[[str], list[ChatMessage]],
    room: int,
    count: TokenCounter,
) -> str:
    """The documents' block, whole if it fits in `room` tokens with the rest of `build`'s
    prompt; else every document cut to the same, largest number of characters that fits (each
    keeps its start and says it was cut)."""
    if not documents:
        return ""
    whole = _document_block(documents, None)
    if count(build(whole)) <= room:
        return whole
    longest = max(len(document.text) for document in documents)
    low, high = 0, min(longest, room * MAX_CHARS_PER_TOKEN)
    if count(build(_document_block(documents, 0))) > room:
        raise PromptTooLong(
            "The attached files leave the model no room: its context window is too small for "
            "them with the query and the app's instructions."
        )
    while high - low > 1:
        middle = (low + high) // 2
        if count(build(_document_block(documents, middle))) <= room:
            low = middle
        else:
            high = middle
    return _document_block(documents, low)


def _loose_fit(turns: list[tuple[ChatMessage, ChatMessage]], max_chars: int) -> int:
    """How many recent turns could possibly fit in `max_chars` characters."""
    kept, chars = 0, 0
    for question, answer in reversed(turns):
        chars += len(question.content) + len(answer.content)
        if chars > max_chars:
            break
        kept += 1
    return kept


def _fitted(
    budget: int,
    messages: list[ChatMessage],
    tokens: int,
    context_tokens: int,
    *,
    turns: int,
    dropped: int,
) -> Prompt:
    left = context_tokens - tokens
    if left < min(MIN_ANSWER_TOKENS, budget):
        raise PromptTooLong(
            f"The prompt takes {tokens} tokens and the model's context window is "
            f"{context_tokens}: shorten the query, the inputs or the app's instructions.",
            needed=tokens + min(MIN_ANSWER_TOKENS, budget),
        )
    return Prompt(
        messages=messages,
        prompt_tokens=tokens,
        max_tokens=min(budget, left),
        history_turns=turns,
        history_dropped=dropped,
    )
