"""Dify's request bodies for the answer routes (and the shapes the other routes share): validated
and cleaned for the model before anything is recorded."""

import copy
import re
import unicodedata
import uuid
from typing import Any

from django.conf import settings
from rest_framework import serializers

from apps.api.bodies import BAD_TEXT
from apps.core.errors import InvalidParam
from apps.core.exception_handler import to_api_error
from apps.core.priorities import Priority

MAX_USER_CHARS = 255
USER_ERRORS: dict[str, Any] = {
    "required": "Arg user must be provided.",
    "blank": "Arg user must be provided.",
    "null": "Arg user must be provided.",
}


MAX_INPUT_NAME_CHARS = 255


def _longest_text(value: Any) -> int:
    pending, longest = [value], 0
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            longest = max(longest, len(item))
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return longest


def inputs_limits_check(inputs: dict[str, Any]) -> dict[str, Any]:
    """At most MAX_INPUTS variables, names of at most 255 characters, text of at most
    MAX_INPUT_CHARS characters (the app's form may be stricter per variable)."""
    limits = settings.GATEWAY
    if len(inputs) > limits["MAX_INPUTS"]:
        raise serializers.ValidationError(f"must have at most {limits['MAX_INPUTS']} variables")
    for name, value in inputs.items():
        if len(name) > MAX_INPUT_NAME_CHARS:
            raise serializers.ValidationError(
                f"variable names must be at most {MAX_INPUT_NAME_CHARS} characters"
            )
        if _longest_text(value) > limits["MAX_INPUT_CHARS"]:
            raise serializers.ValidationError(
                f"{name} must be at most {limits['MAX_INPUT_CHARS']} characters"
            )
    return inputs


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers and booleans instead of turning them into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a string")
        return str(super().to_internal_value(data))


# Control characters (Unicode category Cc) other than \t and \n: invisible, and they confuse
# tokenizers and terminals. \r is kept as a line break (\r\n and a lone \r become \n).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def text_clean(value: str) -> str:
    """Text as the model should see it: Unicode NFC, line breaks as \n, no control characters but
    \n and \t. Length limits apply to the cleaned text."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", unicodedata.normalize("NFC", value))


def texts_clean(value: Any) -> Any:
    if isinstance(value, str):
        return text_clean(value)
    if isinstance(value, dict):
        return {key: texts_clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [texts_clean(item) for item in value]
    return value


class CleanTextField(StrictCharField):
    """Free text for the model (see `text_clean`); text that cleans away to nothing is blank."""

    def to_internal_value(self, data: Any) -> str:
        value = text_clean(super().to_internal_value(data))
        if not value and not self.allow_blank:
            self.fail("blank")
        return value


class CleanInputsField(serializers.DictField):
    """The `inputs` object, every text in it cleaned like the query."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        return dict(texts_clean(super().to_internal_value(data)))


class FlatSerializer(serializers.Serializer):
    """A serializer of plain fields, each bound afresh per request without deep copies.

    DRF deep-copies every declared field for each serializer instance, so that no field's state
    leaks from one request to the next: on the answer routes that copy costs more than the
    validation itself. These serializers have no nested serializers, and their fields keep no
    per-request state (their validators are built per copy, lazily): a shallow copy, bound to
    the new instance, is as separate as a deep one where it matters."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {name: copy.copy(field) for name, field in self._declared_fields.items()}


FILE_TYPES = ("image", "document", "audio", "video", "custom")
TRANSFER_METHODS = ("remote_url", "local_file")
MAX_URL_CHARS = 2048
MAX_FILES = 20


class AttachmentsField(serializers.Field):
    """Dify's `files`: a list of `{"type", "transfer_method", "url" | "upload_file_id"}`. The
    shape is checked here; whether the app takes each file, when the question is recorded
    (apps.conversations.attachments). A plain field, not a nested serializer: it keeps no state
    between requests (see FlatSerializer)."""

    def to_internal_value(self, data: Any) -> list[dict[str, str]]:
        if not isinstance(data, list):
            raise serializers.ValidationError("must be a list of files")
        if len(data) > MAX_FILES:
            raise serializers.ValidationError(f"must have at most {MAX_FILES} files")
        return [_attachment(index, item) for index, item in enumerate(data)]

    def to_representation(self, value: Any) -> Any:
        return value

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if data is None:
            return True, []  # `"files": null` means none
        return super().validate_empty_values(data)


def _attachment(index: int, item: Any) -> dict[str, str]:
    def wrong(problem: str) -> serializers.ValidationError:
        return serializers.ValidationError(f"files[{index}]: {problem}")

    if not isinstance(item, dict):
        raise wrong("must be an object")
    kind, method = item.get("type"), item.get("transfer_method")
    if kind not in FILE_TYPES:
        raise wrong(f"type must be one of {', '.join(FILE_TYPES)}")
    if method not in TRANSFER_METHODS:
        raise wrong(f"transfer_method must be one of {', '.join(TRANSFER_METHODS)}")
    if method == "local_file":
        upload_id = item.get("upload_file_id")
        if not isinstance(upload_id, str):
            raise wrong("upload_file_id is required for a local_file")
        try:
            return {
                "type": kind,
                "transfer_method": method,
                "upload_file_id": str(uuid.UUID(upload_id)),
            }
        except ValueError:
            raise wrong("upload_file_id must be an upload's id (a UUID)") from None
    url = item.get("url")
    if not isinstance(url, str) or not url.strip():
        raise wrong("url is required for a remote_url")
    if len(url) > MAX_URL_CHARS or BAD_TEXT.search(url):
        raise wrong(f"url must be a URL of at most {MAX_URL_CHARS} characters")
    return {"type": kind, "transfer_method": method, "url": url.strip()}


class AnswerRequestSerializer(FlatSerializer):
    inputs = CleanInputsField(required=True)
    query = CleanTextField(required=True, allow_blank=False, trim_whitespace=False)
    response_mode = serializers.ChoiceField(
        choices=["blocking", "streaming"], required=False, default="blocking"
    )
    user = StrictCharField(max_length=MAX_USER_CHARS, required=True, error_messages=USER_ERRORS)
    # The official Dify client sends `"files": null` when there are none.
    files = AttachmentsField(required=False, default=list, allow_null=True)
    auto_generate_name = serializers.BooleanField(required=False, default=True)
    priority = serializers.ChoiceField(choices=Priority.values, required=False)
    deadline_ms = serializers.IntegerField(required=False, min_value=1, max_value=24 * 3600 * 1000)

    def validate_inputs(self, value: dict[str, Any]) -> dict[str, Any]:
        return inputs_limits_check(value)

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
    query = CleanTextField(required=False, allow_blank=True, default="", trim_whitespace=False)


class AskRequestSerializer(FlatSerializer):
    query = CleanTextField(required=True, allow_blank=False)
    priority = serializers.ChoiceField(choices=Priority.values, required=False)
    user = StrictCharField(max_length=MAX_USER_CHARS, required=False, default="api-ask")

    def validate_query(self, value: str) -> str:
        if len(value) > settings.PLATFORM["MAX_QUERY_CHARS"]:
            raise serializers.ValidationError(
                f"must be at most {settings.PLATFORM['MAX_QUERY_CHARS']} characters"
            )
        return value


class StopRequestSerializer(FlatSerializer):
    user = StrictCharField(max_length=MAX_USER_CHARS, required=True, error_messages=USER_ERRORS)


def validated(
    serializer_class: type[serializers.Serializer], data: dict[str, Any]
) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        error = to_api_error(serializers.ValidationError(serializer.errors))
        raise error if error.status != 500 else InvalidParam("Invalid request.")
    return dict(serializer.validated_data)
