"""The `suggested_questions` task kind: follow-up questions after a chat answer, for apps that
turn on `suggested_questions_after_answer` (Dify's feature, read by GET
/v1/messages/{id}/suggested).

Low-priority work queued when an answer succeeds, like titling, so it never slows an answer
down; a caller who asks before it ran waits for the event it publishes.
"""

import asyncio
import json
import re
from typing import Any

from apps.conversations.models import Message, MessageStatus
from apps.conversations.services import SUGGESTIONS_KIND
from apps.dify.events import AnswerEvent
from apps.generation.routing import model_task_route, serving_endpoint, serving_provider
from apps.providers.base import ChatMessage, GenerationRequest, ProviderError
from apps.scheduling.coordination.stops import StopReason
from apps.scheduling.models import Task
from apps.scheduling.tasks.errors import RetryableTaskError, TaskCancelled
from apps.scheduling.tasks.kinds import FinalFailure, RunContext, TaskKind
from apps.streams.feeds import events_follow
from apps.streams.log import event_append

SUGGESTED_EVENT = "suggested_questions"
# The events that end the task's log: its result, or why there is none.
ENDED_BY = frozenset({SUGGESTED_EVENT, AnswerEvent.ERROR})
MAX_QUESTIONS = 3
MAX_QUESTION_CHARS = 200
SUGGESTION_MAX_TOKENS = 128
EXCERPT_CHARS = 1500
MAX_ATTEMPTS = 3

INSTRUCTIONS = (
    "Suggest the questions the user is most likely to ask next, given the exchange below. "
    f"Write {MAX_QUESTIONS} short questions in the language the user wrote in, each under 20 "
    'words. Reply with a JSON array of strings only, e.g. ["First?", "Second?", "Third?"].'
)
_ARRAY = re.compile(r"\[.*?\]", re.DOTALL)
_BULLET = re.compile(r"^\s*(?:[-*•]+|\d+[.)]|Q\d*[:.])\s*", re.IGNORECASE)
_EDGES = " \t\"'`“”«»"


def questions_parse(raw: str) -> list[str]:
    """Questions from a model's reply: a JSON array if it wrote one, else its lines, without
    numbering, bullets or quotes; at most MAX_QUESTIONS, each once."""
    candidates: list[str] = []
    found = _ARRAY.search(raw)
    if found:
        try:
            parsed = json.loads(found.group())
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            candidates = [item for item in parsed if isinstance(item, str)]
    if not candidates:
        candidates = [_BULLET.sub("", line) for line in raw.splitlines()]
    questions: list[str] = []
    for candidate in candidates:
        question = " ".join(candidate.split()).strip(_EDGES)[:MAX_QUESTION_CHARS].strip()
        if question and question.lower() not in {seen.lower() for seen in questions}:
            questions.append(question)
    return questions[:MAX_QUESTIONS]


def _message(message_id: str) -> Message | None:
    return Message.objects.select_related("app").filter(id=message_id).first()


def _save(message_id: str, questions: list[str]) -> None:
    Message.objects.filter(id=message_id).update(suggested_questions=questions)


async def _suggested(task: Task, message: Message, context: RunContext) -> list[str]:
    app = message.app
    endpoint = await context.db(serving_endpoint, task, context.deployment)
    exchange = f"User: {message.query[:EXCERPT_CHARS]}\nAssistant: {message.answer[:EXCERPT_CHARS]}"
    request = GenerationRequest(
        messages=[ChatMessage("system", INSTRUCTIONS), ChatMessage("user", exchange)],
        model=endpoint.model,
        max_tokens=SUGGESTION_MAX_TOKENS,
        temperature=0.0,
        top_p=app.top_p,
        attempt=context.attempt,
        timeout_s=context.time_left_s(),
    )
    pieces: list[str] = []

    def on_delta(text: str) -> bool:
        pieces.append(text)
        return context.should_stop()

    try:
        await context.until_stopped(serving_provider(endpoint).generate(request, on_delta))
    except ProviderError as error:
        if error.retryable:
            raise RetryableTaskError(str(error)) from error
        return []  # the model refuses this for good: no suggestions
    return questions_parse("".join(pieces))


async def suggested_questions_run(task: Task, context: RunContext) -> dict[str, Any]:
    message_id = str(task.payload["message_id"])
    message = await context.db(_message, message_id)
    if message is None:
        return {"message_id": message_id, "questions": [], "why": "the message is gone"}
    if message.suggested_questions is not None:
        # An urgent request for a caller who waited made them already: the model is not asked
        # twice.
        questions = list(message.suggested_questions)
        return {"message_id": message_id, "questions": questions, "saved": False}
    answered = message.status in (MessageStatus.NORMAL, MessageStatus.STOPPED) and message.answer
    questions = await _suggested(task, message, context) if answered else []
    if context.stop_reason == StopReason.CANCEL:
        raise TaskCancelled("cancelled (the conversation was deleted, or by an operator)")
    if context.stop_reason in (StopReason.ABANDONED, StopReason.SHUTDOWN):
        return {"message_id": message_id, "questions": questions, "saved": False}
    context.write_on_success(lambda: _save(message_id, questions))
    return {"message_id": message_id, "questions": questions, "saved": True}


def suggested_questions_succeeded(task: Task) -> None:
    event_append(
        task_id=str(task.id),
        event={"event": SUGGESTED_EVENT, "data": task.result.get("questions", [])},
    )


def suggested_questions_final_failure(task: Task, failure: FinalFailure) -> None:
    """The model never answered: no suggestions for this message (a caller waiting is told)."""
    if failure.status != "cancelled":
        _save(str(task.payload.get("message_id", "")), [])
    event_append(
        task_id=str(task.id),
        event={"event": AnswerEvent.ERROR, "code": failure.code, "message": failure.message},
    )


SUGGESTIONS_TASK_KIND = TaskKind(
    name=SUGGESTIONS_KIND,
    run=suggested_questions_run,
    route=model_task_route,
    on_success=suggested_questions_succeeded,
    on_final_failure=suggested_questions_final_failure,
    max_attempts=MAX_ATTEMPTS,
)


async def suggested_questions_wait(*, task_id: str, timeout_s: float) -> bool:
    """Wait until the task has ended, with questions or not; False when `timeout_s` ran out.
    Followed through the process's shared feed: no thread and no connection held meanwhile."""
    try:
        async with asyncio.timeout(timeout_s):
            async for event in events_follow(task_id=task_id, until=ENDED_BY):
                if event is not None and event.kind in ENDED_BY:
                    return True
    except TimeoutError:
        return False
    return False
