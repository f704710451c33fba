"""The `chat` and `completion` task kinds: turn a task into an answer, streamed as events."""

import logging
import time
from typing import Any

from django.conf import settings

from apps.conversations.models import Message, MessageStatus
from apps.generation.events import AnswerPublisher
from apps.generation.prompts import build_messages
from apps.providers.base import GenerationRequest, GenerationResult, ProviderError
from apps.providers.registry import provider_for
from apps.scheduling.errors import PermanentTaskError, RetryableTaskError, TaskCancelled
from apps.scheduling.kinds import FinalFailure, RunContext
from apps.scheduling.models import Task

logger = logging.getLogger(__name__)

# HTTP status the client sees for each final error code.
STATUS_BY_CODE = {
    "completion_request_error": 400,
    "deadline_exceeded": 504,
    "cancelled": 499,
    "internal_server_error": 500,
}


def _message_for(task: Task) -> Message:
    return Message.objects.select_related("app").get(id=task.payload["message_id"])


def _generation_request(task: Task, message: Message, context: RunContext) -> GenerationRequest:
    app = message.app
    return GenerationRequest(
        messages=build_messages(
            app=app, message=message, context_tokens=settings.PLATFORM["LOCAL_MODEL_CONTEXT"]
        ),
        model=app.model_name,
        max_tokens=app.max_tokens,
        temperature=app.temperature,
        top_p=app.top_p,
        stop=list(app.stop or []),
        attempt=context.attempt,
        timeout_s=context.time_left_s(),
    )


def answer_run(task: Task, context: RunContext) -> dict[str, Any]:
    """Generate the answer for the task's message, publishing each piece as it comes."""
    message = _message_for(task)
    publisher = AnswerPublisher(task_id=str(task.id), message=message)
    if context.attempt > 1 and publisher.text_already_sent():
        publisher.replace("", reason="retry")

    pieces: list[str] = []
    started = time.monotonic()
    first_token_at: float | None = None

    def on_delta(text: str) -> bool:
        nonlocal first_token_at
        if first_token_at is None:
            first_token_at = time.monotonic()
        pieces.append(text)
        publisher.text(text)
        return context.should_stop()

    if context.should_stop():
        # Stopped while still queued: there is nothing to generate.
        result = GenerationResult(prompt_tokens=0, completion_tokens=0, finish_reason="user_stop")
    else:
        provider = provider_for(kind=message.app.provider, config=message.app.provider_config)
        try:
            result = provider.generate(_generation_request(task, message, context), on_delta)
        except ProviderError as error:
            if error.retryable:
                raise RetryableTaskError(str(error)) from error
            raise PermanentTaskError(str(error)) from error
    if context.stop_reason == "cancel":
        raise TaskCancelled("cancelled by an operator")

    message.answer = "".join(pieces)
    message.status = (
        MessageStatus.STOPPED if result.finish_reason == "user_stop" else MessageStatus.NORMAL
    )
    message.provider = message.app.provider
    message.model_name = message.app.model_name
    message.prompt_tokens = result.prompt_tokens
    message.completion_tokens = result.completion_tokens
    message.latency_s = time.monotonic() - started
    message.first_token_s = (first_token_at - started) if first_token_at is not None else None
    message.error = ""
    message.save()
    return {
        "message_id": str(message.id),
        "finish_reason": result.finish_reason,
        "completion_tokens": result.completion_tokens,
    }


def answer_succeeded(task: Task) -> None:
    """The answer and the task are committed: tell the client the answer is complete."""
    AnswerPublisher(task_id=str(task.id), message=_message_for(task)).end()


def answer_final_failure(task: Task, failure: FinalFailure) -> None:
    """Tell the client the answer will not come, and record why on the message."""
    message = _message_for(task)
    Message.objects.filter(id=message.id).update(
        status=MessageStatus.ERROR, error=failure.message[:2000]
    )
    status = STATUS_BY_CODE.get(failure.code, 500)
    client_message = (
        failure.message if failure.code != "internal_server_error" else "Internal Server Error."
    )
    AnswerPublisher(task_id=str(task.id), message=message).error(
        status=status, code=failure.code, message=client_message
    )
