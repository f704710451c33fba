"""OpenAI's API as a third door into the one admission pipeline: `POST /v1/chat/completions` and
`GET /v1/models` with an app key (`Authorization: Bearer app-...`).

A request passes what a Dify route passes (the global ceiling, the key, the key's and the end
user's rate limits, validation in OpenAI's shapes, load shedding, Idempotency-Key, the app's
cap, the record) and is answered by the same task kinds on the same queues, delivered the same
way (apps.delivery.answers); only the shapes differ, errors included (`{"error": {...}}`,
apps.openai.errors). Requests are stateless: the client's turns are recorded with the message
(apps.conversations.models.Message.history).
"""

from django.http import HttpRequest, HttpResponseBase

from apps.api.negotiation import event_stream_response
from apps.applications.models import ApiKey, App
from apps.conversations.services import answer_stop
from apps.core.background import in_background
from apps.core.db import db_sync_to_async
from apps.core.responses import json_response
from apps.delivery.answers import answer_delivery, blocking_timeout_s
from apps.deployments.selectors import AppRoute, app_route_async
from apps.gateway.admission import admitted_with, authenticated, rate_limit
from apps.gateway.idempotency import REPLAYED_HEADER, idempotency_key
from apps.gateway.pipeline import AnswerRequest, answer_admit
from apps.interface.views import openai_view
from apps.openai.errors import ModelNotFound
from apps.openai.frames import ChatCompletionChunks
from apps.openai.objects import CompletionHead, chat_completion, completion_id, model_object
from apps.openai.requests import chat_completion_parse

ROUTE = "/v1/chat/completions"
PRIORITY_HEADER = "X-Priority"
TASK_HEADER = "X-Task-Id"  # (ext) the task answering, for the admin and the logs

_stop = db_sync_to_async(answer_stop)


async def _model_check(app: App, model: str) -> AppRoute:
    route = await app_route_async(app_id=app.id)
    if model != route.model_name:
        raise ModelNotFound(model)
    return route


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

    def client_gone() -> None:
        # OpenAI's clients cancel by closing the stream: the generation stops (its partial
        # answer is kept). A keyed request may be retried for its result: it runs on.
        if key is None:
            in_background(_stop(api_key=api_key, task_id=task_id, end_user=chat.data["user"]))

    delivery = answer_delivery(admission, on_client_gone=client_gone if chat.stream else None)
    response: HttpResponseBase
    if chat.stream:
        chunks = ChatCompletionChunks(head, include_usage=chat.include_usage)
        response = event_stream_response(delivery.stream(chunks))
    else:
        collected = await delivery.collected(
            timeout_s=blocking_timeout_s(chat.data.get("deadline_ms"))
        )
        response = json_response(chat_completion(head, collected.answer, collected.end_event))
    response[TASK_HEADER] = task_id
    if admission.replayed:
        response[REPLAYED_HEADER] = "true"
    return response


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
