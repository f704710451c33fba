"""End to end: conversations named by a real worker, called over HTTP on daphne."""

from typing import Any

import httpx
import pytest

from apps.conversations.services import NAMING_KIND, NEW_CONVERSATION_NAME
from apps.scheduling.models import Task
from tests.factories import make_app_with_key
from tests.processes import WebServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TIMEOUT = httpx.Timeout(60.0)


@pytest.fixture
def platform(live_web: WebServer, live_worker: object) -> WebServer:
    return live_web


def scripted_key(text: str) -> str:
    return make_app_with_key(provider="scripted", provider_config={"text": text})[1]


def call(platform: WebServer, method: str, path: str, key: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.request(
        method, f"{platform.url}{path}", headers=headers, timeout=TIMEOUT, **kwargs
    )


def chat(platform: WebServer, key: str, **extra: Any) -> dict[str, Any]:
    body = {"inputs": {}, "query": "Where should I go in Norway?", "user": "u1", **extra}
    response = call(platform, "POST", "/v1/chat-messages", key, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def listed_name(platform: WebServer, key: str, conversation_id: str) -> str:
    response = call(platform, "GET", "/v1/conversations", key, params={"user": "u1"})
    assert response.status_code == 200, response.text
    return next(c["name"] for c in response.json()["data"] if c["id"] == conversation_id)


def wait_for_a_name(platform: WebServer, key: str, conversation_id: str, timeout_s: float) -> str:
    def named() -> str | None:
        name = listed_name(platform, key, conversation_id)
        return None if name == NEW_CONVERSATION_NAME else name

    try:
        return wait_until(named, timeout_s, "the conversation's name")
    except AssertionError as error:
        naming = list(
            Task.objects.filter(kind=NAMING_KIND, payload__conversation_id=conversation_id).values(
                "status", "attempts", "priority_reason", "error_message"
            )
        )
        raise AssertionError(f"{error}; naming: {naming}") from None


def test_a_new_conversation_gets_a_name_shortly_after_its_first_answer(
    platform: WebServer,
) -> None:
    key = scripted_key("Fjords of western Norway")
    answer = chat(platform, key)
    assert answer["answer"] == "Fjords of western Norway"

    name = wait_for_a_name(platform, key, answer["conversation_id"], timeout_s=30)
    assert name == "Fjords of western Norway"


def test_rename_with_auto_generate_waits_for_the_generated_name(platform: WebServer) -> None:
    key = scripted_key("Norway travel tips")
    answer = chat(platform, key, auto_generate_name=False)
    conversation_id = answer["conversation_id"]
    assert not Task.objects.filter(kind=NAMING_KIND).exists()  # the client opted out
    assert listed_name(platform, key, conversation_id) == NEW_CONVERSATION_NAME

    response = call(
        platform,
        "POST",
        f"/v1/conversations/{conversation_id}/name",
        key,
        json={"user": "u1", "auto_generate": True, "name": "ignored when generating"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Norway travel tips"
    assert listed_name(platform, key, conversation_id) == "Norway travel tips"


def test_the_built_in_model_titles_a_conversation(platform: WebServer) -> None:
    key = make_app_with_key(
        provider="local",
        provider_config={},
        model_name="SmolLM2-135M-Instruct",
        max_tokens=12,
        temperature=0.0,
    )[1]
    answer = chat(platform, key, query="How do I bake sourdough bread at home?")

    name = wait_for_a_name(platform, key, answer["conversation_id"], timeout_s=60)
    assert 0 < len(name) <= 60
    assert len(name.split()) <= 8
    assert "\n" not in name
