"""The answer routes: POST /v1/chat-messages, /v1/completion-messages and /api/v1/ask, and the
stop and resume routes of a running answer.

They are async views: after the short record-and-enqueue step (in a thread, with the database),
they wait on the task's event log in Redis, holding neither a thread nor a database connection.

Every request goes through the input layer in this order, each step cheaper than the work it
saves: the global ceiling (edge middleware, before any database work), the key, the key's and the
user's rate limits, validation, load shedding, Idempotency-Key, the response cache (blocking
completions of apps that opt in), the app's cap on answers served at once, then submission
(apps.gateway.pipeline). The answer is then delivered (apps.delivery.answers).
"""

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from rest_framework import serializers

from apps.api.negotiation import document_response, event_stream_response
from apps.applications.models import AppMode
from apps.conversations.selectors import task_owned_by
from apps.conversations.services import SubmittedAnswer, answer_stop
from apps.core.db import db_sync_to_async
from apps.core.errors import InvalidParam, NotFound
from apps.delivery.answers import AnswerDelivery, answer_delivery, blocking_timeout_s
from apps.dify.answers import CollectedAnswer
from apps.dify.events import AnswerHeader
from apps.dify.frames import DifyEventStream
from apps.dify.objects import ask_answer, blocking_answer
from apps.dify.requests import (
    AskRequestSerializer,
    ChatRequestSerializer,
    CompletionRequestSerializer,
    StopRequestSerializer,
)
from apps.gateway import cache
from apps.gateway.admission import admitted, authenticated, rate_limit
from apps.gateway.idempotency import REPLAYED_HEADER, idempotency_key
from apps.gateway.pipeline import AnswerRequest, answer_admit
from apps.gateway.selectors import message_is_complete
from apps.interface.views import dify_view
from apps.streams.log import START_ID

_complete = db_sync_to_async(message_is_complete)
# What the answer's body is made of: the submission, the collected answer, when it started.
Shape = Callable[[SubmittedAnswer, CollectedAnswer, float], dict[str, Any]]


@dataclass(frozen=True)
class Route:
    """What differs between the answer routes."""

    serializer: type[serializers.Serializer]
    mode: str | None  # None: /api/v1/ask, any app
    shape: Shape


def _dify_shape(mode: str) -> Shape:
    def shape(submitted: SubmittedAnswer, collected: CollectedAnswer, _: float) -> dict[str, Any]:
        header = AnswerHeader.of(str(submitted.task.id), submitted.message)
        return blocking_answer(header, mode, collected)

    return shape


def _ask_shape(
    submitted: SubmittedAnswer, collected: CollectedAnswer, started: float
) -> dict[str, Any]:
    duration_ms = round((time.monotonic() - started) * 1000, 1)
    return ask_answer(str(submitted.task.id), collected, duration_ms)


CHAT = Route(ChatRequestSerializer, AppMode.CHAT, _dify_shape(AppMode.CHAT))
COMPLETION = Route(CompletionRequestSerializer, AppMode.COMPLETION, _dify_shape(AppMode.COMPLETION))
ASK = Route(AskRequestSerializer, None, _ask_shape)


async def _answer(request: HttpRequest, media: str, route: Route) -> HttpResponseBase:
    started = time.monotonic()
    api_key, body, data = await admitted(request, route.serializer)
    streaming = data.get("response_mode") == "streaming"
    admission = await answer_admit(
        AnswerRequest(
            api_key=api_key,
            route_mode=route.mode,
            route=request.path,
            body=body,
            data=data,
            idempotency_key=idempotency_key(request),
            cacheable=not streaming,
        )
    )
    if admission.cached is not None:
        return document_response(cache.hit_body(admission.cached), media)
    submitted = admission.submitted
    assert submitted is not None
    delivery = answer_delivery(admission)
    response: HttpResponseBase
    if streaming:
        response = event_stream_response(delivery.stream(DifyEventStream(delivery.task_id)))
    else:
        collected = await delivery.collected(timeout_s=blocking_timeout_s(data.get("deadline_ms")))
        answer = route.shape(submitted, collected, started)
        if admission.store_in_cache and await _complete(message_id=submitted.message.id):
            await cache.cache_put(api_key.app, data["query"], data["inputs"], answer)
            answer = cache.miss_body(answer)
        response = document_response(answer, media)
    if admission.replayed:
        response[REPLAYED_HEADER] = "true"
    return response


@dify_view("POST")
async def chat_messages_create(request: HttpRequest, media: str) -> HttpResponseBase:
    return await _answer(request, media, CHAT)


@dify_view("POST")
async def completion_messages_create(request: HttpRequest, media: str) -> HttpResponseBase:
    return await _answer(request, media, COMPLETION)


@dify_view("POST")
async def ask_create(request: HttpRequest, media: str) -> HttpResponseBase:
    """The simplest call: a query in, the answer out, one turn on any app."""
    return await _answer(request, media, ASK)


_stop = db_sync_to_async(answer_stop)
_task_owned = db_sync_to_async(task_owned_by)
_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


@dify_view("POST")
async def answer_stop_create(
    request: HttpRequest, media: str, task_id: uuid.UUID
) -> HttpResponseBase:
    """Stop a generation: the worker stops within a token or two and keeps the partial answer."""
    api_key, _, data = await admitted(request, StopRequestSerializer)
    await _stop(api_key=api_key, task_id=str(task_id), end_user=data["user"])
    return document_response({"result": "success"}, media)


@dify_view("GET")
async def answer_events(request: HttpRequest, media: str, task_id: uuid.UUID) -> HttpResponseBase:
    """(ext) The task's events as SSE from after `Last-Event-ID`: resume without loss or repeat."""
    api_key = await authenticated(request)
    user = request.GET.get("user", "")
    await rate_limit(api_key, user or None)
    if not user:
        raise InvalidParam("Arg user must be provided.")
    after_id = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or START_ID
    if not _EVENT_ID.match(after_id):
        raise InvalidParam("Last-Event-ID must be an event id from this stream.")
    if not await _task_owned(app_id=api_key.app_id, task_id=str(task_id), end_user=user):
        raise NotFound("Task Not Exists.")
    delivery = AnswerDelivery(task_id=str(task_id), after_id=after_id)
    return event_stream_response(delivery.stream(DifyEventStream(str(task_id), id_lines=True)))
