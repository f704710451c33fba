"""The conversation-facing /v1 routes (Dify's Service API): conversations, messages, feedback,
and the app's description. Thin views: parse, call one selector or service, render.

Every route is scoped to the key's app and the caller's end user (`user`: the query string on GET,
the JSON body otherwise). They are async views (apps.interface.views): the key, the rate limits
and validation run on the event loop; each route's database work and the rendering of its rows
(which may read related rows) run as one call in the database threads.
"""

import uuid
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from rest_framework import serializers

from apps.api.negotiation import document_response
from apps.applications.file_rules import FileRules
from apps.applications.models import ApiKey, App, AppMode
from apps.conversations import selectors, services
from apps.conversations.listing import conversation_page
from apps.conversations.models import Conversation, Message, MessageStatus
from apps.conversations.pricing import decimal_text
from apps.core.db import db_sync_to_async
from apps.core.errors import DeadlineExceeded, NotChatApp
from apps.dify.requests import MAX_USER_CHARS, USER_ERRORS, FlatSerializer, StrictCharField
from apps.gateway.admission import admitted, admitted_query, authenticated, rate_limit
from apps.generation.naming import conversation_name_wait
from apps.interface.file_documents import (
    file_upload_feature,
    message_file_document,
    system_parameters,
)
from apps.interface.views import dify_view

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
FEATURES_OFF = (
    "speech_to_text",
    "text_to_speech",
    "retriever_resource",
    "annotation_reply",
    "more_like_this",
)


class UserSerializer(FlatSerializer):
    user = StrictCharField(max_length=MAX_USER_CHARS, required=True, error_messages=USER_ERRORS)


class UuidTextField(StrictCharField):
    """An id given as text: empty means absent; anything else must be a UUID."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, allow_blank=True, default="", **kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if value:
            try:
                uuid.UUID(value)
            except ValueError:
                raise serializers.ValidationError("must be a UUID") from None
        return value


class TimestampField(serializers.Field):
    """A datetime as Dify sends it: whole Unix seconds."""

    def to_representation(self, value: Any) -> int:
        return int(value.timestamp())


class ConversationOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    inputs = serializers.JSONField()
    status = serializers.SerializerMethodField()
    introduction = serializers.SerializerMethodField()
    created_at = TimestampField()
    updated_at = TimestampField()

    def get_status(self, conversation: Conversation) -> str:
        return "normal"

    def get_introduction(self, conversation: Conversation) -> str:
        return str(self.context["app"].opening_statement)


# Dify knows two message states: a stopped answer is a normal (partial) one, and a message still
# being answered shows as normal with the answer so far empty, as in Dify.
DIFY_MESSAGE_STATUS = {MessageStatus.ERROR: "error"}


class MessageOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    conversation_id = serializers.UUIDField()
    parent_message_id = serializers.SerializerMethodField()
    inputs = serializers.JSONField()
    query = serializers.CharField()
    answer = serializers.CharField()
    status = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    message_files = serializers.SerializerMethodField()
    feedback = serializers.SerializerMethodField()
    retriever_resources = serializers.SerializerMethodField()
    agent_thoughts = serializers.SerializerMethodField()
    extra_contents = serializers.SerializerMethodField()
    created_at = TimestampField()
    message_tokens = serializers.IntegerField(source="prompt_tokens")
    answer_tokens = serializers.IntegerField(source="completion_tokens")
    total_tokens = serializers.IntegerField()
    provider_response_latency = serializers.SerializerMethodField()
    # What the answer cost, at the app's rates when it was saved (as in its `usage`).
    total_price = serializers.SerializerMethodField()
    currency = serializers.CharField()

    def get_parent_message_id(self, message: Message) -> None:
        return None

    def get_status(self, message: Message) -> str:
        return DIFY_MESSAGE_STATUS.get(MessageStatus(message.status), "normal")

    def get_error(self, message: Message) -> str | None:
        return (message.error or "Error.") if message.status == MessageStatus.ERROR else None

    def get_message_files(self, message: Message) -> list[dict[str, Any]]:
        return [message_file_document(attachment) for attachment in message.files.all()]

    def get_feedback(self, message: Message) -> dict[str, str] | None:
        feedback = getattr(message, "feedback", None)
        return {"rating": feedback.rating} if feedback is not None else None

    def get_retriever_resources(self, message: Message) -> list[Any]:
        return []

    def get_agent_thoughts(self, message: Message) -> list[Any]:
        return []

    def get_extra_contents(self, message: Message) -> list[Any]:
        return []

    def get_provider_response_latency(self, message: Message) -> float:
        return round(message.latency_s or 0.0, 3)

    def get_total_price(self, message: Message) -> str:
        return decimal_text(message.total_price)


def _chat_app(api_key: ApiKey) -> App:
    app: App = api_key.app
    if app.mode != AppMode.CHAT:
        raise NotChatApp()
    return app


class ConversationListQuery(UserSerializer):
    last_id = UuidTextField()
    limit = serializers.IntegerField(
        required=False, default=DEFAULT_LIMIT, min_value=1, max_value=MAX_LIMIT
    )
    sort_by = serializers.ChoiceField(
        choices=list(selectors.CONVERSATION_SORTS), required=False, default="-updated_at"
    )


def _conversation_page(app: App, data: dict[str, Any]) -> dict[str, Any]:
    page = conversation_page(
        app=app,
        end_user=data["user"],
        last_id=data["last_id"] or None,
        limit=data["limit"],
        sort_by=data["sort_by"],
    )
    rows = ConversationOutputSerializer(page.rows, many=True, context={"app": app}).data
    return {"limit": data["limit"], "has_more": page.has_more, "data": rows}


@dify_view("GET")
async def conversation_list(request: HttpRequest, media: str) -> HttpResponseBase:
    api_key, data = await admitted_query(request, ConversationListQuery)
    app = _chat_app(api_key)
    return document_response(await db_sync_to_async(_conversation_page)(app, data), media)


def _conversation_delete(app: App, end_user: str, conversation_id: str) -> None:
    conversation = selectors.conversation_get(
        app=app, end_user=end_user, conversation_id=conversation_id
    )
    services.conversation_delete(conversation=conversation)


@dify_view("DELETE")
async def conversation_delete(
    request: HttpRequest, media: str, conversation_id: str
) -> HttpResponseBase:
    api_key, _, data = await admitted(request, UserSerializer)
    app = _chat_app(api_key)
    await db_sync_to_async(_conversation_delete)(app, data["user"], conversation_id)
    return HttpResponse(status=204)


class ConversationRenameBody(UserSerializer):
    name = StrictCharField(
        required=False, allow_blank=True, allow_null=True, default="", max_length=255
    )
    auto_generate = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["name"] = (attrs.get("name") or "").strip()
        if not attrs["auto_generate"] and not attrs["name"]:
            raise serializers.ValidationError("name is required when auto_generate is false.")
        return attrs


def _conversation_document(app: App, conversation: Conversation) -> dict[str, Any]:
    return dict(ConversationOutputSerializer(conversation, context={"app": app}).data)


def _renamed(app: App, data: dict[str, Any], conversation_id: str) -> dict[str, Any]:
    conversation = selectors.conversation_get(
        app=app, end_user=data["user"], conversation_id=conversation_id
    )
    conversation = services.conversation_rename(conversation=conversation, name=data["name"])
    return _conversation_document(app, conversation)


def _naming_requested(api_key: ApiKey, data: dict[str, Any], conversation_id: str) -> str:
    conversation = selectors.conversation_get(
        app=api_key.app, end_user=data["user"], conversation_id=conversation_id
    )
    task = services.conversation_name_generate(api_key=api_key, conversation=conversation)
    return str(task.id)


def _named(app: App, data: dict[str, Any], conversation_id: str) -> dict[str, Any]:
    conversation = selectors.conversation_get(
        app=app, end_user=data["user"], conversation_id=conversation_id
    )
    return _conversation_document(app, conversation)


@dify_view("POST")
async def conversation_rename(
    request: HttpRequest, media: str, conversation_id: str
) -> HttpResponseBase:
    api_key, _, data = await admitted(request, ConversationRenameBody)
    app = _chat_app(api_key)
    if not data["auto_generate"]:
        body = await db_sync_to_async(_renamed)(app, data, conversation_id)
        return document_response(body, media)
    # The app's model names it in a worker (the web process never runs a model); the caller
    # waits for that, as Dify's caller waits for its inline generation, holding no thread and
    # no database connection meanwhile.
    task_id = await db_sync_to_async(_naming_requested)(api_key, data, conversation_id)
    timeout_s = settings.PLATFORM["BLOCKING_TIMEOUT_S"]
    if not await conversation_name_wait(task_id=task_id, timeout_s=timeout_s):
        raise DeadlineExceeded(
            f"The name was not ready within {timeout_s:g} s; it is saved when generated."
        )
    return document_response(await db_sync_to_async(_named)(app, data, conversation_id), media)


class MessageListQuery(UserSerializer):
    conversation_id = UuidTextField()
    first_id = UuidTextField()
    limit = serializers.IntegerField(
        required=False, default=DEFAULT_LIMIT, min_value=1, max_value=MAX_LIMIT
    )

    def validate_conversation_id(self, value: str) -> str:
        if not value:
            raise serializers.ValidationError("This field is required.")
        return value


def _message_page(app: App, data: dict[str, Any]) -> dict[str, Any]:
    conversation = selectors.conversation_get(
        app=app, end_user=data["user"], conversation_id=data["conversation_id"]
    )
    page = selectors.message_list(
        conversation=conversation, first_id=data["first_id"] or None, limit=data["limit"]
    )
    rows = MessageOutputSerializer(page.rows, many=True).data
    return {"limit": data["limit"], "has_more": page.has_more, "data": rows}


@dify_view("GET")
async def message_list(request: HttpRequest, media: str) -> HttpResponseBase:
    api_key, data = await admitted_query(request, MessageListQuery)
    app = _chat_app(api_key)
    return document_response(await db_sync_to_async(_message_page)(app, data), media)


class MessageFeedbackBody(UserSerializer):
    rating = serializers.ChoiceField(
        choices=["like", "dislike"], required=False, allow_null=True, default=None
    )
    content = StrictCharField(
        required=False, allow_blank=True, allow_null=True, default="", max_length=10_000
    )


def _feedback_submit(app: App, data: dict[str, Any], message_id: str) -> None:
    message = selectors.message_get(app=app, end_user=data["user"], message_id=message_id)
    services.message_feedback_submit(
        message=message,
        end_user=data["user"],
        rating=data["rating"],
        content=data["content"] or "",
    )


@dify_view("POST")
async def message_feedback(request: HttpRequest, media: str, message_id: str) -> HttpResponseBase:
    api_key, _, data = await admitted(request, MessageFeedbackBody)
    await db_sync_to_async(_feedback_submit)(api_key.app, data, message_id)
    return document_response({"result": "success"}, media)


MODERATION_FIELDS = (
    "moderation_input_keywords",
    "moderation_input_patterns",
    "moderation_output_keywords",
    "moderation_output_patterns",
)


def app_parameters(app: App) -> dict[str, Any]:
    """What /v1/parameters describes: the app's opening, its inputs form and its features."""
    body: dict[str, Any] = {
        "opening_statement": app.opening_statement,
        "suggested_questions": list(app.suggested_questions or []),
    }
    body.update({feature: {"enabled": False} for feature in FEATURES_OFF})
    body["suggested_questions_after_answer"] = {"enabled": app.suggested_questions_after_answer}
    moderated = any((getattr(app, field) or "").strip() for field in MODERATION_FIELDS)
    body["sensitive_word_avoidance"] = {"enabled": moderated}
    rules = FileRules.of(app)
    body.update(
        user_input_form=list(app.user_input_form or []),
        file_upload=file_upload_feature(rules),
        system_parameters=system_parameters(rules),
    )
    return body


async def _described_app(request: HttpRequest) -> App:
    """The key's app, for the routes that describe it (no end user: the key's budget only)."""
    api_key = await authenticated(request)
    await rate_limit(api_key, request.GET.get("user") or None)
    return api_key.app  # type: ignore[no-any-return]


@dify_view("GET")
async def app_parameters_get(request: HttpRequest, media: str) -> HttpResponseBase:
    return document_response(app_parameters(await _described_app(request)), media)


@dify_view("GET")
async def app_info(request: HttpRequest, media: str) -> HttpResponseBase:
    app = await _described_app(request)
    body = {
        "name": app.name,
        "description": app.description,
        "tags": list(app.tags or []),
        "mode": app.mode,
        "author_name": app.author_name,
    }
    return document_response(body, media)


@dify_view("GET")
async def app_meta(request: HttpRequest, media: str) -> HttpResponseBase:
    await _described_app(request)
    return document_response({"tool_icons": {}}, media)
