"""What follows an answer's end, once PostgreSQL has recorded it (the answer kinds' success and
final-failure hooks): the client is told (`message_end` or `error`), suggested questions are
queued, a new conversation is titled, the answer's figures recorded."""

import logging

from apps.conversations.models import Message, MessageStatus
from apps.conversations.services import conversation_name_request, message_suggestions_request
from apps.core.errors import status_of
from apps.core.metrics import TOKEN_BUCKETS, MetricsBatch
from apps.core.priorities import Priority
from apps.dify.events import client_error_message, error_event
from apps.generation.attempt import attempt_message_saved
from apps.generation.publishing import AnswerPublisher
from apps.scheduling.models import Task
from apps.scheduling.tasks.kinds import FinalFailure
from apps.streams.log import event_append

logger = logging.getLogger(__name__)


def _answer_message(task: Task) -> Message | None:
    return (
        Message.objects.select_related("app", "conversation__app")
        .filter(id=task.payload.get("message_id"))
        .first()
    )


def answer_succeeded(task: Task) -> None:
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


def answer_failed(task: Task, failure: FinalFailure) -> None:
    """The answer will not come: the client is told why, and the message records it."""
    status = status_of(failure.code)
    reported = client_error_message(failure.code, failure.message)
    message = _answer_message(task)
    if message is None:
        # Deleted with its conversation while it ran: nothing left to record, but whoever
        # follows the stream still hears that it ended, and why.
        message_id = str(task.payload["message_id"])
        header = {"id": message_id, "message_id": message_id}
        event = error_event(header, status=status, code=failure.code, message=reported)
        event_append(task_id=str(task.id), event=event)
        return
    Message.objects.filter(id=message.id).update(
        status=MessageStatus.ERROR, error=failure.message[:2000]
    )
    AnswerPublisher(task_id=str(task.id), message=message, quiet=task.bulk).error(
        status=status, code=failure.code, message=reported
    )
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
