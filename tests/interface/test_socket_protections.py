"""The same request over REST and over the WebSocket gets the same protections from the one
admission pipeline: an Idempotency-Key recognises a request retried through the other door (or
refuses a different one), and the response cache answers a socket query too."""

import json
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from apps.dify.events import event_problems
from apps.scheduling.models import Task
from tests.factories import make_app, make_key
from tests.processes import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WAIT_S = 30.0
TEXT = "one two three four five"


@pytest.fixture
def platform(live_web: WebServer, live_worker: object) -> WebServer:
    return live_web


def answers() -> int:
    return Task.objects.exclude(kind="conversation_name").count()


def socket(platform: WebServer, key: str) -> Any:
    url = f"ws://127.0.0.1:{platform.port}/ws/v1/chat"
    return connect(url, additional_headers={"Authorization": f"Bearer {key}"})


def receive(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(ws.recv(timeout=WAIT_S))
    return frame


def frames_to_end(ws: ClientConnection) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = receive(ws)
        frames.append(frame)
        if frame.get("type") == "error" or frame.get("event") in ("message_end", "error"):
            return frames


def rest(platform: WebServer, key: str, path: str, body: dict[str, Any], **headers: str) -> Any:
    return httpx.post(
        f"{platform.url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=WAIT_S,
    )


def test_a_rest_request_retried_over_the_socket_is_the_same_request(platform: WebServer) -> None:
    _, key = make_key(make_app(provider_config={"text": TEXT}))
    body = {"inputs": {}, "query": "Hello", "user": "u1"}
    first = rest(platform, key, "/v1/chat-messages", body, **{"Idempotency-Key": "both-ways"})
    assert first.status_code == 200, first.text

    with socket(platform, key) as ws:
        assert receive(ws)["type"] == "ready"
        ws.send(json.dumps({"type": "query", **body, "idempotency_key": "both-ways"}))
        frames = frames_to_end(ws)
    accepted = frames[0]
    assert accepted["type"] == "accepted"
    assert accepted["replayed"] is True
    assert accepted["task_id"] == first.json()["task_id"]
    assert frames[-1]["event"] == "message_end"
    text = "".join(f.get("answer", "") for f in frames if f.get("event") == "message")
    assert text == first.json()["answer"]
    assert answers() == 1


def test_a_socket_request_retried_over_rest_is_the_same_request(platform: WebServer) -> None:
    _, key = make_key(make_app(provider_config={"text": TEXT}))
    body = {"inputs": {}, "query": "Hello", "user": "u1"}
    with socket(platform, key) as ws:
        assert receive(ws)["type"] == "ready"
        ws.send(json.dumps({"type": "query", **body, "idempotency_key": "ws-first"}))
        frames = frames_to_end(ws)
    assert frames[-1]["event"] == "message_end"

    retry = rest(platform, key, "/v1/chat-messages", body, **{"Idempotency-Key": "ws-first"})
    assert retry.status_code == 200, retry.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["task_id"] == frames[0]["task_id"]
    assert answers() == 1


def test_a_different_request_with_the_same_key_is_refused_by_both_doors(
    platform: WebServer,
) -> None:
    _, key = make_key(make_app(provider_config={"text": TEXT}))
    body = {"inputs": {}, "query": "Hello", "user": "u1"}
    assert rest(platform, key, "/v1/chat-messages", body, **{"Idempotency-Key": "k"}).is_success
    with socket(platform, key) as ws:
        assert receive(ws)["type"] == "ready"
        ws.send(json.dumps({"type": "query", **body, "query": "Else", "idempotency_key": "k"}))
        refused = receive(ws)
    changed = {**body, "query": "Else"}
    over_rest = rest(platform, key, "/v1/chat-messages", changed, **{"Idempotency-Key": "k"})
    assert (refused["type"], refused["code"], refused["status"]) == (
        "error",
        "idempotency_key_reused",
        422,
    )
    assert over_rest.status_code == 422
    assert over_rest.json()["code"] == refused["code"]
    assert answers() == 1


def test_the_response_cache_answers_a_socket_query(platform: WebServer) -> None:
    app = make_app(mode="completion", provider_config={"text": TEXT}, cache_enabled=True)
    _, key = make_key(app)
    body = {"inputs": {}, "query": "Name three colours", "user": "u1"}
    filled = rest(platform, key, "/v1/completion-messages", body)
    assert filled.status_code == 200, filled.text
    assert filled.json()["metadata"]["cache"] == {"hit": False}

    with socket(platform, key) as ws:
        assert receive(ws)["type"] == "ready"
        ws.send(json.dumps({"type": "query", **body}))
        frames = frames_to_end(ws)
    assert frames[0]["type"] == "accepted"
    assert frames[0]["cached"] is True
    first = filled.json()
    header = {"task_id": first["task_id"], "id": first["id"], "message_id": first["message_id"]}
    assert frames[1] == {
        "event": "message",
        **header,
        "created_at": first["created_at"],
        "answer": first["answer"],
    }
    assert frames[-1]["event"] == "message_end"
    assert frames[-1]["metadata"]["cache"]["hit"] is True
    assert frames[-1]["metadata"]["usage"] == first["metadata"]["usage"]
    # A cached answer's events are the same events as a generated one's.
    assert [problem for frame in frames[1:] for problem in event_problems(frame)] == []
    assert answers() == 1  # the model was not asked again
