"""The `chat` and `completion` task kinds: turn a task into an answer, streamed as events.

Input moderation first (a matching question gets the app's preset reply and the model is never
called), then the prompt within the model's context window, then the model's stream through
output moderation to the client; usage is recorded on the message.
"""

import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.conversations.models import Message, MessageStatus
from apps.conversations.pricing import PRICE_FIELDS, message_price
from apps.deployments.selectors import Endpoint
from apps.dify.events import ReplaceReason
from apps.generation.attachments import Attachments, attachments_prepare
from apps.generation.attempt import attempt_message
from apps.generation.moderation import input_refusal, output_rules
from apps.generation.prompts import MAX_CHARS_PER_TOKEN, Prompt, PromptTooLong, prompt_build
from apps.generation.publishing import AnswerPublisher
from apps.generation.routing import MIN_CONTEXT, larger_window, serving_endpoint, serving_provider
from apps.generation.stream import AnswerStream
from apps.providers.base import GenerationRequest, GenerationResult, Provider, ProviderError
from apps.scheduling.coordination.capacity import CallOutcome
from apps.scheduling.coordination.stops import StopReason
from apps.scheduling.models import Task
from apps.scheduling.tasks.errors import (
    PermanentTaskError,
    Reroute,
    RetryableTaskError,
    TaskCancelled,
    TaskError,
)
from apps.scheduling.tasks.kinds import RunContext

logger = logging.getLogger(__name__)

# What an attempt writes on its message.
ANSWER_FIELDS = (
    "answer",
    "status",
    "provider",
    "model_name",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "first_token_s",
    "error",
    "finish_reason",
    *PRICE_FIELDS,
)
# Options a request may pass on to the model besides the common ones (OpenAI's names).
PASSED_OPTIONS = ("seed", "presence_penalty", "frequency_penalty")


@dataclass(frozen=True)
class GeneratedAnswer:
    """What one attempt produced: the answer as the client has it, and how it came about."""

    answer: str
    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token_s: float | None = None


def task_error(error: ProviderError) -> TaskError:
    """The scheduler's view of a provider failure: retry it or fail at once, with which code the
    client is told if this is the last attempt, and what it says of the deployment (a server
    that failed, or refused for load, is cooled down: apps.scheduling.coordination.capacity)."""
    failure: TaskError
    if error.retryable:
        failure = RetryableTaskError(str(error))
        if error.code:
            failure.code = error.code
    else:
        failure = PermanentTaskError(str(error), code=error.code or "completion_request_error")
    if error.status == 429:
        failure.deployment_outcome = CallOutcome.REFUSED
        failure.retry_after_s = error.retry_after_s
    elif error.unreachable:
        failure.deployment_outcome = CallOutcome.UNREACHABLE
    elif error.server_fault:
        failure.deployment_outcome = CallOutcome.FAILED
    return failure


async def answer_run(task: Task, context: RunContext) -> dict[str, Any]:
    """Generate the answer for the task's message, publishing each piece as it comes. The
    message is saved with the attempt's success (fenced: see RunContext.write_on_success)."""
    message = await context.db(attempt_message, task, context.attempt)
    endpoint = await context.db(serving_endpoint, task, context.deployment)
    publisher = AnswerPublisher(
        task_id=str(task.id),
        message=message,
        log=None if task.bulk else context.log(),
        quiet=task.bulk,
    )
    if context.attempt > 1 and await context.db(publisher.text_may_have_been_sent):
        publisher.replace("", reason=ReplaceReason.RETRY)

    started = time.monotonic()
    if context.should_stop():
        # Stopped while still queued: there is nothing to generate.
        generated = GeneratedAnswer(answer="", finish_reason="user_stop")
    else:
        refusal = input_refusal(
            app=message.app, query=message.query, inputs=message.inputs, history=message.history
        )
        if refusal is not None:
            publisher.text(refusal)
            generated = GeneratedAnswer(
                answer=refusal,
                finish_reason="moderated",
                first_token_s=time.monotonic() - started,
            )
        else:
            first_turn = bool(task.payload.get("first_turn"))
            generated = await _generate(
                task, message, endpoint, publisher, context, started, first_turn
            )
    if context.stop_reason == StopReason.CANCEL:
        raise TaskCancelled("cancelled by an operator")

    message.answer = generated.answer
    message.status = (
        MessageStatus.STOPPED if generated.finish_reason == "user_stop" else MessageStatus.NORMAL
    )
    message.provider = endpoint.provider
    message.model_name = endpoint.model
    message.prompt_tokens = generated.prompt_tokens
    message.completion_tokens = generated.completion_tokens
    message.latency_s = time.monotonic() - started
    message.first_token_s = generated.first_token_s
    message.error = ""
    message.finish_reason = generated.finish_reason
    message_price(message, message.app)
    context.write_on_success(lambda: message.save(update_fields=[*ANSWER_FIELDS, "updated_at"]))
    return {
        "message_id": str(message.id),
        "finish_reason": generated.finish_reason,
        "prompt_tokens": generated.prompt_tokens,
        "completion_tokens": generated.completion_tokens,
        "deployment": context.deployment,
    }


def _prompt(
    message: Message,
    provider: Provider,
    endpoint: Endpoint,
    first_turn: bool,
    attachments: Attachments,
    task: Task,
) -> Prompt:
    app = message.app
    try:
        return prompt_build(
            app=app,
            message=message,
            count=provider.count_prompt_tokens,
            context_tokens=endpoint.context_window,
            first_turn=first_turn,
            attachments=attachments,
        )
    except PromptTooLong as error:
        # Another of the app's deployments has a larger window: the task goes there.
        if error.needed and larger_window(task, endpoint) >= error.needed:
            raise Reroute(
                f"{error} (deployment {endpoint.name})",
                payload={**task.payload, MIN_CONTEXT: error.needed},
            ) from error
        raise PermanentTaskError(str(error)) from error


def _generation_request(
    message: Message, prompt: Prompt, context: RunContext, endpoint: Endpoint
) -> GenerationRequest:
    """The app's settings, with the request's own where it sent them (OpenAI's routes)."""
    app, own = message.app, message.generation or {}
    return GenerationRequest(
        messages=prompt.messages,
        model=endpoint.model,
        max_tokens=prompt.max_tokens,
        temperature=own.get("temperature", app.temperature),
        top_p=own.get("top_p", app.top_p),
        stop=list(own.get("stop", app.stop or [])),
        attempt=context.attempt,
        timeout_s=context.time_left_s(),
        options={name: own[name] for name in PASSED_OPTIONS if name in own},
    )


async def _generate(
    task: Task,
    message: Message,
    endpoint: Endpoint,
    publisher: AnswerPublisher,
    context: RunContext,
    started: float,
    first_turn: bool,
) -> GeneratedAnswer:
    app = message.app
    try:
        provider = serving_provider(endpoint)
    except ProviderError as error:
        raise task_error(error) from error
    stream = AnswerStream(
        publisher,
        output_rules(app),
        app.moderation_output_replacement,
        window_s=float(settings.PLATFORM["STREAM_COALESCE_MS"]) / 1000,
    )
    first_token_at: float | None = None

    def on_delta(text: str) -> bool:
        nonlocal first_token_at
        if first_token_at is None:
            first_token_at = time.monotonic()
        stream.feed(text)
        return context.should_stop()

    try:
        # The files sent with the question: fetched, read, extracted (no more text than could
        # ever fit the window).
        attachments = await attachments_prepare(
            message,
            context,
            max_document_chars=endpoint.context_window * MAX_CHARS_PER_TOKEN,
            vision=endpoint.vision,
        )
        # Blocking work (the conversation's history, the local model's tokenizer): a thread.
        prompt = await context.db(
            _prompt, message, provider, endpoint, first_turn, attachments, task
        )
        request = _generation_request(message, prompt, context, endpoint)
        # A stop, a deadline or a lost lease cancels the generation even while the model is
        # quiet (the connection to it is closed): what came so far is kept.
        result = await context.until_stopped(provider.generate(request, on_delta))
        if result is None:
            result = GenerationResult(None, None, "user_stop")
        answer = stream.finish()
        # The provider's own numbers when it sent them; otherwise counted here.
        completion_tokens = result.completion_tokens
        if completion_tokens is None:
            completion_tokens = await context.db(provider.count_text_tokens, stream.raw)
    except ProviderError as error:
        failure = task_error(error)
        failure.output_started = first_token_at is not None
        raise failure from error
    finally:
        stream.close()  # no text from this attempt may follow its end
    if prompt.history_dropped:
        logger.info(
            "conversation history trimmed to the context window",
            extra={"turns_kept": prompt.history_turns, "turns_dropped": prompt.history_dropped},
        )
    return GeneratedAnswer(
        answer=answer,
        finish_reason=result.finish_reason,
        prompt_tokens=result.prompt_tokens
        if result.prompt_tokens is not None
        else prompt.prompt_tokens,
        completion_tokens=completion_tokens,
        first_token_s=(first_token_at - started) if first_token_at is not None else None,
    )
