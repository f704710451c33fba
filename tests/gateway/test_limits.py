"""Request limits: body size, JSON depth, string lengths, number of inputs, malformed text,
content types and JSON types. Each is a 4xx in the envelope, and nothing is recorded."""

import json
from typing import Any

import pytest
from django.test import Client

from apps.scheduling.models import Task
from tests.factories import make_app_with_key

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat-messages"
VALID = {"inputs": {}, "query": "Hello", "user": "u1", "response_mode": "streaming"}


@pytest.fixture
def key() -> str:
    return make_app_with_key()[1]


def post(client: Client, key: str, body: Any, content_type: str = "application/json") -> Any:
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(
        CHAT, data=raw, content_type=content_type, headers={"Authorization": f"Bearer {key}"}
    )


def assert_refused(response: Any, status: int, code: str, message_part: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert body == {"code": code, "message": body["message"], "status": status}
    assert message_part in body["message"], body["message"]
    assert Task.objects.count() == 0


def nested(depth: int) -> dict[str, Any]:
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = {"n": value}
    return {**VALID, "inputs": {"deep": value}}


def test_json_nesting_beyond_the_limit(client: Client, key: str, settings: Any) -> None:
    settings.GATEWAY = {**settings.GATEWAY, "MAX_JSON_DEPTH": 8}
    # nested(n): n levels in `deep`, plus `inputs` and the body object.
    assert_refused(post(client, key, nested(8)), 400, "invalid_param", "deeper than 8 levels")
    assert post(client, key, nested(7)).status_code == 200


def test_brackets_inside_strings_do_not_count_as_nesting(
    client: Client, key: str, settings: Any
) -> None:
    settings.GATEWAY = {**settings.GATEWAY, "MAX_JSON_DEPTH": 4}
    body = {**VALID, "query": '[[[[[[{{{{{{ \\" ]]]'}
    assert post(client, key, body).status_code == 200


def test_too_many_inputs(client: Client, key: str, settings: Any) -> None:
    settings.GATEWAY = {**settings.GATEWAY, "MAX_INPUTS": 3}
    many = {**VALID, "inputs": {f"v{n}": "x" for n in range(4)}}
    assert_refused(post(client, key, many), 400, "invalid_param", "inputs: must have at most 3")
    ok = {**VALID, "inputs": {f"v{n}": "x" for n in range(3)}}
    assert post(client, key, ok).status_code == 200


def test_input_text_too_long(client: Client, key: str, settings: Any) -> None:
    settings.GATEWAY = {**settings.GATEWAY, "MAX_INPUT_CHARS": 10}
    long_text = {**VALID, "inputs": {"topic": "x" * 11}}
    assert_refused(post(client, key, long_text), 400, "invalid_param", "topic must be at most 10")
    hidden = {**VALID, "inputs": {"files": [{"name": "x" * 11}]}}
    assert_refused(post(client, key, hidden), 400, "invalid_param", "files must be at most 10")
    long_name = {**VALID, "inputs": {"n" * 256: "x"}}
    assert_refused(post(client, key, long_name), 400, "invalid_param", "variable names")


def test_user_too_long(client: Client, key: str) -> None:
    assert_refused(post(client, key, {**VALID, "user": "u" * 256}), 400, "invalid_param", "user")


def test_declared_body_size_is_refused_before_reading(
    client: Client, key: str, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = {**VALID, "query": "x" * 2000}
    assert_refused(post(client, key, body), 413, "request_too_large", "1000 bytes")


@pytest.mark.parametrize(
    ("raw", "message_part"),
    [
        (b'{"query": "a\\u0000b", "inputs": {}, "user": "u1"}', "NUL"),
        (b'{"query": "\\ud800", "inputs": {}, "user": "u1"}', "surrogate"),
        (b'{"query": "ok", "inputs": {"\\u0000": 1}, "user": "u1"}', "NUL"),
        (b'{"query": "\xc3\x28", "inputs": {}, "user": "u1"}', "UTF-8"),
    ],
    ids=["nul", "lone-surrogate", "nul-in-key", "bad-utf8"],
)
def test_text_postgresql_cannot_store(
    client: Client, key: str, raw: bytes, message_part: str
) -> None:
    assert_refused(post(client, key, raw), 400, "invalid_param", message_part)


def test_paired_surrogates_are_fine(client: Client, key: str) -> None:
    raw = json.dumps({**VALID, "query": "smile \U0001f600"}).encode()  # ASCII: \\ud83d\\ude00
    assert b"\\ud83d\\ude00" in raw
    assert post(client, key, raw).status_code == 200
    assert Task.objects.get().messages.get().query == "smile \U0001f600"


def test_nul_in_the_url_is_refused(client: Client, key: str) -> None:
    response = client.get(
        "/v1/conversations?user=a%00b", headers={"Authorization": f"Bearer {key}"}
    )
    assert_refused(response, 400, "invalid_param", "NUL")


def test_json_under_a_form_content_type_is_accepted(client: Client, key: str) -> None:
    # What `curl -d '{...}'` sends.
    response = post(client, key, VALID, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        ("query=Hello&user=u1", "application/x-www-form-urlencoded"),
        (
            '--b\r\nContent-Disposition: form-data; name="query"\r\n\r\nHi\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
        ),
    ],
    ids=["urlencoded", "multipart"],
)
def test_a_real_form_body_is_unsupported_media_type(
    client: Client, key: str, raw: str, content_type: str
) -> None:
    response = post(client, key, raw, content_type=content_type)
    assert_refused(response, 415, "unsupported_media_type", "not JSON")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"inputs": []}, "inputs"),
        ({"inputs": 3}, "inputs"),
        ({"query": ["Hello"]}, "query"),
        ({"query": {"text": "Hello"}}, "query"),
        ({"user": 7}, "user"),
        ({"user": True}, "user"),
        ({"response_mode": 1}, "response_mode"),
        ({"priority": 0}, "priority"),
        ({"deadline_ms": "soon"}, "deadline_ms"),
        ({"deadline_ms": 0}, "deadline_ms"),
        ({"deadline_ms": 1.5}, "deadline_ms"),
        ({"conversation_id": 12}, "conversation_id"),
        ({"files": "a.png"}, "files"),
        ({"auto_generate_name": "maybe"}, "auto_generate_name"),
    ],
)
def test_wrong_json_types(client: Client, key: str, change: dict[str, Any], field: str) -> None:
    assert_refused(post(client, key, {**VALID, **change}), 400, "invalid_param", field)
