"""The answer routes: POST /v1/chat-messages, /v1/completion-messages and /api/v1/ask.

They are async views: after the short record-and-enqueue step (in a thread, with the database),
they wait on the task's event log in Redis, holding neither a thread nor a database connection.
"""

import re
import time
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from apps.applications.models import ApiKey, AppMode
from apps.conversations.selectors import task_owned_by
from apps.conversations.services import SubmittedAnswer, answer_stop, answer_submit
from apps.core.errors import InvalidParam, MethodNotAllowed, NotFound
from apps.core.exception_handler import to_api_error
from apps.core.responses import error_response, json_response
from apps.gateway.authentication import api_key_from_request
from apps.gateway.requests import (
    AskRequestSerializer,
    ChatRequestSerializer,
    CompletionRequestSerializer,
    StopRequestSerializer,
    json_body,
    validated,
)
from apps.streams.relay import answer_collect, sse_stream

# django-stubs types `path()` for sync views only; async views are declared loosely to fit it.
AsyncView = Callable[..., Any]


def api_view(method: str) -> Callable[[AsyncView], AsyncView]:
    """An async JSON API view: one method, no CSRF (keys, not cookies), errors in the envelope."""

    def decorate(view: AsyncView) -> AsyncView:
        @csrf_exempt
        @wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            try:
                if request.method != method:
                    raise MethodNotAllowed(f'Method "{request.method}" not allowed.')
                return await view(request, *args, **kwargs)
            except Exception as exc:
                error = to_api_error(exc)
                response = error_response(error)
                if error.status == 401:
                    response["WWW-Authenticate"] = 'Bearer realm="api"'
                return response

        return wrapper

    return decorate


_authenticate = sync_to_async(api_key_from_request)
_submit = sync_to_async(answer_submit)


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


def sse_response(
    task_id: str, after_id: str = "0-0", *, id_lines: bool = False
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        sse_stream(task_id=task_id, after_id=after_id, id_lines=id_lines),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx must pass each event on at once
    return response


async def _answer(request: HttpRequest, mode: str) -> HttpResponseBase:
    api_key: ApiKey = await _authenticate(request)
    serializer = ChatRequestSerializer if mode == AppMode.CHAT else CompletionRequestSerializer
    data = validated(serializer, json_body(request))
    submitted = await _submit(
        api_key=api_key,
        route_mode=mode,
        end_user=data["user"],
        query=data["query"],
        inputs=data["inputs"],
        conversation_id=data.get("conversation_id") or None,
        priority=data.get("priority"),
        deadline_ms=data.get("deadline_ms"),
        auto_generate_name=data["auto_generate_name"],
    )
    task_id = str(submitted.task.id)
    if data["response_mode"] == "streaming":
        return sse_response(task_id)
    collected = await answer_collect(task_id=task_id, timeout_s=_blocking_timeout(data))
    return json_response(blocking_body(submitted, mode, collected.answer, collected.end_event))


def _blocking_timeout(data: dict[str, Any]) -> float:
    timeout: float = settings.PLATFORM["BLOCKING_TIMEOUT_S"]
    if data.get("deadline_ms"):
        # Past its deadline the worker reports `deadline_exceeded` itself; wait a little longer
        # than the deadline so the client gets that precise answer.
        timeout = min(timeout, data["deadline_ms"] / 1000 + 1.0)
    return timeout


@api_view("POST")
async def chat_messages_create(request: HttpRequest) -> HttpResponseBase:
    return await _answer(request, AppMode.CHAT)


@api_view("POST")
async def completion_messages_create(request: HttpRequest) -> HttpResponseBase:
    return await _answer(request, AppMode.COMPLETION)


@api_view("POST")
async def ask_create(request: HttpRequest) -> HttpResponseBase:
    """The simplest call: a query in, the answer out, one turn on any app."""
    started = time.monotonic()
    api_key: ApiKey = await _authenticate(request)
    data = validated(AskRequestSerializer, json_body(request))
    submitted = await _submit(
        api_key=api_key,
        route_mode=None,
        end_user=data["user"],
        query=data["query"],
        inputs={},
        priority=data.get("priority"),
    )
    task_id = str(submitted.task.id)
    collected = await answer_collect(
        task_id=task_id, timeout_s=settings.PLATFORM["BLOCKING_TIMEOUT_S"]
    )
    return json_response(
        {
            "response": collected.answer,
            "task_id": task_id,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
        }
    )


_stop = sync_to_async(answer_stop)
_task_owned = sync_to_async(task_owned_by)
_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


@api_view("POST")
async def answer_stop_create(request: HttpRequest, task_id: uuid.UUID) -> HttpResponseBase:
    """Stop a generation: the worker stops within a token or two and keeps the partial answer."""
    api_key: ApiKey = await _authenticate(request)
    data = validated(StopRequestSerializer, json_body(request))
    await _stop(api_key=api_key, task_id=str(task_id), end_user=data["user"])
    return json_response({"result": "success"})


@api_view("GET")
async def answer_events(request: HttpRequest, task_id: uuid.UUID) -> HttpResponseBase:
    """(ext) The task's events as SSE from after `Last-Event-ID`: resume without loss or repeat."""
    api_key: ApiKey = await _authenticate(request)
    user = request.GET.get("user", "")
    if not user:
        raise InvalidParam("Arg user must be provided.")
    after_id = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or "0-0"
    if not _EVENT_ID.match(after_id):
        raise InvalidParam("Last-Event-ID must be an event id from this stream.")
    if not await _task_owned(app_id=api_key.app_id, task_id=str(task_id), end_user=user):
        raise NotFound("Task Not Exists.")
    return sse_response(str(task_id), after_id=after_id, id_lines=True)
