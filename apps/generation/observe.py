"""After an answer ends: queue its suggested questions, tell the client, title a new
conversation, record metrics."""

import logging

from apps.conversations.models import Message
from apps.conversations.services import conversation_name_request, message_suggestions_request
from apps.core.metrics import TOKEN_BUCKETS, MetricsBatch
from apps.core.priorities import Priority
from apps.generation.answer import answer_final_failure
from apps.generation.attempt import attempt_message_saved
from apps.generation.events import AnswerPublisher
from apps.scheduling.models import Task
from apps.scheduling.tasks.kinds import FinalFailure

logger = logging.getLogger(__name__)


def _answer_message(task: Task) -> Message | None:
    return (
        Message.objects.select_related("app", "conversation__app")
        .filter(id=task.payload.get("message_id"))
        .first()
    )


def answer_succeeded_observed(task: Task) -> None:
    """The answer and the task are committed: the client hears `message_end` only now."""
    message = attempt_message_saved(task)
    if message is None:
        return
    _suggest_questions(message)
    AnswerPublisher(task_id=str(task.id), message=message, quiet=task.bulk).end()
    _name_conversation(task, message)
    labels = {"provider": message.provider or "unknown"}
    metrics = MetricsBatch()
    metrics.inc("dp_completion_tokens_total", labels, message.completion_tokens)
    metrics.inc("dp_prompt_tokens_total", labels, message.prompt_tokens)
    metrics.observe(
        "dp_completion_tokens", float(message.completion_tokens), labels, buckets=TOKEN_BUCKETS
    )
    if message.first_token_s is not None:
        metrics.observe("dp_time_to_first_token_seconds", message.first_token_s, labels)
    metrics.send()


def answer_failed_observed(task: Task, failure: FinalFailure) -> None:
    answer_final_failure(task, failure)
    message = _answer_message(task)
    if message is not None:
        _name_conversation(task, message)


def _name_conversation(task: Task, message: Message) -> None:
    """Title a new conversation once its first answer has ended (well or not): titling works from
    the first exchange and never competes with the answer for a worker."""
    if task.payload.get("name_conversation") and message.conversation is not None:
        conversation_name_request(
            conversation=message.conversation, requested_priority=Priority.LOW
        )


def _suggest_questions(message: Message) -> None:
    """Follow-up questions for a chat answer, if the app wants them: queued before the client
    hears `message_end`, so one who asks for them at once finds the work under way. A failure
    here must not keep the answer from ending: the suggestions are then made when asked for."""
    if not message.app.suggested_questions_after_answer or message.conversation_id is None:
        return
    try:
        message_suggestions_request(message=message, requested_priority=Priority.LOW)
    except Exception:
        logger.exception("suggested questions not queued", extra={"message_id": str(message.id)})
