"""Every event each door sends is one of Dify's answer events, with the fields apps.dify.events
declares for it: Dify's stream (new, resumed, replayed from PostgreSQL), the WebSocket, and the
events a failed, moderated or rebuilt answer ends with. A door that drifts from the vocabulary
fails here, whichever door it is."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from apps.conversations.models import Message
from apps.core.redis import sync_client
from apps.dify.events import AnswerEvent, event_problems
from apps.streams.log import stream_key
from tests.factories import make_app_with_key
from tests.processes import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WAIT_S = 60.0
BODY = {"inputs": {}, "query": "Hello", "user": "u1", "auto_generate_name": False}


@pytest.fixture
def platform(live_web: WebServer, live_worker: object) -> WebServer:
    return live_web


def problems(events: list[dict[str, Any]]) -> list[str]:
    return [problem for event in events for problem in event_problems(event)]


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [event["event"] for event in events]


def stream_post(
    platform: WebServer, key: str, path: str = "/v1/chat-messages", **headers: str
) -> list[dict[str, Any]]:
    """The data events of an answer's stream, each line checked to be data, a ping or blank."""
    with httpx.stream(
        "POST",
        f"{platform.url}{path}",
        json={**BODY, "response_mode": "streaming"},
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=WAIT_S,
    ) as response:
        assert response.status_code == 200, response.read()
        return _data(response)


def stream_resumed(
    platform: WebServer, key: str, task_id: str, after: str | None = None
) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"}
    if after is not None:
        headers["Last-Event-ID"] = after
    with httpx.stream(
        "GET",
        f"{platform.url}/v1/chat-messages/{task_id}/events",
        params={"user": "u1"},
        headers=headers,
        timeout=WAIT_S,
    ) as response:
        assert response.status_code == 200, response.read()
        return _data(response, id_lines=True)


def _data(response: httpx.Response, *, id_lines: bool = False) -> list[dict[str, Any]]:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            events.append(json.loads(line.removeprefix("data: ")))
        else:
            allowed = line in ("", "event: ping") or (id_lines and line.startswith("id: "))
            assert allowed, f"not an event line: {line!r}"
    return events


@contextmanager
def socket(platform: WebServer, key: str) -> Iterator[ClientConnection]:
    url = f"ws://127.0.0.1:{platform.port}/ws/v1/chat"
    with connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        assert json.loads(ws.recv(timeout=WAIT_S))["type"] == "ready"
        yield ws


def socket_events(ws: ClientConnection, frame: dict[str, Any]) -> list[dict[str, Any]]:
    """The event frames of one query or resume, up to its final event."""
    ws.send(json.dumps(frame))
    events = []
    while True:
        received = json.loads(ws.recv(timeout=WAIT_S))
        if received.get("type") == "accepted":
            continue
        assert "event" in received, received
        events.append(received)
        if AnswerEvent(received["event"]).final:
            return events


def test_a_streamed_answer_resumed_and_over_the_socket(platform: WebServer) -> None:
    _, key = make_app_with_key(provider_config={"text": "one two three"})
    streamed = stream_post(platform, key)
    assert kinds(streamed) == ["message"] * 3 + ["message_end"]
    assert problems(streamed) == []

    task_id = streamed[0]["task_id"]
    resumed = stream_resumed(platform, key, task_id, after=streamed[0]["event_id"])
    assert kinds(resumed) == ["message"] * 2 + ["message_end"]
    assert problems(resumed) == []

    with socket(platform, key) as ws:
        over_socket = socket_events(ws, {"type": "query", **BODY, "request_id": 7})
        again = socket_events(ws, {"type": "resume", "task_id": task_id, "user": "u1"})
    assert kinds(over_socket) == ["message"] * 3 + ["message_end"]
    assert {event["request_id"] for event in over_socket} == {7}
    assert problems(over_socket) == []
    assert problems(again) == []
    assert [event["answer"] for event in again[:-1]] == ["one", " two", " three"]


def test_a_moderated_answer_replaces_its_text(platform: WebServer) -> None:
    _, key = make_app_with_key(
        provider_config={"pieces": ["The sec", "ret word", " is out"]},
        moderation_output_keywords="secret",
        moderation_output_replacement="***",
    )
    events = stream_post(platform, key)
    assert AnswerEvent.MESSAGE_REPLACE in kinds(events)
    replaced = [event for event in events if event["event"] == AnswerEvent.MESSAGE_REPLACE]
    assert replaced[-1]["reason"] == "moderation"
    assert problems(events) == []


def test_a_failed_answer_ends_with_its_error(platform: WebServer) -> None:
    _, key = make_app_with_key(provider_config={"permanent_error": "refused by the model"})
    events = stream_post(platform, key)
    assert kinds(events) == ["error"]
    assert (events[0]["status"], events[0]["code"]) == (400, "completion_request_error")
    assert problems(events) == []
    with socket(platform, key) as ws:
        over_socket = socket_events(ws, {"type": "query", **BODY})
    assert problems(over_socket) == []


def test_answers_rebuilt_from_postgresql_are_the_same_events(platform: WebServer) -> None:
    _, key = make_app_with_key(provider_config={"text": "one two three"})
    first = stream_post(platform, key, **{"Idempotency-Key": "rebuilt"})
    task_id = first[0]["task_id"]
    sync_client().delete(stream_key(task_id))  # as if EVENT_LOG_TTL_S had passed

    replayed = stream_post(platform, key, **{"Idempotency-Key": "rebuilt"})
    assert kinds(replayed) == ["message", "message_end"]
    assert replayed[0]["answer"] == "one two three"
    resumed = stream_resumed(platform, key, task_id, after=first[0]["event_id"])
    assert kinds(resumed) == ["message_replace", "message_end"]
    assert resumed[0]["reason"] == "rebuilt"
    assert problems(replayed) == []
    assert problems(resumed) == []
    for rebuilt in (replayed, resumed):
        end = rebuilt[-1]
        assert end["metadata"]["usage"] == first[-1]["metadata"]["usage"]


def test_a_failed_answer_rebuilt_from_postgresql_is_its_own_error(platform: WebServer) -> None:
    """Once its log has lapsed, a failed answer is replayed as the error it failed with, not as
    a 500."""
    _, key = make_app_with_key(provider_config={"permanent_error": "refused by the model"})
    (live,) = stream_post(platform, key, **{"Idempotency-Key": "failed"})
    task_id = Message.objects.get(id=live["message_id"]).task_id
    sync_client().delete(stream_key(str(task_id)))  # as if EVENT_LOG_TTL_S had passed

    (replayed,) = stream_post(platform, key, **{"Idempotency-Key": "failed"})
    assert problems([replayed]) == []
    del live["event_id"], replayed["event_id"]  # the log's id, and the rebuilt event's
    assert replayed == live
    blocking = httpx.post(
        f"{platform.url}/v1/chat-messages",
        json=BODY,
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "failed"},
        timeout=WAIT_S,
    )
    assert blocking.status_code == live["status"] == 400
    assert (blocking.json()["code"], blocking.json()["message"]) == (live["code"], live["message"])
