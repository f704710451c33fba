"""The OpenAI-compatible routes in the OpenAPI document: schemas written as the views render them
(apps.openai.frames) and as apps.openai.requests validates requests."""

from collections.abc import Callable
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework.views import APIView

from apps.core.priorities import Priority
from apps.interface.openapi_schemas import (
    INTEGER,
    NUMBER,
    OBJECT,
    STRING,
    UNIX_TIME,
    nullable,
    object_of,
    ref,
)
from apps.openai.requests import MAX_MESSAGES, MAX_STOP_SEQUENCES, SERVICE_TIERS

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


def _enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


USAGE = object_of({"prompt_tokens": INTEGER, "completion_tokens": INTEGER, "total_tokens": INTEGER})
_TEXT_PART = object_of({"type": _enum("text"), "text": STRING})
_MESSAGE = object_of(
    {
        "role": _enum("system", "developer", "user", "assistant"),
        "content": {"oneOf": [STRING, {"type": "array", "items": _TEXT_PART}]},
    },
    {"name": STRING},
)

COMPONENTS: dict[str, Any] = {
    OPENAI_ERROR: object_of(
        {
            "error": object_of(
                {
                    "message": STRING,
                    "type": STRING,
                    "param": nullable(STRING),
                    "code": nullable(STRING),
                }
            )
        }
    ),
    CHAT_COMPLETION_REQUEST: object_of(
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
            "stream_options": object_of({}, {"include_usage": {"type": "boolean"}}),
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
    CHAT_COMPLETION: object_of(
        {
            "id": STRING,
            "object": _enum("chat.completion"),
            "created": UNIX_TIME,
            "model": STRING,
            "choices": {
                "type": "array",
                "items": object_of(
                    {
                        "index": INTEGER,
                        "message": object_of(
                            {"role": _enum("assistant"), "content": STRING},
                            {"refusal": nullable(STRING)},
                        ),
                        "finish_reason": STRING,
                    },
                    {"logprobs": nullable(OBJECT)},
                ),
            },
            "usage": USAGE,
        },
        {"system_fingerprint": nullable(STRING)},
    ),
    MODEL: object_of(
        {"id": STRING, "object": _enum("model"), "created": UNIX_TIME, "owned_by": STRING}
    ),
    MODEL_LIST: object_of(
        {"object": _enum("list"), "data": {"type": "array", "items": ref(MODEL)}}
    ),
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


StandIn = Callable[[str, dict[str, dict[str, Any]]], type[APIView]]


def openai_documented(stand_in: StandIn) -> dict[str, type[APIView]]:
    """The schema-only view of each OpenAI-compatible route, by route name
    (apps.interface.routes)."""
    return {**_chat_routes(stand_in), **_batch_routes(stand_in)}


def _chat_routes(stand_in: StandIn) -> dict[str, type[APIView]]:
    chat = stand_in(
        "chat_completion",
        {
            "post": {
                "operation_id": "chat_completion",
                "description": "OpenAI's chat completions, on the app's model: a "
                "`chat.completion`, or with `stream` its chunks as Server-Sent Events.",
                "request": {"application/json": ref(CHAT_COMPLETION_REQUEST)},
                "parameters": [
                    OpenApiParameter(
                        "Idempotency-Key", str, OpenApiParameter.HEADER, required=False
                    ),
                    OpenApiParameter("X-Priority", str, OpenApiParameter.HEADER, required=False),
                ],
                "responses": responses(
                    {
                        (200, "application/json"): ref(CHAT_COMPLETION),
                        (200, "text/event-stream"): CHUNK_STREAM,
                    },
                    CHAT_ERRORS,
                ),
            }
        },
    )
    models = stand_in(
        "model_list",
        {
            "get": {
                "operation_id": "model_list",
                "responses": responses({200: ref(MODEL_LIST)}, (401, 403, 429)),
            }
        },
    )
    model = stand_in(
        "model_get",
        {
            "get": {
                "operation_id": "model_get",
                "parameters": [OpenApiParameter("model", OpenApiTypes.STR, OpenApiParameter.PATH)],
                "responses": responses({200: ref(MODEL)}, READ_ERRORS),
            }
        },
    )
    return {"openai-chat-completions": chat, "openai-models": models, "openai-model": model}


FILE = "OpenAIFile"
FILE_LIST = "OpenAIFileList"
BATCH = "Batch"
BATCH_LIST = "BatchList"
_TIMESTAMP = nullable(UNIX_TIME)


def _list_of(item: str) -> dict[str, Any]:
    return object_of(
        {
            "object": _enum("list"),
            "data": {"type": "array", "items": ref(item)},
            "has_more": {"type": "boolean"},
        },
        {"first_id": nullable(STRING), "last_id": nullable(STRING)},
    )


COMPONENTS.update(
    {
        FILE: object_of(
            {
                "id": STRING,
                "object": _enum("file"),
                "bytes": INTEGER,
                "created_at": UNIX_TIME,
                "filename": STRING,
                "purpose": _enum("batch", "batch_output"),
                "status": STRING,
            },
            {"expires_at": _TIMESTAMP, "status_details": nullable(STRING)},
        ),
        FILE_LIST: _list_of(FILE),
        BATCH: object_of(
            {
                "id": STRING,
                "object": _enum("batch"),
                "endpoint": STRING,
                "input_file_id": nullable(STRING),
                "completion_window": STRING,
                "status": _enum(
                    "validating",
                    "failed",
                    "in_progress",
                    "finalizing",
                    "completed",
                    "expired",
                    "cancelling",
                    "cancelled",
                ),
                "created_at": UNIX_TIME,
                "request_counts": object_of(
                    {"total": INTEGER, "completed": INTEGER, "failed": INTEGER}
                ),
            },
            {
                "model": STRING,
                "errors": nullable(
                    object_of(
                        {"object": STRING, "data": {"type": "array", "items": OBJECT}},
                    )
                ),
                "output_file_id": nullable(STRING),
                "error_file_id": nullable(STRING),
                "expires_at": _TIMESTAMP,
                "in_progress_at": _TIMESTAMP,
                "finalizing_at": _TIMESTAMP,
                "completed_at": _TIMESTAMP,
                "failed_at": _TIMESTAMP,
                "expired_at": _TIMESTAMP,
                "cancelling_at": _TIMESTAMP,
                "cancelled_at": _TIMESTAMP,
                "metadata": nullable(OBJECT),
            },
        ),
        BATCH_LIST: _list_of(BATCH),
    }
)
_UPLOAD = {
    "multipart/form-data": object_of(
        {"file": {"type": "string", "format": "binary"}, "purpose": _enum("batch")}
    )
}
_BATCH_REQUEST = {
    "application/json": object_of(
        {
            "input_file_id": STRING,
            "endpoint": _enum("/v1/chat/completions"),
            "completion_window": _enum("24h"),
        },
        {"metadata": OBJECT},
    )
}
_PAGING = [
    OpenApiParameter("limit", int, required=False, description="1 to 100."),
    OpenApiParameter("after", str, required=False),
]


def _path(name: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.STR, OpenApiParameter.PATH)


def _batch_routes(stand_in: StandIn) -> dict[str, type[APIView]]:
    files = stand_in(
        "openai_files",
        {
            "get": {
                "operation_id": "openai_file_list",
                "parameters": [
                    *_PAGING,
                    OpenApiParameter("purpose", str, required=False),
                    OpenApiParameter("order", str, required=False, enum=["asc", "desc"]),
                ],
                "responses": responses({200: ref(FILE_LIST)}, READ_ERRORS),
            },
            "post": {
                "operation_id": "openai_file_create",
                "description": "A batch's input: JSONL, purpose=batch.",
                "request": _UPLOAD,
                "responses": responses({200: ref(FILE)}, (400, 401, 403, 413, 429)),
            },
        },
    )
    file = stand_in(
        "openai_file",
        {
            "get": {
                "operation_id": "openai_file_retrieve",
                "parameters": [_path("file_id")],
                "responses": responses({200: ref(FILE)}, READ_ERRORS),
            },
            "delete": {
                "operation_id": "openai_file_delete",
                "parameters": [_path("file_id")],
                "responses": responses(
                    {
                        200: object_of(
                            {"id": STRING, "object": STRING, "deleted": {"type": "boolean"}}
                        )
                    },
                    READ_ERRORS,
                ),
            },
        },
    )
    content = stand_in(
        "openai_file_content",
        {
            "get": {
                "operation_id": "openai_file_content",
                "parameters": [_path("file_id")],
                "responses": responses(
                    {(200, "application/jsonl"): {"type": "string", "format": "binary"}},
                    READ_ERRORS,
                ),
            }
        },
    )
    batches = stand_in(
        "batches",
        {
            "get": {
                "operation_id": "batch_list",
                "parameters": _PAGING,
                "responses": responses({200: ref(BATCH_LIST)}, READ_ERRORS),
            },
            "post": {
                "operation_id": "batch_create",
                "request": _BATCH_REQUEST,
                "responses": responses({200: ref(BATCH)}, (400, 401, 403, 413, 415, 429)),
            },
        },
    )
    batch = stand_in(
        "batch",
        {
            "get": {
                "operation_id": "batch_retrieve",
                "parameters": [_path("batch_id")],
                "responses": responses({200: ref(BATCH)}, READ_ERRORS),
            }
        },
    )
    cancel = stand_in(
        "batch_cancel",
        {
            "post": {
                "operation_id": "batch_cancel",
                "parameters": [_path("batch_id")],
                "responses": responses({200: ref(BATCH)}, READ_ERRORS),
            }
        },
    )
    return {
        "openai-files": files,
        "openai-file": file,
        "openai-file-content": content,
        "openai-batches": batches,
        "openai-batch": batch,
        "openai-batch-cancel": cancel,
    }
