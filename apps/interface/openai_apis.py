"""OpenAI's API as a third door into the one admission pipeline: `POST /v1/chat/completions` and
`GET /v1/models` with an app key (`Authorization: Bearer app-...`).

A request passes what a Dify route passes (the global ceiling, the key, the key's and the end
user's rate limits, validation in OpenAI's shapes, load shedding, Idempotency-Key, the app's
cap, the record) and is answered by the same task kinds on the same queues; only the shapes
differ, errors included (`{"error": {...}}`, apps.gateway.openai_errors). Requests are stateless:
the client's turns are recorded with the message (apps.conversations.models.Message.history).
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from apps.applications.models import ApiKey, App
from apps.conversations.services import SubmittedAnswer, answer_stop
from apps.core.background import in_background
from apps.core.db import db_sync_to_async
from apps.core.errors import MethodNotAllowed, NotFound
from apps.core.exception_handler import to_api_error
from apps.core.responses import json_response
from apps.deployments.selectors import AppRoute, app_route_async
from apps.gateway.admission import admitted_with, authenticated, rate_limit
from apps.gateway.caps import Lease, lease_kept, lease_release, leased_stream
from apps.gateway.idempotency import (
    REPLAYED_HEADER,
    collected_from,
    idempotency_key,
    rebuilt_events,
    when_log_gone,
)
from apps.gateway.openai_errors import openai_error_response
from apps.gateway.openai_objects import (
    CompletionHead,
    chat_completion,
    completion_id,
    model_object,
)
from apps.gateway.openai_requests import ChatCompletionRequest, chat_completion_parse
from apps.gateway.pipeline import AnswerRequest, answer_admit
from apps.interface.openai_shapes import chat_completion_chunks
from apps.interface.views import AsyncView
from apps.streams.feeds import events_follow, events_listed
from apps.streams.relay import KEEPALIVE_S, CollectedAnswer, answer_collect

ROUTE = "/v1/chat/completions"
PRIORITY_HEADER = "X-Priority"
TASK_HEADER = "X-Task-Id"  # (ext) the task answering, for the admin and the logs
KEEPALIVE_MS = int(KEEPALIVE_S * 1000)


def openai_view(method: str) -> Callable[[AsyncView], AsyncView]:
    """An async view of OpenAI's API: one method, no CSRF (keys, not cookies), JSON, errors in
    OpenAI's envelope."""

    def decorate(view: AsyncView) -> AsyncView:
        @csrf_exempt
        @wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            try:
                if request.method != method:
                    raise MethodNotAllowed(f'Method "{request.method}" not allowed.')
                return await view(request, *args, **kwargs)
            except Exception as exc:
                return openai_error_response(to_api_error(exc))

        return wrapper

    return decorate


def openai_methods(**views: AsyncView) -> AsyncView:
    """One route answering several methods, each with its own view (e.g. GET and POST
    /v1/files); any other method is refused in OpenAI's envelope."""

    @csrf_exempt
    async def route(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        view = views.get(str(request.method))
        if view is None:
            allowed = ", ".join(views)
            error = MethodNotAllowed(f'Method "{request.method}" not allowed (only {allowed}).')
            return openai_error_response(error)
        response: HttpResponseBase = await view(request, *args, **kwargs)
        return response

    return route


class ModelNotFound(NotFound):
    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist or you do not have access to it.")
        self.openai_code = "model_not_found"
        self.param = "model"


async def _model_check(app: App, model: str) -> AppRoute:
    route = await app_route_async(app_id=app.id)
    if model != route.model_name:
        raise ModelNotFound(model)
    return route


def _timeout_s(data: dict[str, Any]) -> float:
    timeout: float = settings.PLATFORM["BLOCKING_TIMEOUT_S"]
    if data.get("deadline_ms"):
        # Past its deadline the worker reports `deadline_exceeded` itself; wait a little longer.
        timeout = min(timeout, data["deadline_ms"] / 1000 + 1.0)
    return timeout


def _headers(response: HttpResponseBase, submitted: SubmittedAnswer) -> HttpResponseBase:
    response[TASK_HEADER] = str(submitted.task.id)
    if submitted.replayed:
        response[REPLAYED_HEADER] = "true"
    return response


def _stream_response(body: Any) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx must pass each chunk on at once
    return response


_rebuilt = db_sync_to_async(rebuilt_events)
_stop = db_sync_to_async(answer_stop)


@openai_view("POST")
async def chat_completions_create(request: HttpRequest) -> HttpResponseBase:
    priority_header = request.headers.get(PRIORITY_HEADER)
    api_key, body, chat = await admitted_with(
        request, lambda body: chat_completion_parse(body, priority_header=priority_header)
    )
    await _model_check(api_key.app, chat.model)
    key = idempotency_key(request)
    admission = await answer_admit(
        AnswerRequest(
            api_key=api_key,
            route_mode=None,  # any app: the client sends the conversation
            route=ROUTE,
            body=body,
            data=chat.data,
            idempotency_key=key,
        )
    )
    submitted = admission.submitted
    assert submitted is not None
    task_id = str(submitted.task.id)
    head = CompletionHead(
        id=completion_id(task_id),
        created=int(submitted.message.created_at.timestamp()),
        model=chat.model,
    )
    if admission.replayed:
        return _headers(await _replay(submitted, chat, head), submitted)
    lease = admission.lease
    if chat.stream:

        def client_gone() -> None:
            # OpenAI's clients cancel by closing the stream: the generation stops (its partial
            # answer is kept). A keyed request may be retried for its result: it runs on.
            if key is None:
                in_background(_stop(api_key=api_key, task_id=task_id, end_user=submitted_user))

        submitted_user = chat.data["user"]
        chunks = chat_completion_chunks(
            head=head,
            events=events_follow(
                task_id=task_id, block_ms=KEEPALIVE_MS, when_gone=when_log_gone(task_id)
            ),
            include_usage=chat.include_usage,
            before_final=(lambda: lease_release(lease)) if lease is not None else None,
            on_client_gone=client_gone,
        )
        return _headers(_stream_response(leased_stream(lease, chunks, task_id)), submitted)
    collected = await _collect(task_id, chat, lease)
    return _headers(
        json_response(chat_completion(head, collected.answer, collected.end_event)), submitted
    )


async def _collect(
    task_id: str, chat: ChatCompletionRequest, lease: Lease | None
) -> CollectedAnswer:
    async with lease_kept(lease, task_id):
        return await answer_collect(
            task_id=task_id, timeout_s=_timeout_s(chat.data), when_gone=when_log_gone(task_id)
        )


async def _replay(
    submitted: SubmittedAnswer, chat: ChatCompletionRequest, head: CompletionHead
) -> HttpResponseBase:
    """The first run's answer for a retried request (same Idempotency-Key): followed live while
    it runs, rebuilt from PostgreSQL once its event log has lapsed."""
    task_id = str(submitted.task.id)
    events = await _rebuilt(submitted)
    if chat.stream:
        source = (
            events_follow(task_id=task_id, block_ms=KEEPALIVE_MS, when_gone=when_log_gone(task_id))
            if events is None
            else events_listed(events)
        )
        chunks = chat_completion_chunks(head=head, events=source, include_usage=chat.include_usage)
        return _stream_response(chunks)
    collected = (
        await answer_collect(task_id=task_id, timeout_s=_timeout_s(chat.data))
        if events is None
        else collected_from(events)
    )
    return json_response(chat_completion(head, collected.answer, collected.end_event))


async def _model_caller(request: HttpRequest) -> ApiKey:
    api_key = await authenticated(request)
    await rate_limit(api_key, None)
    return api_key


@openai_view("GET")
async def models_list(request: HttpRequest) -> HttpResponseBase:
    """The model the key's app answers with: the one name `model` may take."""
    api_key = await _model_caller(request)
    route = await app_route_async(app_id=api_key.app_id)
    return json_response({"object": "list", "data": [model_object(api_key.app, route)]})


@openai_view("GET")
async def model_get(request: HttpRequest, model: str) -> HttpResponseBase:
    api_key = await _model_caller(request)
    route = await _model_check(api_key.app, model)
    return json_response(model_object(api_key.app, route))
