"""Response schemas of the OpenAPI document, written as the views render them (Dify's shapes).

Requests are documented from the validating serializers; responses here, because several are
assembled by hand (the blocking answer from the event log, the app description) or come from
serializer method fields whose JSON types only their code shows.
"""

from typing import Any

ERROR = "Error"
BLOCKING_ANSWER = "BlockingAnswer"
ASK_ANSWER = "AskAnswer"
CONVERSATION = "Conversation"
MESSAGE = "Message"

STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer"}
NUMBER: dict[str, Any] = {"type": "number"}
OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
ARRAY: dict[str, Any] = {"type": "array", "items": {}}
UUID: dict[str, Any] = {"type": "string", "format": "uuid"}
UNIX_TIME: dict[str, Any] = {"type": "integer", "description": "Unix time in seconds."}
SSE_STREAM: dict[str, Any] = {
    "type": "string",
    "description": "Server-Sent Events: `data: {json}` events (message, message_replace, "
    "message_end, error) and `event: ping` keep-alives every 10 s.",
}
FEATURES = (
    "suggested_questions_after_answer",
    "speech_to_text",
    "text_to_speech",
    "retriever_resource",
    "annotation_reply",
    "more_like_this",
    "sensitive_word_avoidance",
)


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


USAGE = _object(
    {
        "prompt_tokens": INTEGER,
        "completion_tokens": INTEGER,
        "total_tokens": INTEGER,
        "total_price": STRING,
        "currency": STRING,
        "latency": NUMBER,
    },
    {"time_to_first_token": _nullable(NUMBER)},
)

COMPONENTS: dict[str, dict[str, Any]] = {
    ERROR: _object(
        {
            "code": {**STRING, "description": "snake_case error code"},
            "message": STRING,
            "status": {**INTEGER, "description": "The HTTP status, repeated."},
        }
    ),
    "Usage": {**USAGE, "additionalProperties": True},
    "AnswerMetadata": _object(
        {"usage": ref("Usage"), "retriever_resources": ARRAY},
        {
            "cache": {
                **_object({"hit": {"type": "boolean"}}, {"age_s": NUMBER}),
                "description": "(ext) Only for apps with the response cache: whether the answer "
                "came from it, and how old it is.",
            }
        },
    ),
    BLOCKING_ANSWER: _object(
        {
            "event": {"type": "string", "enum": ["message"]},
            "task_id": UUID,
            "id": UUID,
            "message_id": UUID,
            "mode": {"type": "string", "enum": ["chat", "completion"]},
            "answer": STRING,
            "metadata": ref("AnswerMetadata"),
            "created_at": UNIX_TIME,
        },
        {"conversation_id": {**UUID, "description": "Chat answers only."}},
    ),
    ASK_ANSWER: _object({"response": STRING, "task_id": UUID, "duration_ms": NUMBER}),
    CONVERSATION: _object(
        {
            "id": UUID,
            "name": STRING,
            "inputs": OBJECT,
            "status": STRING,
            "introduction": STRING,
            "created_at": UNIX_TIME,
            "updated_at": UNIX_TIME,
        }
    ),
    MESSAGE: _object(
        {
            "id": UUID,
            "conversation_id": UUID,
            "parent_message_id": _nullable(STRING),
            "inputs": OBJECT,
            "query": STRING,
            "answer": STRING,
            "status": {"type": "string", "enum": ["normal", "error"]},
            "error": _nullable(STRING),
            "message_files": ARRAY,
            "feedback": _nullable(_object({"rating": STRING})),
            "retriever_resources": ARRAY,
            "agent_thoughts": ARRAY,
            "extra_contents": ARRAY,
            "created_at": UNIX_TIME,
            "message_tokens": INTEGER,
            "answer_tokens": INTEGER,
            "total_tokens": INTEGER,
            "provider_response_latency": NUMBER,
            "total_price": STRING,
            "currency": STRING,
        }
    ),
    "AppParameters": _object(
        {
            "opening_statement": STRING,
            "suggested_questions": {"type": "array", "items": STRING},
            **{name: _object({"enabled": {"type": "boolean"}}) for name in FEATURES},
            "user_input_form": {"type": "array", "items": OBJECT},
            "file_upload": OBJECT,
            "system_parameters": OBJECT,
        }
    ),
    "AppInfo": _object(
        {
            "name": STRING,
            "description": STRING,
            "tags": {"type": "array", "items": STRING},
            "mode": {"type": "string", "enum": ["chat", "completion"]},
            "author_name": STRING,
        }
    ),
    "AppMeta": _object({"tool_icons": OBJECT}),
}


def add_components(result: dict[str, Any]) -> None:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in COMPONENTS.items():
        schemas.setdefault(name, schema)
