"""The answer routes: POST /v1/chat-messages, /v1/completion-messages and /api/v1/ask.

They are async views: after the short record-and-enqueue step (in a thread, with the database),
they wait on the task's event log in Redis, holding neither a thread nor a database connection.

Every request goes through the input layer in this order, each step cheaper than the work it
saves: the global ceiling (edge middleware, before any database work), the key, the key's and the
user's rate limits, validation, load shedding, Idempotency-Key, the response cache (blocking
completions of apps that opt in), the app's cap on answers served at once, then submission.
"""

import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from rest_framework import serializers

from apps.applications.models import AppMode
from apps.conversations.selectors import task_owned_by
from apps.conversations.services import SubmittedAnswer, answer_stop
from apps.core.db import db_sync_to_async
from apps.core.errors import InvalidParam, NotFound
from apps.gateway import cache
from apps.gateway.admission import admitted, authenticated, rate_limit
from apps.gateway.caps import Lease, lease_kept, lease_release, leased_stream
from apps.gateway.idempotency import (
    REPLAYED_HEADER,
    collected_from,
    events_stream,
    idempotency_key,
    rebuilt_events,
    when_log_gone,
)
from apps.gateway.negotiation import document_response
from apps.gateway.pipeline import AnswerRequest, answer_admit
from apps.gateway.requests import (
    AskRequestSerializer,
    ChatRequestSerializer,
    CompletionRequestSerializer,
    StopRequestSerializer,
)
from apps.gateway.selectors import message_is_complete
from apps.interface.views import api_view
from apps.streams.log import START_ID
from apps.streams.relay import CollectedAnswer, answer_collect, sse_stream

_rebuilt = db_sync_to_async(rebuilt_events)
_complete = db_sync_to_async(message_is_complete)


@dataclass(frozen=True)
class Route:
    """What differs between the answer routes."""

    serializer: type[serializers.Serializer]
    mode: str | None  # None: /api/v1/ask, any app
    shape: Callable[[SubmittedAnswer, CollectedAnswer, float], dict[str, Any]]


def blocking_body(
    submitted: SubmittedAnswer, mode: str, answer: str, end: dict[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event": "message",
        "task_id": str(submitted.task.id),
        "id": str(submitted.message.id),
        "message_id": str(submitted.message.id),
    }
    if submitted.conversation is not None:
        body["conversation_id"] = str(submitted.conversation.id)
    body.update(
        mode=mode,
        answer=answer,
        metadata=end.get("metadata", {}),
        created_at=int(submitted.message.created_at.timestamp()),
    )
    return body


def _dify_shape(mode: str) -> Callable[[SubmittedAnswer, CollectedAnswer, float], dict[str, Any]]:
    def shape(submitted: SubmittedAnswer, collected: CollectedAnswer, _: float) -> dict[str, Any]:
        return blocking_body(submitted, mode, collected.answer, collected.end_event)

    return shape


def _ask_shape(
    submitted: SubmittedAnswer, collected: CollectedAnswer, started: float
) -> dict[str, Any]:
    return {
        "response": collected.answer,
        "task_id": str(submitted.task.id),
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }


CHAT = Route(ChatRequestSerializer, AppMode.CHAT, _dify_shape(AppMode.CHAT))
COMPLETION = Route(CompletionRequestSerializer, AppMode.COMPLETION, _dify_shape(AppMode.COMPLETION))
ASK = Route(AskRequestSerializer, None, _ask_shape)


def sse_response(source: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(source, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx must pass each event on at once
    return response


def _blocking_timeout(data: dict[str, Any]) -> float:
    timeout: float = settings.PLATFORM["BLOCKING_TIMEOUT_S"]
    if data.get("deadline_ms"):
        # Past its deadline the worker reports `deadline_exceeded` itself; wait a little longer
        # than the deadline so the client gets that precise answer.
        timeout = min(timeout, data["deadline_ms"] / 1000 + 1.0)
    return timeout


def _streaming(data: dict[str, Any]) -> bool:
    return data.get("response_mode") == "streaming"


async def _answer(request: HttpRequest, media: str, route: Route) -> HttpResponseBase:
    started = time.monotonic()
    api_key, body, data = await admitted(request, route.serializer)
    admission = await answer_admit(
        AnswerRequest(
            api_key=api_key,
            route_mode=route.mode,
            route=request.path,
            body=body,
            data=data,
            idempotency_key=idempotency_key(request),
            cacheable=not _streaming(data),
        )
    )
    if admission.cached is not None:
        return document_response(cache.hit_body(admission.cached), media)
    submitted = admission.submitted
    assert submitted is not None
    if admission.replayed:
        return await _replay(submitted, route, data, media, started)
    lease = admission.lease
    task_id = str(submitted.task.id)
    if _streaming(data):
        stream = sse_stream(
            task_id=task_id,
            when_gone=when_log_gone(task_id),
            before_final=(lambda: lease_release(lease)) if lease is not None else None,
        )
        return sse_response(leased_stream(lease, stream, task_id))
    collected = await _collect(task_id, data, lease)
    answer = route.shape(submitted, collected, started)
    if admission.store_in_cache and await _complete(message_id=submitted.message.id):
        await cache.cache_put(api_key.app, data["query"], data["inputs"], answer)
        answer = cache.miss_body(answer)
    return document_response(answer, media)


async def _collect(task_id: str, data: dict[str, Any], lease: Lease | None) -> CollectedAnswer:
    async with lease_kept(lease, task_id):
        return await answer_collect(
            task_id=task_id, timeout_s=_blocking_timeout(data), when_gone=when_log_gone(task_id)
        )


async def _replay(
    submitted: SubmittedAnswer, route: Route, data: dict[str, Any], media: str, started: float
) -> HttpResponseBase:
    """The first run's answer for a retried request: followed live while it runs, the same
    result after; rebuilt from PostgreSQL once its event log has lapsed."""
    task_id = str(submitted.task.id)
    events = await _rebuilt(submitted)
    response: HttpResponseBase
    if _streaming(data):
        source = sse_stream(task_id=task_id) if events is None else events_stream(events)
        response = sse_response(source)
    else:
        collected = (
            await answer_collect(task_id=task_id, timeout_s=_blocking_timeout(data))
            if events is None
            else collected_from(events)
        )
        response = document_response(route.shape(submitted, collected, started), media)
    response[REPLAYED_HEADER] = "true"
    return response


@api_view("POST")
async def chat_messages_create(request: HttpRequest, media: str) -> HttpResponseBase:
    return await _answer(request, media, CHAT)


@api_view("POST")
async def completion_messages_create(request: HttpRequest, media: str) -> HttpResponseBase:
    return await _answer(request, media, COMPLETION)


@api_view("POST")
async def ask_create(request: HttpRequest, media: str) -> HttpResponseBase:
    """The simplest call: a query in, the answer out, one turn on any app."""
    return await _answer(request, media, ASK)


_stop = db_sync_to_async(answer_stop)
_task_owned = db_sync_to_async(task_owned_by)
_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


@api_view("POST")
async def answer_stop_create(
    request: HttpRequest, media: str, task_id: uuid.UUID
) -> HttpResponseBase:
    """Stop a generation: the worker stops within a token or two and keeps the partial answer."""
    api_key, _, data = await admitted(request, StopRequestSerializer)
    await _stop(api_key=api_key, task_id=str(task_id), end_user=data["user"])
    return document_response({"result": "success"}, media)


@api_view("GET")
async def answer_events(request: HttpRequest, media: str, task_id: uuid.UUID) -> HttpResponseBase:
    """(ext) The task's events as SSE from after `Last-Event-ID`: resume without loss or repeat."""
    api_key = await authenticated(request)
    user = request.GET.get("user", "")
    await rate_limit(api_key, user or None)
    if not user:
        raise InvalidParam("Arg user must be provided.")
    after_id = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or "0-0"
    if not _EVENT_ID.match(after_id):
        raise InvalidParam("Last-Event-ID must be an event id from this stream.")
    if not await _task_owned(app_id=api_key.app_id, task_id=str(task_id), end_user=user):
        raise NotFound("Task Not Exists.")
    stream = sse_stream(
        task_id=str(task_id),
        after_id=after_id,
        id_lines=True,
        when_gone=when_log_gone(str(task_id), resumed=after_id != START_ID),
    )
    return sse_response(stream)
