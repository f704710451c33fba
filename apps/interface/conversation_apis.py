"""The conversation-facing /v1 routes (Dify's Service API): conversations, messages, feedback,
and the app's description. Thin views: parse, call one selector or service, render.

Every route is scoped to the key's app and the caller's end user (`user`: the query string on GET,
the JSON body otherwise). Errors leave in the envelope through DRF's exception handler.
"""

import uuid
from typing import Any

from django.conf import settings
from django.db import connection
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.applications.models import ApiKey, App, AppMode
from apps.conversations import selectors, services
from apps.conversations.models import Conversation, Message, MessageStatus
from apps.core.errors import DeadlineExceeded, NotChatApp
from apps.gateway.requests import MAX_USER_CHARS, USER_ERRORS, StrictCharField, json_body, validated
from apps.generation.naming import conversation_name_wait
from apps.generation.pricing import decimal_text

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Dify's limits, reported to clients that size uploads by them; this platform takes no files.
SYSTEM_PARAMETERS = {
    "file_size_limit": 15,
    "image_file_size_limit": 10,
    "audio_file_size_limit": 50,
    "video_file_size_limit": 100,
    "workflow_file_upload_limit": 10,
}
FEATURES_OFF = (
    "suggested_questions_after_answer",
    "speech_to_text",
    "text_to_speech",
    "retriever_resource",
    "annotation_reply",
    "more_like_this",
)


class UserSerializer(serializers.Serializer):
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

    def get_message_files(self, message: Message) -> list[Any]:
        return []

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


def _api_key(request: Request) -> ApiKey:
    # Set by AppKeyAuthentication; HasAppKey refused the request otherwise.
    assert isinstance(request.auth, ApiKey)
    return request.auth


def _app(request: Request) -> App:
    return _api_key(request).app


def _chat_app(request: Request) -> App:
    app = _app(request)
    if app.mode != AppMode.CHAT:
        raise NotChatApp()
    return app


def _body(request: Request) -> dict[str, Any]:
    # The gateway's parser: JSON under any content type, with the same errors as the answer routes.
    return json_body(request._request)


class ConversationListApi(APIView):
    class InputSerializer(UserSerializer):
        last_id = UuidTextField()
        limit = serializers.IntegerField(
            required=False, default=DEFAULT_LIMIT, min_value=1, max_value=MAX_LIMIT
        )
        sort_by = serializers.ChoiceField(
            choices=list(selectors.CONVERSATION_SORTS), required=False, default="-updated_at"
        )

    def get(self, request: Request) -> Response:
        app = _chat_app(request)
        data = validated(self.InputSerializer, request.query_params.dict())
        page = selectors.conversation_list(
            app=app,
            end_user=data["user"],
            last_id=data["last_id"] or None,
            limit=data["limit"],
            sort_by=data["sort_by"],
        )
        rows = ConversationOutputSerializer(page.rows, many=True, context={"app": app}).data
        return Response({"limit": data["limit"], "has_more": page.has_more, "data": rows})


class ConversationDeleteApi(APIView):
    def delete(self, request: Request, conversation_id: str) -> Response:
        app = _chat_app(request)
        data = validated(UserSerializer, _body(request))
        conversation = selectors.conversation_get(
            app=app, end_user=data["user"], conversation_id=conversation_id
        )
        services.conversation_delete(conversation=conversation)
        return Response(status=204)


class ConversationRenameApi(APIView):
    class InputSerializer(UserSerializer):
        name = StrictCharField(
            required=False, allow_blank=True, allow_null=True, default="", max_length=255
        )
        auto_generate = serializers.BooleanField(required=False, default=False)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            attrs["name"] = (attrs.get("name") or "").strip()
            if not attrs["auto_generate"] and not attrs["name"]:
                raise serializers.ValidationError("name is required when auto_generate is false.")
            return attrs

    def post(self, request: Request, conversation_id: str) -> Response:
        app = _chat_app(request)
        data = validated(self.InputSerializer, _body(request))
        conversation = selectors.conversation_get(
            app=app, end_user=data["user"], conversation_id=conversation_id
        )
        if data["auto_generate"]:
            conversation = self._generate(request, conversation)
        else:
            conversation = services.conversation_rename(
                conversation=conversation, name=data["name"]
            )
        return Response(ConversationOutputSerializer(conversation, context={"app": app}).data)

    def _generate(self, request: Request, conversation: Conversation) -> Conversation:
        """The app's model names it in a worker (the web process never runs a model); the
        caller waits for that, as Dify's caller waits for its inline generation."""
        task = services.conversation_name_generate(
            api_key=_api_key(request), conversation=conversation
        )
        timeout_s = settings.PLATFORM["BLOCKING_TIMEOUT_S"]
        if not connection.in_atomic_block:
            # The wait is for the model, seconds long: the pooled connection goes back first,
            # or a few renames at once would hold every connection the other requests need.
            connection.close()
        if not conversation_name_wait(task_id=str(task.id), timeout_s=timeout_s):
            raise DeadlineExceeded(
                f"The name was not ready within {timeout_s:g} s; it is saved when generated."
            )
        conversation.refresh_from_db()
        return conversation


class MessageListApi(APIView):
    class InputSerializer(UserSerializer):
        conversation_id = UuidTextField()
        first_id = UuidTextField()
        limit = serializers.IntegerField(
            required=False, default=DEFAULT_LIMIT, min_value=1, max_value=MAX_LIMIT
        )

        def validate_conversation_id(self, value: str) -> str:
            if not value:
                raise serializers.ValidationError("This field is required.")
            return value

    def get(self, request: Request) -> Response:
        app = _chat_app(request)
        data = validated(self.InputSerializer, request.query_params.dict())
        conversation = selectors.conversation_get(
            app=app, end_user=data["user"], conversation_id=data["conversation_id"]
        )
        page = selectors.message_list(
            conversation=conversation, first_id=data["first_id"] or None, limit=data["limit"]
        )
        rows = MessageOutputSerializer(page.rows, many=True).data
        return Response({"limit": data["limit"], "has_more": page.has_more, "data": rows})


class MessageFeedbackApi(APIView):
    class InputSerializer(UserSerializer):
        rating = serializers.ChoiceField(
            choices=["like", "dislike"], required=False, allow_null=True, default=None
        )
        content = StrictCharField(
            required=False, allow_blank=True, allow_null=True, default="", max_length=10_000
        )

    def post(self, request: Request, message_id: str) -> Response:
        app = _app(request)
        data = validated(self.InputSerializer, _body(request))
        message = selectors.message_get(app=app, end_user=data["user"], message_id=message_id)
        services.message_feedback_submit(
            message=message,
            end_user=data["user"],
            rating=data["rating"],
            content=data["content"] or "",
        )
        return Response({"result": "success"})


class AppParametersApi(APIView):
    def get(self, request: Request) -> Response:
        app = _app(request)
        body: dict[str, Any] = {
            "opening_statement": app.opening_statement,
            "suggested_questions": list(app.suggested_questions or []),
        }
        body.update({feature: {"enabled": False} for feature in FEATURES_OFF})
        moderated = any(
            (getattr(app, field) or "").strip()
            for field in (
                "moderation_input_keywords",
                "moderation_input_patterns",
                "moderation_output_keywords",
                "moderation_output_patterns",
            )
        )
        body["sensitive_word_avoidance"] = {"enabled": moderated}
        body.update(
            user_input_form=list(app.user_input_form or []),
            file_upload={
                "image": {
                    "enabled": False,
                    "number_limits": 3,
                    "detail": "high",
                    "transfer_methods": ["remote_url", "local_file"],
                }
            },
            system_parameters=SYSTEM_PARAMETERS,
        )
        return Response(body)


class AppInfoApi(APIView):
    def get(self, request: Request) -> Response:
        app = _app(request)
        return Response(
            {
                "name": app.name,
                "description": app.description,
                "tags": list(app.tags or []),
                "mode": app.mode,
                "author_name": app.author_name,
            }
        )


class AppMetaApi(APIView):
    def get(self, request: Request) -> Response:
        _app(request)
        return Response({"tool_icons": {}})
