"""Questions and inputs are cleaned before they are recorded: Unicode NFC, line breaks as \n, no
control characters but \n and \t; limits apply to the cleaned text and are a clear 400."""

import json
from typing import Any

import pytest
from django.test import Client

from apps.dify.requests import ChatRequestSerializer, text_clean, validated
from apps.scheduling.models import Task
from tests.factories import make_app_with_key

pytestmark = pytest.mark.django_db


def post(client: Client, url: str, body: dict[str, Any], key: str) -> Any:
    return client.post(
        url,
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )


def test_text_is_normalised_and_stripped_of_control_characters() -> None:
    decomposed = "Cafe\u0301"  # "e" + combining acute accent
    assert text_clean(decomposed) == "Café"
    assert len(text_clean(decomposed)) == 4
    assert text_clean("a\x07b\x1bc\x7fd\x85e") == "abcde"
    assert text_clean("one\r\ntwo\rthree\n\tfour") == "one\ntwo\nthree\n\tfour"
    assert (
        text_clean("emoji 👩‍💻 stays") == "emoji 👩‍💻 stays"
    )  # joiners are not control characters


def test_query_and_inputs_are_cleaned_by_the_request_serializer() -> None:
    data = validated(
        ChatRequestSerializer,
        {
            "inputs": {"topic": "Re\u0301sume\u0301\x00\x01", "count": 3, "tags": ["a\x02b"]},
            "query": "Hello\x08 world\r\n",
            "user": "u1",
        },
    )
    assert data["query"] == "Hello world\n"
    assert data["inputs"] == {"topic": "Résumé", "count": 3, "tags": ["ab"]}


@pytest.mark.parametrize("url", ["/v1/chat-messages", "/api/v1/ask"])
def test_a_query_of_control_characters_only_is_blank(client: Client, url: str) -> None:
    _, key = make_app_with_key()
    response = post(client, url, {"inputs": {}, "query": "\x01\x02\x1b", "user": "u1"}, key)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_param"
    assert "query" in response.json()["message"]
    assert Task.objects.count() == 0


@pytest.mark.parametrize("url", ["/v1/chat-messages", "/v1/completion-messages", "/api/v1/ask"])
def test_a_query_over_the_limit_is_refused_not_truncated(
    client: Client, url: str, settings: Any
) -> None:
    settings.PLATFORM = {**settings.PLATFORM, "MAX_QUERY_CHARS": 20}
    mode = "completion" if "completion" in url else "chat"
    _, key = make_app_with_key(mode=mode)
    body = {"inputs": {}, "query": "x" * 21, "user": "u1"}

    response = post(client, url, body, key)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_param"
    assert "at most 20 characters" in response.json()["message"]
    assert Task.objects.count() == 0


def test_the_limit_counts_the_cleaned_text(settings: Any) -> None:
    settings.PLATFORM = {**settings.PLATFORM, "MAX_QUERY_CHARS": 5}
    # Ten characters as sent, five once composed: accepted.
    data = validated(ChatRequestSerializer, {"inputs": {}, "query": "e\u0301" * 5, "user": "u1"})
    assert data["query"] == "é" * 5
