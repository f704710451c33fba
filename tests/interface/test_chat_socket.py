"""The WebSocket chat end to end: daphne and workers as real processes, a real WebSocket client on
a real socket, the real PostgreSQL and Redis."""

import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from itertools import pairwise
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from apps.applications.models import App
from apps.conversations.models import Conversation, Message, MessageStatus
from tests.factories import make_app_with_key
from tests.processes import WebServer, run_worker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WAIT_S = 60.0
SLOW_TEXT = " ".join(f"word{i}" for i in range(40))


@pytest.fixture
def platform(live_web: WebServer, live_worker: object) -> WebServer:
    return live_web


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def socket_url(platform: WebServer, **params: str) -> str:
    query = f"?{urlencode(params)}" if params else ""
    return f"ws://127.0.0.1:{platform.port}/ws/v1/chat{query}"


def receive(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(ws.recv(timeout=WAIT_S))
    return frame


@pytest.fixture
def open_socket(platform: WebServer) -> Iterator[Any]:
    """Opens authenticated sockets (key in the Authorization header) and closes them after."""
    with ExitStack() as stack:

        def opener(key: str) -> ClientConnection:
            ws = stack.enter_context(connect(socket_url(platform), additional_headers=bearer(key)))
            assert receive(ws)["type"] == "ready"
            return ws

        yield opener


def send(ws: ClientConnection, frame: Any) -> None:
    ws.send(json.dumps(frame))


def query_frame(query: str = "Hello", **fields: Any) -> dict[str, Any]:
    return {"type": "query", "query": query, "inputs": {}, "user": "u1", **fields}


def until_final(ws: ClientConnection) -> list[dict[str, Any]]:
    """Event frames up to and including message_end (or error)."""
    frames = []
    while True:
        frame = receive(ws)
        frames.append(frame)
        if frame.get("event") in ("message_end", "error"):
            return frames


def answer_of(frames: list[dict[str, Any]]) -> str:
    return "".join(f["answer"] for f in frames if f.get("event") == "message")


def slow_app(words: int = 40, tokens_per_s: float = 20) -> tuple[App, str]:
    text = " ".join(f"word{i}" for i in range(words))
    return make_app_with_key(
        provider="scripted",
        provider_config={"text": text, "tokens_per_s": tokens_per_s},
        max_tokens=words + 10,
    )


def sse_events(platform: WebServer, key: str, task_id: str) -> list[dict[str, Any]]:
    """The same task's events read through the SSE route, with their ids."""
    events: list[dict[str, Any]] = []
    with httpx.stream(
        "GET",
        f"{platform.url}/v1/chat-messages/{task_id}/events",
        params={"user": "u1"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=WAIT_S,
    ) as response:
        assert response.status_code == 200
        event_id = None
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = line.removeprefix("id: ")
            elif line.startswith("data: "):
                events.append({**json.loads(line.removeprefix("data: ")), "event_id": event_id})
    return events


def test_query_streams_the_built_in_models_answer(platform: WebServer, open_socket: Any) -> None:
    _, key = make_app_with_key(
        provider="local",
        provider_config={},
        model_name="SmolLM2-135M-Instruct",
        max_tokens=12,
        temperature=0.0,
    )
    ws = open_socket(key)
    send(ws, query_frame("Hello", request_id="r-1"))

    accepted = receive(ws)
    assert accepted["type"] == "accepted"
    assert accepted["request_id"] == "r-1"
    frames = until_final(ws)

    kinds = [f["event"] for f in frames]
    assert kinds[-1] == "message_end"
    assert set(kinds[:-1]) == {"message"}
    assert len(kinds) > 2
    for frame in frames:
        assert frame["task_id"] == accepted["task_id"]
        assert frame["message_id"] == accepted["message_id"]
        assert frame["conversation_id"] == accepted["conversation_id"]
        assert frame["request_id"] == "r-1"
    message = Message.objects.get(id=accepted["message_id"])
    assert message.answer == answer_of(frames)
    assert message.answer.strip()
    assert message.status == MessageStatus.NORMAL
    assert frames[-1]["metadata"]["usage"]["completion_tokens"] == message.completion_tokens
    # Exactly the SSE stream's events, each with the id to resume after.
    sse = sse_events(platform, key, accepted["task_id"])
    assert [{k: v for k, v in f.items() if k != "request_id"} for f in frames] == sse


def test_completion_app_over_the_socket(platform: WebServer, open_socket: Any) -> None:
    _, key = make_app_with_key(mode="completion", provider_config={"text": "One two three."})
    ws = open_socket(key)
    send(ws, query_frame("Count"))

    accepted = receive(ws)
    assert accepted["type"] == "accepted"
    assert "conversation_id" not in accepted
    frames = until_final(ws)
    assert answer_of(frames) == "One two three."
    assert Message.objects.get(id=accepted["message_id"]).conversation_id is None


def test_conversation_continues_over_the_socket(platform: WebServer, open_socket: Any) -> None:
    _, key = make_app_with_key()
    ws = open_socket(key)
    send(ws, query_frame("First"))
    first = receive(ws)
    until_final(ws)
    send(ws, query_frame("Second", conversation_id=first["conversation_id"]))
    second = receive(ws)
    until_final(ws)

    assert second["conversation_id"] == first["conversation_id"]
    assert Conversation.objects.count() == 1
    assert Message.objects.filter(conversation_id=first["conversation_id"]).count() == 2


def test_two_queries_at_once_on_one_socket(platform: WebServer, open_socket: Any) -> None:
    _, key = slow_app(words=12)
    ws = open_socket(key)
    # A second worker, so both answers are produced at the same time.
    with run_worker():
        send(ws, query_frame("A", request_id="a"))
        send(ws, query_frame("B", request_id="b"))
        task_of: dict[str, str] = {}
        frames: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
        order: list[str] = []
        while not all(f and f[-1]["event"] == "message_end" for f in frames.values()):
            frame = receive(ws)
            if frame.get("type") == "accepted":
                task_of[frame["request_id"]] = frame["task_id"]
                continue
            frames[frame["request_id"]].append(frame)
            order.append(frame["request_id"])

    for request_id, task_frames in frames.items():
        assert {f["task_id"] for f in task_frames} == {task_of[request_id]}
        message = Message.objects.get(id=task_frames[0]["message_id"])
        assert message.answer == answer_of(task_frames)
        assert message.answer.split() == [f"word{i}" for i in range(12)]
    # Interleaved: frames of both answers alternate while both are being produced.
    switches = sum(1 for x, y in pairwise(order) if x != y)
    assert switches >= 2


def test_stop_mid_stream_keeps_the_partial_answer(platform: WebServer, open_socket: Any) -> None:
    _, key = slow_app(words=40)
    ws = open_socket(key)
    send(ws, query_frame("Go"))
    accepted = receive(ws)
    received = [receive(ws) for _ in range(3)]
    assert all(f["event"] == "message" for f in received)

    send(ws, {"type": "stop", "task_id": accepted["task_id"], "user": "u1"})
    frames = received + until_final(ws)

    assert frames[-1]["event"] == "message_end"
    message = Message.objects.get(id=accepted["message_id"])
    assert message.status == MessageStatus.STOPPED
    assert message.answer == answer_of(frames)
    words = message.answer.split()
    assert 3 <= len(words) < 40
    assert words == [f"word{i}" for i in range(len(words))]


def test_bad_frames_get_error_frames_and_the_socket_stays_usable(
    platform: WebServer, open_socket: Any
) -> None:
    app, key = make_app_with_key()
    _, other_key = make_app_with_key()
    ws = open_socket(key)
    foreign_task = _finished_task(platform, other_key)

    cases: list[tuple[str | bytes, str, int]] = [
        ("{not json", "invalid_param", 400),
        ("[1, 2]", "invalid_param", 400),
        ('"text"', "invalid_param", 400),
        (b"\x00binary", "invalid_param", 400),
        (json.dumps({"type": "dance"}), "invalid_param", 400),
        (json.dumps({"query": "no type"}), "invalid_param", 400),
        (json.dumps({"type": "query", "inputs": {}, "user": "u1"}), "invalid_param", 400),
        (json.dumps(query_frame("")), "invalid_param", 400),
        (json.dumps(query_frame("Hi", user="")), "invalid_param", 400),
        (json.dumps(query_frame("Hi", inputs=[])), "invalid_param", 400),
        (json.dumps(query_frame("Hi", conversation_id="nope")), "invalid_param", 400),
        (json.dumps(query_frame("Hi", conversation_id=str(uuid.uuid4()))), "not_found", 404),
        (json.dumps(query_frame("Hi", priority="urgent")), "invalid_param", 400),
        (json.dumps(query_frame("Hi", request_id=["x"])), "invalid_param", 400),
        (json.dumps({"type": "stop", "task_id": "x", "user": "u1"}), "invalid_param", 400),
        (json.dumps({"type": "stop", "task_id": foreign_task}), "invalid_param", 400),
        (json.dumps({"type": "resume", "task_id": foreign_task, "user": "u1"}), "not_found", 404),
        (
            json.dumps(
                {"type": "resume", "task_id": foreign_task, "user": "u1", "last_event_id": 5}
            ),
            "invalid_param",
            400,
        ),
        (json.dumps({"type": "auth", "api_key": key}), "invalid_param", 400),
    ]
    for raw, code, status in cases:
        ws.send(raw)
        frame = receive(ws)
        assert frame["type"] == "error", raw
        assert (frame["code"], frame["status"]) == (code, status), (raw, frame)
        assert frame["message"]

    # The client's request id comes back with the refusal, so it knows which frame failed.
    send(ws, query_frame("", request_id="q9"))
    assert receive(ws)["request_id"] == "q9"
    # Still usable.
    send(ws, query_frame("Hello"))
    assert receive(ws)["type"] == "accepted"
    assert until_final(ws)[-1]["event"] == "message_end"
    assert Message.objects.filter(app=app).count() == 1


def _finished_task(platform: WebServer, key: str) -> str:
    response = httpx.post(
        f"{platform.url}/v1/chat-messages",
        json={"inputs": {}, "query": "Hi", "user": "u1"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=WAIT_S,
    )
    assert response.status_code == 200, response.text
    task_id: str = response.json()["task_id"]
    return task_id


def expect_refused(ws: ClientConnection, code: str, close_code: int) -> None:
    frame = receive(ws)
    assert frame["type"] == "error"
    assert frame["code"] == code
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=WAIT_S)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == close_code


def test_bad_key_in_the_header_is_refused_with_4401(platform: WebServer) -> None:
    with connect(socket_url(platform), additional_headers=bearer("app-not-a-key")) as ws:
        expect_refused(ws, "unauthorized", 4401)


def test_a_key_in_the_url_is_refused_even_a_good_one(platform: WebServer) -> None:
    _, key = make_app_with_key()
    with connect(socket_url(platform, api_key=key)) as ws:
        expect_refused(ws, "unauthorized", 4401)


def test_bad_key_in_the_first_frame_is_refused_with_4401(platform: WebServer) -> None:
    with connect(socket_url(platform)) as ws:
        send(ws, {"type": "auth", "api_key": "app-not-a-key"})
        expect_refused(ws, "unauthorized", 4401)


def test_a_query_before_authentication_is_refused_with_4401(platform: WebServer) -> None:
    with connect(socket_url(platform)) as ws:
        send(ws, query_frame("Hi"))
        expect_refused(ws, "unauthorized", 4401)


def test_disabled_app_is_refused_with_4403(platform: WebServer) -> None:
    app, key = make_app_with_key()
    App.objects.filter(id=app.id).update(enabled=False)
    with connect(socket_url(platform), additional_headers=bearer(key)) as ws:
        expect_refused(ws, "forbidden", 4403)


def test_disabling_the_app_reaches_an_open_socket(platform: WebServer, open_socket: Any) -> None:
    app, key = make_app_with_key()
    ws = open_socket(key)
    App.objects.filter(id=app.id).update(enabled=False)
    send(ws, query_frame("Hi"))
    expect_refused(ws, "forbidden", 4403)
    assert not Message.objects.filter(app=app).exists()


@pytest.mark.parametrize("how", ["first_frame", "header"])
def test_each_way_to_authenticate(platform: WebServer, how: str) -> None:
    _, key = make_app_with_key()
    url, headers = socket_url(platform), {}
    if how == "header":
        headers = bearer(key)
    with connect(url, additional_headers=headers) as ws:
        if how == "first_frame":
            send(ws, {"type": "auth", "api_key": key})
        assert receive(ws) == {"type": "ready", "mode": "chat"}
        send(ws, query_frame("Hi"))
        assert receive(ws)["type"] == "accepted"
        assert until_final(ws)[-1]["event"] == "message_end"


def test_resume_after_reconnect_gets_the_rest_once(platform: WebServer, open_socket: Any) -> None:
    _, key = slow_app(words=30)
    first = open_socket(key)
    send(first, query_frame("Go"))
    accepted = receive(first)
    before = [receive(first) for _ in range(5)]
    first.close()  # the socket drops mid-answer

    second = open_socket(key)
    # Another user of the same app cannot resume it.
    send(second, {"type": "resume", "task_id": accepted["task_id"], "user": "u2"})
    assert receive(second)["code"] == "not_found"
    send(
        second,
        {
            "type": "resume",
            "task_id": accepted["task_id"],
            "user": "u1",
            "last_event_id": before[-1]["event_id"],
            "request_id": 7,
        },
    )
    after = until_final(second)

    assert after[-1]["event"] == "message_end"
    assert {f["request_id"] for f in after} == {7}
    ids = [tuple(map(int, f["event_id"].split("-"))) for f in before + after]
    assert ids == sorted(set(ids))  # increasing: no repeats, in order
    message = Message.objects.get(id=accepted["message_id"])
    assert answer_of(before) + answer_of(after) == message.answer
    assert message.answer.split() == [f"word{i}" for i in range(30)]


def test_resume_of_a_finished_task_replays_it(platform: WebServer, open_socket: Any) -> None:
    _, key = make_app_with_key()
    task_id = _finished_task(platform, key)
    ws = open_socket(key)
    send(ws, {"type": "resume", "task_id": task_id, "user": "u1"})
    frames = until_final(ws)
    assert frames[-1]["event"] == "message_end"
    assert answer_of(frames) == "Hello there, this is a scripted answer."


def test_foreign_origin_is_refused_at_the_handshake(platform: WebServer) -> None:
    _, key = make_app_with_key()
    with pytest.raises(InvalidStatus) as refused:
        connect(
            socket_url(platform),
            additional_headers=bearer(key),
            origin=Origin("http://evil.example"),
        )
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("origin", ["same_host", "http://localhost:3000"])
def test_own_origins_are_accepted(platform: WebServer, origin: str) -> None:
    _, key = make_app_with_key()
    if origin == "same_host":
        origin = f"http://127.0.0.1:{platform.port}"
    with connect(socket_url(platform), additional_headers=bearer(key), origin=Origin(origin)) as ws:
        assert receive(ws)["type"] == "ready"


def test_other_paths_are_refused(platform: WebServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{platform.port}/ws/v1/other")
    assert refused.value.response.status_code == 403


def test_a_quiet_socket_and_a_slow_first_token_keep_the_socket(
    platform: WebServer, open_socket: Any
) -> None:
    # Longer than redis-py's default 5 s socket timeout: neither the idle socket nor the relay
    # waiting on an empty event log may end.
    _, key = make_app_with_key(provider_config={"text": "Late but here.", "first_token_delay_s": 7})
    ws = open_socket(key)
    send(ws, query_frame("Hello"))
    accepted = receive(ws)
    frames = until_final(ws)
    assert answer_of(frames) == "Late but here."
    assert Message.objects.get(id=accepted["message_id"]).answer == "Late but here."


def test_socket_queries_pass_the_rate_limits_and_the_cap(
    platform: WebServer, open_socket: Any
) -> None:
    """Queries over a socket count against the same limits as the REST routes: the key's rate
    (429 `too_many_requests`, Retry-After in the message) and the app's cap on answers at once."""
    _, limited = make_app_with_key(
        provider_config={"text": "ok"}, rate_limit_per_s=0.01, rate_limit_burst=2
    )
    ws = open_socket(limited)
    for index in range(2):
        send(ws, query_frame(request_id=index))
        assert receive(ws)["type"] == "accepted"
        assert answer_of(until_final(ws)) == "ok"
    send(ws, query_frame(request_id="third"))
    refused = receive(ws)
    assert refused["type"] == "error"
    assert refused["request_id"] == "third"
    assert refused["status"] == 429

    _, capped = make_app_with_key(
        provider_config={"text": SLOW_TEXT, "tokens_per_s": 20}, max_active_requests=1
    )
    ws = open_socket(capped)
    send(ws, query_frame(request_id="first"))
    assert receive(ws)["type"] == "accepted"
    send(ws, query_frame(request_id="second"))  # the first answer still holds the only slot
    frames = []
    while True:
        frame = receive(ws)
        frames.append(frame)
        if frame.get("request_id") == "second" and frame.get("type") in ("error", "accepted"):
            break
    assert frames[-1]["type"] == "error"
    assert frames[-1]["status"] == 429
    while frames[-1].get("event") != "message_end":
        frames.append(receive(ws))
    # The finished answer gave its slot back: the next query is accepted.
    send(ws, query_frame(request_id="again"))
    while (frame := receive(ws)).get("request_id") != "again" or "type" not in frame:
        pass
    assert frame["type"] == "accepted"
