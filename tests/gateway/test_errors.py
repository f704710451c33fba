"""Bad requests get a clear error in Dify's envelope with the right status, and queue nothing."""

import json
import uuid
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.applications.models import ApiKey
from apps.conversations.models import Conversation
from apps.scheduling.models import Task
from tests.factories import make_app_with_key

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat-messages"
COMPLETION = "/v1/completion-messages"
ASK = "/api/v1/ask"
VALID = {"inputs": {}, "query": "Hello", "user": "u1"}


def post(client: Client, url: str, body: Any, key: str | None, **headers: str) -> Any:
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return client.post(url, data=raw, content_type="application/json", headers=headers)


def assert_error(response: Any, status: int, code: str, message_part: str = "") -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "status"}
    assert body["code"] == code
    assert body["status"] == status
    assert message_part in body["message"]
    assert Task.objects.count() == 0, "a rejected request must not queue work"


@pytest.fixture
def chat_key() -> str:
    return make_app_with_key()[1]


@pytest.fixture
def completion_key() -> str:
    return make_app_with_key(name="Completion", mode="completion")[1]


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        (b"{not json", "Invalid JSON payload received or JSON payload is empty."),
        (b"", "Invalid JSON payload received or JSON payload is empty."),
        (b"[1, 2]", "Invalid JSON payload"),
        (b'"a string"', "Invalid JSON payload"),
        (b'{"query": "\xff\xfe"}', "UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, ""),
    ],
    ids=["malformed", "empty", "array", "string", "bad-utf8", "deeply-nested"],
)
def test_malformed_bodies_are_invalid_param(
    client: Client, chat_key: str, body: bytes, message_part: str
) -> None:
    assert_error(post(client, CHAT, body, chat_key), 400, "invalid_param", message_part)


@pytest.mark.parametrize(
    ("change", "message_part"),
    [
        ({"query": None}, "query"),
        ({"query": ""}, "query"),
        ({"user": None}, "Arg user must be provided."),
        ({"user": ""}, "Arg user must be provided."),
        ({"inputs": None}, "inputs"),
        ({"inputs": "text"}, "inputs"),
        ({"response_mode": "fast"}, "response_mode"),
        ({"conversation_id": "not-a-uuid"}, "conversation_id"),
        ({"priority": "urgent"}, "priority"),
        ({"query": "x" * 8001}, "query"),
        ({"query": 42}, "query"),
    ],
    ids=[
        "no-query",
        "empty-query",
        "no-user",
        "empty-user",
        "no-inputs",
        "inputs-not-object",
        "bad-mode",
        "bad-conversation-id",
        "bad-priority",
        "query-too-long",
        "query-not-string",
    ],
)
def test_invalid_fields_are_invalid_param(
    client: Client, chat_key: str, change: dict[str, Any], message_part: str
) -> None:
    body = {**VALID, **change}
    body = {key: value for key, value in body.items() if value is not None}
    assert_error(post(client, CHAT, body, chat_key), 400, "invalid_param", message_part)


def test_unknown_conversation_is_not_found(client: Client, chat_key: str) -> None:
    body = {**VALID, "conversation_id": str(uuid.uuid4())}
    assert_error(post(client, CHAT, body, chat_key), 404, "not_found", "Conversation Not Exists.")


def test_another_users_conversation_is_not_found(client: Client) -> None:
    app, key = make_app_with_key()
    theirs = Conversation.objects.create(app=app, end_user="someone-else")
    body = {**VALID, "conversation_id": str(theirs.id)}
    assert_error(post(client, CHAT, body, key), 404, "not_found", "Conversation Not Exists.")


@pytest.mark.parametrize(
    "authorization",
    [None, "app-123", "Basic abc", "Bearer ", "Bearer app-unknown"],
    ids=["missing", "no-scheme", "wrong-scheme", "empty-token", "unknown-key"],
)
def test_bad_keys_are_unauthorized(client: Client, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client.post(
        CHAT, data=json.dumps(VALID), content_type="application/json", headers=headers
    )
    assert_error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_revoked_key_is_unauthorized(client: Client, chat_key: str) -> None:
    ApiKey.objects.update(revoked_at=timezone.now())
    assert_error(post(client, CHAT, VALID, chat_key), 401, "unauthorized")


def test_disabled_app_is_forbidden(client: Client) -> None:
    _, key = make_app_with_key(enabled=False)
    assert_error(post(client, CHAT, VALID, key), 403, "forbidden")


def test_chat_route_on_completion_app(client: Client, completion_key: str) -> None:
    assert_error(post(client, CHAT, VALID, completion_key), 400, "not_chat_app")


def test_completion_route_on_chat_app(client: Client, chat_key: str) -> None:
    assert_error(post(client, COMPLETION, VALID, chat_key), 400, "app_unavailable")


def test_oversized_body_is_request_too_large(client: Client, chat_key: str, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = {**VALID, "inputs": {"padding": "x" * 20_000}}
    assert_error(post(client, CHAT, body, chat_key), 413, "request_too_large")


def test_wrong_method(client: Client, chat_key: str) -> None:
    response = client.get(CHAT, headers={"Authorization": f"Bearer {chat_key}"})
    assert_error(response, 405, "method_not_allowed")


def test_unknown_url_answers_in_the_envelope(client: Client) -> None:
    assert_error(client.get("/v1/nothing-here"), 404, "not_found")


def test_ask_needs_a_query(client: Client, chat_key: str) -> None:
    assert_error(post(client, ASK, {}, chat_key), 400, "invalid_param", "query")
    assert_error(post(client, ASK, {"query": ""}, chat_key), 400, "invalid_param", "query")


def test_required_input_missing(client: Client) -> None:
    form = [
        {"text-input": {"label": "Topic", "variable": "topic", "required": True, "max_length": 5}}
    ]
    _, key = make_app_with_key(user_input_form=form)
    assert_error(post(client, CHAT, VALID, key), 400, "invalid_param", "topic is required")
    body = {**VALID, "inputs": {"topic": "far too long"}}
    assert_error(post(client, CHAT, body, key), 400, "invalid_param", "topic")
