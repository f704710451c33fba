"""Parsing and validating request bodies for the /v1 routes, before anything is recorded."""

import json
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from rest_framework import serializers

from apps.core.errors import InvalidJson, InvalidParam, RequestTooLarge
from apps.core.exception_handler import to_api_error
from apps.core.priorities import Priority

MAX_USER_CHARS = 255
USER_ERRORS: dict[str, Any] = {
    "required": "Arg user must be provided.",
    "blank": "Arg user must be provided.",
    "null": "Arg user must be provided.",
}


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object, or the envelope error that explains what is wrong with it."""
    # `curl -d` labels a JSON body as a form; like Dify we accept JSON under any content type.
    try:
        raw = request.body
    except RequestDataTooBig:
        raise RequestTooLarge(
            f"Request body exceeds {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
        ) from None
    if not raw:
        raise InvalidJson()
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidJson("Request body is not valid UTF-8.") from None
    except (json.JSONDecodeError, RecursionError):
        raise InvalidJson() from None
    if not isinstance(data, dict):
        raise InvalidJson()
    return data


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers and booleans instead of turning them into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a string")
        return str(super().to_internal_value(data))


class AnswerRequestSerializer(serializers.Serializer):
    inputs = serializers.DictField(required=True)
    query = StrictCharField(required=True, allow_blank=False, trim_whitespace=False)
    response_mode = serializers.ChoiceField(
        choices=["blocking", "streaming"], required=False, default="blocking"
    )
    user = StrictCharField(max_length=MAX_USER_CHARS, required=True, error_messages=USER_ERRORS)
    # The official Dify client sends `"files": null`; files are accepted and ignored.
    files = serializers.ListField(required=False, default=list, allow_null=True)
    auto_generate_name = serializers.BooleanField(required=False, default=True)
    priority = serializers.ChoiceField(choices=Priority.values, required=False)
    deadline_ms = serializers.IntegerField(required=False, min_value=1, max_value=24 * 3600 * 1000)

    def validate_query(self, value: str) -> str:
        if len(value) > settings.PLATFORM["MAX_QUERY_CHARS"]:
            raise serializers.ValidationError(
                f"must be at most {settings.PLATFORM['MAX_QUERY_CHARS']} characters"
            )
        return value


class ChatRequestSerializer(AnswerRequestSerializer):
    conversation_id = StrictCharField(required=False, allow_blank=True, default="")

    def validate_conversation_id(self, value: str) -> str:
        if value:
            try:
                uuid.UUID(value)
            except ValueError:
                raise serializers.ValidationError("must be a UUID") from None
        return value


class CompletionRequestSerializer(AnswerRequestSerializer):
    query = StrictCharField(required=False, allow_blank=True, default="", trim_whitespace=False)


class AskRequestSerializer(serializers.Serializer):
    query = StrictCharField(required=True, allow_blank=False)
    priority = serializers.ChoiceField(choices=Priority.values, required=False)
    user = StrictCharField(max_length=MAX_USER_CHARS, required=False, default="api-ask")


class StopRequestSerializer(serializers.Serializer):
    user = StrictCharField(max_length=MAX_USER_CHARS, required=True, error_messages=USER_ERRORS)


def validated(
    serializer_class: type[serializers.Serializer], data: dict[str, Any]
) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        error = to_api_error(serializers.ValidationError(serializer.errors))
        raise error if error.status != 500 else InvalidParam("Invalid request.")
    return dict(serializer.validated_data)
