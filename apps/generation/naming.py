"""The `conversation_name` task kind: a short title for a conversation, from its first exchange.

It runs as low-priority work after the first answer, so titling never slows an answer down; a
rename with `auto_generate` runs it urgently while the caller waits for the event it publishes.
"""

import asyncio
import re
from typing import Any

from django.utils import timezone

from apps.conversations.models import Conversation, Message, MessageStatus
from apps.conversations.selectors import conversation_first_message
from apps.conversations.services import NAMING_KIND, NEW_CONVERSATION_NAME
from apps.dify.events import AnswerEvent
from apps.generation.routing import model_task_route, serving_endpoint, serving_provider
from apps.providers.base import ChatMessage, GenerationRequest, ProviderError
from apps.scheduling.coordination.stops import StopReason
from apps.scheduling.models import Task
from apps.scheduling.tasks.errors import RetryableTaskError, TaskCancelled
from apps.scheduling.tasks.kinds import FinalFailure, RunContext, TaskKind
from apps.streams.feeds import events_follow
from apps.streams.log import event_append

TITLE_MAX_TOKENS = 16
TITLE_MAX_WORDS = 8
TITLE_MAX_CHARS = 60
FALLBACK_WORDS = 6
# The first answer may wait behind other work: with backoff, 8 attempts wait up to ~2 minutes.
NAMING_MAX_ATTEMPTS = 8
EXCERPT_CHARS = 500
NAMED_EVENT = "conversation_name"
# The events that end the task's log: its result, or why there is none.
ENDED_BY = frozenset({NAMED_EVENT, AnswerEvent.ERROR})

INSTRUCTIONS = (
    "Write a short title (3 to 6 words) for a conversation that begins with the exchange below. "
    "Reply with the title only, no quotes."
)
_QUOTED = re.compile(r"[\"“«]([^\"”»]{2,})[\"”»]")
_LABEL = re.compile(r"^(?:(?:the\s+)?title\s+is\b|title\s*:)\s*:?\s*", re.IGNORECASE)
_EDGES = " \t\"'`*#_“”«»:;,.!?-"


def _shorten(text: str, max_words: int) -> str:
    words = text.split()[:max_words]
    title = " ".join(words)
    if len(title) > TITLE_MAX_CHARS:
        title = title[:TITLE_MAX_CHARS].rsplit(" ", 1)[0] or title[:TITLE_MAX_CHARS]
    return title.strip(_EDGES)


def title_clean(raw: str) -> str:
    """The title in a model's reply: its first line, without labels, quotes or markup."""
    line = next((part for part in raw.splitlines() if part.strip()), "").strip()
    quoted = _QUOTED.search(line)
    if quoted:
        line = quoted.group(1)
    line = _LABEL.sub("", line.strip(_EDGES))
    return _shorten(line, TITLE_MAX_WORDS)


def title_fallback(query: str) -> str:
    """A title from the first question's words, for when the model gave nothing usable."""
    return _shorten(query, FALLBACK_WORDS) or NEW_CONVERSATION_NAME


async def _title_from_model(task: Task, first: Message, context: RunContext) -> str:
    app = first.app
    endpoint = await context.db(serving_endpoint, task, context.deployment)
    exchange = f"User: {first.query[:EXCERPT_CHARS]}"
    if first.answer:
        exchange += f"\nAssistant: {first.answer[:EXCERPT_CHARS]}"
    request = GenerationRequest(
        messages=[
            ChatMessage("system", INSTRUCTIONS),
            ChatMessage("user", f"{exchange}\n\nTitle:"),
        ],
        model=endpoint.model,
        max_tokens=TITLE_MAX_TOKENS,
        temperature=0.0,
        top_p=app.top_p,
        stop=["\n"],
        attempt=context.attempt,
        timeout_s=context.time_left_s(),
    )
    pieces: list[str] = []

    def on_delta(text: str) -> bool:
        pieces.append(text)
        return context.should_stop()

    try:
        provider = serving_provider(endpoint)
        await context.until_stopped(provider.generate(request, on_delta))
    except ProviderError as error:
        if error.retryable:
            raise RetryableTaskError(str(error)) from error
        return ""  # the model refuses this request for good: the fallback title will do
    return title_clean("".join(pieces))


def _save(conversation_id: str, name: str, automatic: bool) -> bool:
    """Store the title. Automatic naming fills only the default name, so it never overwrites a
    name the user chose meanwhile; neither moves the conversation up the recent list."""
    rows = Conversation.objects.filter(id=conversation_id)
    if automatic:
        return rows.filter(name=NEW_CONVERSATION_NAME).update(name=name) > 0
    return rows.update(name=name, updated_at=timezone.now()) > 0


async def conversation_name_run(task: Task, context: RunContext) -> dict[str, Any]:
    conversation_id = str(task.payload["conversation_id"])
    automatic = bool(task.payload.get("automatic", True))
    first = await context.db(conversation_first_message, conversation_id=conversation_id)
    if first is None:
        return {"conversation_id": conversation_id, "named": False, "why": "no messages"}
    if automatic and first.status == MessageStatus.PENDING:
        # Nothing waits on this task: try again after the backoff, when the answer is likely in.
        raise RetryableTaskError("the first answer is not ready yet")
    title = (
        "" if first.status == MessageStatus.ERROR else await _title_from_model(task, first, context)
    )
    if context.stop_reason == StopReason.CANCEL:
        raise TaskCancelled("cancelled (the conversation was deleted, or by an operator)")
    name = title or title_fallback(first.query)
    if context.stop_reason in (StopReason.ABANDONED, StopReason.SHUTDOWN):
        return {"conversation_id": conversation_id, "named": False, "name": name}
    named = await context.db(_save, conversation_id, name, automatic)
    return {"conversation_id": conversation_id, "named": named, "name": name}


def conversation_name_succeeded(task: Task) -> None:
    event_append(task_id=str(task.id), event={"event": NAMED_EVENT, **task.result})


def conversation_name_final_failure(task: Task, failure: FinalFailure) -> None:
    """The model never answered: the first question's words still make a better name."""
    conversation_id = str(task.payload.get("conversation_id", ""))
    first = conversation_first_message(conversation_id=conversation_id)
    if first is not None and failure.status != "cancelled":
        _save(conversation_id, title_fallback(first.query), task.payload.get("automatic", True))
    event_append(
        task_id=str(task.id),
        event={"event": AnswerEvent.ERROR, "code": failure.code, "message": failure.message},
    )


async def conversation_name_wait(*, task_id: str, timeout_s: float) -> bool:
    """Wait until the naming task has ended, named or not; False when `timeout_s` ran out. The
    task's log is followed through the process's shared feed: no thread and no Redis connection
    is held while it waits."""
    try:
        async with asyncio.timeout(timeout_s):
            async for event in events_follow(task_id=task_id, until=ENDED_BY):
                if event is not None and event.kind in ENDED_BY:
                    return True
    except TimeoutError:
        return False
    return False


NAMING_TASK_KIND = TaskKind(
    name=NAMING_KIND,
    run=conversation_name_run,
    route=model_task_route,
    on_success=conversation_name_succeeded,
    on_final_failure=conversation_name_final_failure,
    max_attempts=NAMING_MAX_ATTEMPTS,
)
