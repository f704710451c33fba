"""End to end: daphne and a worker as real processes, the real PostgreSQL, Redis and built-in model,
called over HTTP with a real key."""

import json
from typing import Any

import httpx
import pytest

from apps.conversations.models import Conversation, Message, MessageStatus
from apps.scheduling.models import Task, TaskStatus
from tests.factories import make_app_with_key
from tests.processes import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TIMEOUT = httpx.Timeout(120.0)


@pytest.fixture
def platform(live_web: WebServer, live_worker: object) -> WebServer:
    return live_web


def local_app(**fields: Any) -> str:
    defaults: dict[str, Any] = {
        "provider": "local",
        "provider_config": {},
        "model_name": "SmolLM2-135M-Instruct",
        "system_prompt": "You are a helpful assistant.",
        "max_tokens": 12,
        "temperature": 0.0,
    }
    defaults.update(fields)
    return make_app_with_key(**defaults)[1]


def call(platform: WebServer, path: str, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{platform.url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=TIMEOUT,
    )


def test_chat_blocking_answer_from_the_built_in_model(platform: WebServer) -> None:
    key = local_app()
    response = call(
        platform, "/v1/chat-messages", key, {"inputs": {}, "query": "Hello", "user": "u1"}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["event"] == "message"
    assert body["mode"] == "chat"
    assert body["answer"].strip()
    assert body["id"] == body["message_id"]
    usage = body["metadata"]["usage"]
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert isinstance(body["created_at"], int)

    message = Message.objects.get(id=body["message_id"])
    assert message.answer == body["answer"]
    assert message.status == MessageStatus.NORMAL
    assert message.end_user == "u1"
    assert str(message.conversation_id) == body["conversation_id"]
    assert message.completion_tokens == usage["completion_tokens"]
    assert message.latency_s is not None
    assert message.latency_s > 0
    task = Task.objects.get(id=body["task_id"])
    assert message.task_id == task.id
    assert task.status == TaskStatus.SUCCEEDED
    assert task.attempts == 1
    assert task.worker_name.startswith("test-worker-")
    assert task.enqueued_at is not None
    assert task.started_at is not None
    assert task.finished_at is not None
    assert task.enqueued_at <= task.started_at <= task.finished_at
    history = list(task.events.values_list("from_status", "to_status"))
    assert history == [("", "queued"), ("queued", "running"), ("running", "succeeded")]


def test_conversation_continues_with_its_history(platform: WebServer) -> None:
    key = local_app()
    first = call(
        platform,
        "/v1/chat-messages",
        key,
        {"inputs": {}, "query": "My name is Alice.", "user": "u1"},
    ).json()
    second = call(
        platform,
        "/v1/chat-messages",
        key,
        {
            "inputs": {},
            "query": "What is my name?",
            "user": "u1",
            "conversation_id": first["conversation_id"],
        },
    ).json()

    assert second["conversation_id"] == first["conversation_id"]
    assert Conversation.objects.count() == 1
    assert Message.objects.filter(conversation_id=first["conversation_id"]).count() == 2
    # The model saw the first turn: the second prompt holds the first question and answer.
    first_usage, second_usage = first["metadata"]["usage"], second["metadata"]["usage"]
    assert (
        second_usage["prompt_tokens"]
        >= first_usage["prompt_tokens"] + first_usage["completion_tokens"]
    )


def test_completion_blocking_answer(platform: WebServer) -> None:
    key = local_app(mode="completion", system_prompt="Answer in one sentence.")
    response = call(
        platform,
        "/v1/completion-messages",
        key,
        {"inputs": {}, "query": "Name a colour.", "user": "u1"},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "completion"
    assert "conversation_id" not in body
    assert body["answer"].strip()
    message = Message.objects.get(id=body["message_id"])
    assert message.conversation_id is None
    assert message.answer == body["answer"]


def test_simplest_call_ask(platform: WebServer) -> None:
    key = local_app()
    response = call(platform, "/api/v1/ask", key, {"query": "Say hello."})

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"response", "task_id", "duration_ms"}
    assert body["response"].strip()
    assert body["duration_ms"] > 0
    assert Task.objects.get(id=body["task_id"]).status == TaskStatus.SUCCEEDED


def test_streaming_events_in_difys_shape(platform: WebServer) -> None:
    key = local_app()
    events = []
    with httpx.stream(
        "POST",
        f"{platform.url}/v1/chat-messages",
        json={"inputs": {}, "query": "Hello", "user": "u1", "response_mode": "streaming"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=TIMEOUT,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))

    kinds = [event["event"] for event in events]
    assert kinds[-1] == "message_end"
    assert set(kinds[:-1]) == {"message"}
    for event in events:
        assert {"task_id", "message_id", "conversation_id", "created_at"} <= set(event)
    answer = "".join(event["answer"] for event in events[:-1])
    assert Message.objects.get(id=events[0]["message_id"]).answer == answer
