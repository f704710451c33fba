"""The OpenAI-compatible routes in the OpenAPI document: schemas written as the views render them
(apps.interface.openai_shapes) and as apps.gateway.openai_requests validates requests."""

from collections.abc import Callable
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework.views import APIView

from apps.core.priorities import Priority
from apps.gateway.openai_requests import MAX_MESSAGES, MAX_STOP_SEQUENCES, SERVICE_TIERS
from apps.interface.openapi_schemas import INTEGER, NUMBER, OBJECT, STRING, UNIX_TIME, ref

OPENAI_ERROR = "OpenAIError"
CHAT_COMPLETION_REQUEST = "ChatCompletionRequest"
CHAT_COMPLETION = "ChatCompletion"
MODEL = "Model"
MODEL_LIST = "ModelList"

ERROR_TEXT = {
    400: "Invalid request (`param` names the argument)",
    401: "Missing or unknown key (`invalid_api_key`)",
    403: "The app is disabled",
    404: "Unknown model (`model_not_found`) or object",
    413: "Body too large",
    415: "A form-encoded body that is not JSON",
    422: "Idempotency-Key reused with a different request",
    429: "Rate limit or too many answers at once (`rate_limit_exceeded`)",
    503: "Overloaded: the wait for a worker exceeds the request's budget",
    504: "Not ready within the deadline",
}
CHAT_ERRORS = (400, 401, 403, 404, 413, 415, 422, 429, 503, 504)
READ_ERRORS = (400, 401, 403, 404, 429)


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


USAGE = _object({"prompt_tokens": INTEGER, "completion_tokens": INTEGER, "total_tokens": INTEGER})
_TEXT_PART = _object({"type": _enum("text"), "text": STRING})
_MESSAGE = _object(
    {
        "role": _enum("system", "developer", "user", "assistant"),
        "content": {"oneOf": [STRING, {"type": "array", "items": _TEXT_PART}]},
    },
    {"name": STRING},
)

COMPONENTS: dict[str, Any] = {
    OPENAI_ERROR: _object(
        {
            "error": _object(
                {
                    "message": STRING,
                    "type": STRING,
                    "param": _nullable(STRING),
                    "code": _nullable(STRING),
                }
            )
        }
    ),
    CHAT_COMPLETION_REQUEST: _object(
        {
            "model": {**STRING, "description": "The app's model, as /v1/models lists it."},
            "messages": {
                "type": "array",
                "items": _MESSAGE,
                "minItems": 1,
                "maxItems": MAX_MESSAGES,
                "description": "The conversation; the last message is the user's question.",
            },
        },
        {
            "stream": {"type": "boolean"},
            "stream_options": _object({}, {"include_usage": {"type": "boolean"}}),
            "max_tokens": {**INTEGER, "minimum": 1},
            "max_completion_tokens": {**INTEGER, "minimum": 1},
            "temperature": {**NUMBER, "minimum": 0, "maximum": 2},
            "top_p": {**NUMBER, "minimum": 0, "maximum": 1},
            "stop": {
                "oneOf": [
                    STRING,
                    {"type": "array", "items": STRING, "maxItems": MAX_STOP_SEQUENCES},
                ]
            },
            "user": STRING,
            "n": {**INTEGER, "enum": [1]},
            "seed": INTEGER,
            "presence_penalty": {**NUMBER, "minimum": -2, "maximum": 2},
            "frequency_penalty": {**NUMBER, "minimum": -2, "maximum": 2},
            "service_tier": _enum(*SERVICE_TIERS),
            "priority": {**_enum(*Priority.values), "description": "(ext) the queue to run on."},
            "deadline_ms": {
                **INTEGER,
                "minimum": 1,
                "description": "(ext) expire, not answer late.",
            },
            "inputs": {**OBJECT, "description": "(ext) the app's input variables."},
        },
    ),
    CHAT_COMPLETION: _object(
        {
            "id": STRING,
            "object": _enum("chat.completion"),
            "created": UNIX_TIME,
            "model": STRING,
            "choices": {
                "type": "array",
                "items": _object(
                    {
                        "index": INTEGER,
                        "message": _object(
                            {"role": _enum("assistant"), "content": STRING},
                            {"refusal": _nullable(STRING)},
                        ),
                        "finish_reason": STRING,
                    },
                    {"logprobs": _nullable(OBJECT)},
                ),
            },
            "usage": USAGE,
        },
        {"system_fingerprint": _nullable(STRING)},
    ),
    MODEL: _object(
        {"id": STRING, "object": _enum("model"), "created": UNIX_TIME, "owned_by": STRING}
    ),
    MODEL_LIST: _object({"object": _enum("list"), "data": {"type": "array", "items": ref(MODEL)}}),
}
CHUNK_STREAM: dict[str, Any] = {
    "type": "string",
    "description": "Server-Sent Events: `data: {chat.completion.chunk}` events, then "
    '`data: [DONE]`; an error after the first byte comes as `data: {"error": {...}}`.',
}


def responses(success: dict[Any, Any], errors: tuple[int, ...]) -> dict[Any, Any]:
    documented: dict[Any, Any] = dict(success)
    for status in errors:
        documented[status] = OpenApiResponse(ref(OPENAI_ERROR), description=ERROR_TEXT[status])
    return documented


StandIn = Callable[..., type[APIView]]


def openai_routes(stand_in: StandIn) -> list[tuple[str, type[APIView]]]:
    """(path, schema-only view) for each OpenAI-compatible route."""
    chat = stand_in(
        "chat_completion",
        "post",
        operation_id="chat_completion",
        description="OpenAI's chat completions, on the app's model: a `chat.completion`, or "
        "with `stream` its chunks as Server-Sent Events.",
        request={"application/json": ref(CHAT_COMPLETION_REQUEST)},
        parameters=[
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False),
            OpenApiParameter("X-Priority", str, OpenApiParameter.HEADER, required=False),
        ],
        responses=responses(
            {
                (200, "application/json"): ref(CHAT_COMPLETION),
                (200, "text/event-stream"): CHUNK_STREAM,
            },
            CHAT_ERRORS,
        ),
    )
    models = stand_in(
        "model_list",
        "get",
        operation_id="model_list",
        responses=responses({200: ref(MODEL_LIST)}, (401, 403, 429)),
    )
    model = stand_in(
        "model_get",
        "get",
        operation_id="model_get",
        parameters=[OpenApiParameter("model", OpenApiTypes.STR, OpenApiParameter.PATH)],
        responses=responses({200: ref(MODEL)}, READ_ERRORS),
    )
    return [
        ("v1/chat/completions", chat),
        ("v1/models", models),
        ("v1/models/<path:model>", model),
    ]
