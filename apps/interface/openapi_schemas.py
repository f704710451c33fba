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
DATE_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
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


def object_of(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


USAGE = object_of(
    {
        "prompt_tokens": INTEGER,
        "completion_tokens": INTEGER,
        "total_tokens": INTEGER,
        "total_price": STRING,
        "currency": STRING,
        "latency": NUMBER,
    },
    {"time_to_first_token": nullable(NUMBER)},
)

COMPONENTS: dict[str, dict[str, Any]] = {
    ERROR: object_of(
        {
            "code": {**STRING, "description": "snake_case error code"},
            "message": STRING,
            "status": {**INTEGER, "description": "The HTTP status, repeated."},
        }
    ),
    "Usage": {**USAGE, "additionalProperties": True},
    "AnswerMetadata": object_of(
        {"usage": ref("Usage"), "retriever_resources": ARRAY},
        {
            "cache": {
                **object_of({"hit": {"type": "boolean"}}, {"age_s": NUMBER}),
                "description": "(ext) Only for apps with the response cache: whether the answer "
                "came from it, and how old it is.",
            }
        },
    ),
    BLOCKING_ANSWER: object_of(
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
    ASK_ANSWER: object_of({"response": STRING, "task_id": UUID, "duration_ms": NUMBER}),
    CONVERSATION: object_of(
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
    MESSAGE: object_of(
        {
            "id": UUID,
            "conversation_id": UUID,
            "parent_message_id": nullable(STRING),
            "inputs": OBJECT,
            "query": STRING,
            "answer": STRING,
            "status": {"type": "string", "enum": ["normal", "error"]},
            "error": nullable(STRING),
            "message_files": {"type": "array", "items": ref("MessageFile")},
            "feedback": nullable(object_of({"rating": STRING})),
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
    "AppParameters": object_of(
        {
            "opening_statement": STRING,
            "suggested_questions": {"type": "array", "items": STRING},
            **{name: object_of({"enabled": {"type": "boolean"}}) for name in FEATURES},
            "user_input_form": {"type": "array", "items": OBJECT},
            "file_upload": OBJECT,
            "system_parameters": OBJECT,
        }
    ),
    "AppInfo": object_of(
        {
            "name": STRING,
            "description": STRING,
            "tags": {"type": "array", "items": STRING},
            "mode": {"type": "string", "enum": ["chat", "completion"]},
            "author_name": STRING,
        }
    ),
    "AppMeta": object_of({"tool_icons": OBJECT}),
    "MessageFile": object_of(
        {
            "id": UUID,
            "filename": STRING,
            "type": {"type": "string", "enum": ["image", "document"]},
            "url": nullable(STRING),
            "mime_type": nullable(STRING),
            "size": nullable(INTEGER),
            "transfer_method": {"type": "string", "enum": ["local_file", "remote_url"]},
            "belongs_to": STRING,
            "upload_file_id": nullable(UUID),
        }
    ),
    "FileUpload": object_of(
        {
            "id": UUID,
            "name": STRING,
            "size": INTEGER,
            "extension": nullable(STRING),
            "mime_type": STRING,
            "created_by": {**UUID, "description": "The end user's id (GET /v1/end-users/{id})."},
            "created_at": UNIX_TIME,
            "preview_url": STRING,
            "source_url": STRING,
            "original_url": nullable(STRING),
            "user_id": nullable(UUID),
            "tenant_id": nullable(UUID),
            "conversation_id": nullable(UUID),
            "file_key": nullable(STRING),
            "reference": nullable(STRING),
        }
    ),
    "SuggestedQuestions": object_of(
        {
            "result": {"type": "string", "enum": ["success"]},
            "data": {"type": "array", "items": STRING},
        }
    ),
    "AppFeedback": object_of(
        {
            "id": UUID,
            "app_id": UUID,
            "conversation_id": nullable(UUID),
            "message_id": UUID,
            "rating": {"type": "string", "enum": ["like", "dislike"]},
            "content": nullable(STRING),
            "from_source": {"type": "string", "enum": ["user"]},
            "from_end_user_id": nullable(UUID),
            "from_account_id": nullable(UUID),
            "created_at": DATE_TIME,
            "updated_at": DATE_TIME,
        }
    ),
    "AppFeedbacks": object_of(
        {
            "data": {"type": "array", "items": ref("AppFeedback")},
            "has_more": {"type": "boolean"},
            "limit": INTEGER,
            "page": INTEGER,
        }
    ),
    "Site": object_of(
        {
            "title": STRING,
            "chat_color_theme": STRING,
            "chat_color_theme_inverted": {"type": "boolean"},
            "icon_type": STRING,
            "icon": STRING,
            "icon_background": STRING,
            "icon_url": nullable(STRING),
            "description": STRING,
            "copyright": STRING,
            "privacy_policy": STRING,
            "input_placeholder": nullable(STRING),
            "custom_disclaimer": STRING,
            "default_language": STRING,
            "show_workflow_steps": {"type": "boolean"},
            "use_icon_as_answer_icon": {"type": "boolean"},
        }
    ),
    "EndUser": object_of(
        {
            "id": UUID,
            "tenant_id": UUID,
            "app_id": nullable(UUID),
            "type": STRING,
            "external_user_id": nullable(STRING),
            "name": nullable(STRING),
            "is_anonymous": {"type": "boolean"},
            "session_id": STRING,
            "created_at": DATE_TIME,
            "updated_at": DATE_TIME,
        }
    ),
}


def add_components(result: dict[str, Any]) -> None:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in COMPONENTS.items():
        schemas.setdefault(name, schema)
