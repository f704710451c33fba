"""Server-Sent Events over a real socket against daphne, with a real worker: Dify's event sequence,
tokens before the answer is complete, resume with Last-Event-ID, stop mid-stream."""

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from apps.conversations.models import Message, MessageStatus
from apps.scheduling.models import Task, TaskStatus
from tests.factories import make_app_with_key
from tests.processes import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SLOW = {"text": " ".join(f"w{i}" for i in range(16)), "tokens_per_s": 8}
COMMON = {"event", "task_id", "message_id", "created_at"}


@pytest.fixture
def platform(live_web: WebServer, live_worker: object) -> WebServer:
    return live_web


def sse_events(response: httpx.Response) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(id, event) for each data event; pings are checked to stand alone."""
    event_id = None
    for line in response.iter_lines():
        if line.startswith("id: "):
            event_id = line.removeprefix("id: ")
        elif line.startswith("data: "):
            yield event_id, json.loads(line.removeprefix("data: "))
            event_id = None


def open_stream(platform: WebServer, key: str, path: str, body: dict[str, Any]) -> Any:
    return httpx.stream(
        "POST",
        f"{platform.url}{path}",
        json={"inputs": {}, "user": "u1", "response_mode": "streaming", **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def test_chat_stream_sequence_and_first_token_before_the_end(platform: WebServer) -> None:
    _, key = make_app_with_key(provider_config=SLOW)
    with open_stream(platform, key, "/v1/chat-messages", {"query": "hi"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        events: list[dict[str, Any]] = []
        for sse_id, event in sse_events(response):
            if not events:
                # The first token arrived while the worker is still producing the rest.
                task = Task.objects.get(id=event["task_id"])
                assert task.status == TaskStatus.RUNNING
            # Clients written for Dify read every non-blank line as `data:` JSON: no `id:` lines
            # here; the event's log id rides in the JSON for resuming.
            assert sse_id is None
            assert event["event_id"]
            events.append(event)

    kinds = [event["event"] for event in events]
    assert kinds == ["message"] * 16 + ["message_end"]
    for event in events:
        assert COMMON | {"conversation_id"} <= set(event)
        assert event["id"] == event["message_id"]
    end = events[-1]
    assert end["metadata"]["usage"]["completion_tokens"] == 16
    assert end["files"] == []
    answer = "".join(event["answer"] for event in events[:-1])
    assert answer == SLOW["text"]
    assert Message.objects.get(id=end["message_id"]).answer == answer


def test_completion_stream_has_no_conversation(platform: WebServer) -> None:
    _, key = make_app_with_key(mode="completion", provider_config={"text": "done now"})
    with open_stream(platform, key, "/v1/completion-messages", {"query": "x"}) as response:
        events = [event for _, event in sse_events(response)]
    assert [event["event"] for event in events] == ["message", "message", "message_end"]
    assert all("conversation_id" not in event for event in events)
    assert all(set(event) >= COMMON for event in events)


def test_resume_with_last_event_id_loses_and_repeats_nothing(platform: WebServer) -> None:
    _, key = make_app_with_key(provider_config=SLOW)
    first_part = []
    with open_stream(platform, key, "/v1/chat-messages", {"query": "hi"}) as response:
        for event_id, event in sse_events(response):
            first_part.append((event_id, event))
            if len(first_part) == 5:
                break  # the connection drops mid-stream

    task_id = first_part[0][1]["task_id"]
    last_id = first_part[-1][1]["event_id"]
    with httpx.stream(
        "GET",
        f"{platform.url}/v1/chat-messages/{task_id}/events?user=u1",
        headers={"Authorization": f"Bearer {key}", "Last-Event-ID": str(last_id)},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        rest = list(sse_events(response))

    assert all(sse_id == event["event_id"] for sse_id, event in rest), "resume carries `id:` lines"
    ids = [event["event_id"] for _, event in first_part + rest]
    assert len(ids) == len(set(ids)), "an event was repeated"
    kinds = [event["event"] for _, event in first_part + rest]
    assert kinds == ["message"] * 16 + ["message_end"], "an event was lost"
    answer = "".join(event["answer"] for _, event in (first_part + rest)[:-1])
    assert answer == SLOW["text"]


def test_resume_is_scoped_to_the_user_and_checks_its_arguments(platform: WebServer) -> None:
    _, key = make_app_with_key(provider_config={"text": "short"})
    with open_stream(platform, key, "/v1/chat-messages", {"query": "hi"}) as response:
        task_id = next(sse_events(response))[1]["task_id"]
    headers = {"Authorization": f"Bearer {key}"}
    url = f"{platform.url}/v1/chat-messages/{task_id}/events"
    stranger = httpx.get(f"{url}?user=someone-else", headers=headers)
    assert (stranger.status_code, stranger.json()["code"]) == (404, "not_found")
    no_user = httpx.get(url, headers=headers)
    assert (no_user.status_code, no_user.json()["code"]) == (400, "invalid_param")
    bad_id = httpx.get(f"{url}?user=u1", headers={**headers, "Last-Event-ID": "nonsense"})
    assert (bad_id.status_code, bad_id.json()["code"]) == (400, "invalid_param")


def test_stop_mid_stream_keeps_the_partial_answer(platform: WebServer) -> None:
    _, key = make_app_with_key(provider_config=SLOW)
    with open_stream(platform, key, "/v1/chat-messages", {"query": "hi"}) as response:
        events = []
        for _, event in sse_events(response):
            events.append(event)
            if len(events) == 3:
                stranger = httpx.post(
                    f"{platform.url}/v1/chat-messages/{event['task_id']}/stop",
                    json={"user": "intruder"},
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert stranger.json() == {"result": "success"}
                stop = httpx.post(
                    f"{platform.url}/v1/chat-messages/{event['task_id']}/stop",
                    json={"user": "u1"},
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert (stop.status_code, stop.json()) == (200, {"result": "success"})

    assert events[-1]["event"] == "message_end"
    texts = [event["answer"] for event in events if event["event"] == "message"]
    assert 3 <= len(texts) <= 6, "the worker stops within a token or two"
    message = Message.objects.get(id=events[0]["message_id"])
    assert message.status == MessageStatus.STOPPED
    assert message.answer == "".join(texts)
    assert Task.objects.get(id=events[0]["task_id"]).status == TaskStatus.SUCCEEDED


def test_stop_needs_a_user(platform: WebServer) -> None:
    _, key = make_app_with_key()
    response = httpx.post(
        f"{platform.url}/v1/chat-messages/00000000-0000-0000-0000-000000000000/stop",
        json={},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert (response.status_code, response.json()["code"]) == (400, "invalid_param")


def test_a_quiet_stream_gets_keep_alive_pings_and_then_its_answer(platform: WebServer) -> None:
    _, key = make_app_with_key(provider_config={"text": "late words", "first_token_delay_s": 11})
    lines = []
    with open_stream(platform, key, "/v1/chat-messages", {"query": "hi"}) as response:
        for line in response.iter_lines():
            lines.append(line)
            if '"event":"message_end"' in line:
                break
    # The first byte goes out at once (a blank line), then a ping keeps the quiet stream alive.
    assert lines[0] == ""
    assert "event: ping" in lines, "a ping must keep a quiet stream alive (every 10 s)"
    data = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert [event["event"] for event in data] == ["message", "message", "message_end"]


def test_the_stream_reads_with_the_dify_clients_documented_loop(platform: WebServer) -> None:
    """The official client's README reads streams as: each line, split on 'data:', parse what is
    left when it is not blank."""
    _, key = make_app_with_key(provider_config={"text": "plain compatible stream"})
    answers = []
    with open_stream(platform, key, "/v1/chat-messages", {"query": "hi"}) as response:
        for line in response.iter_lines():
            payload = line.split("data:", 1)[-1]
            if payload.strip():
                answers.append(json.loads(payload.strip()).get("answer"))
    assert "".join(a for a in answers if a) == "plain compatible stream"


def test_many_streams_at_once_hold_no_pooled_resource(platform: WebServer) -> None:
    """150 clients follow one answer at once through one web process: more than its PostgreSQL
    pool (8) and more than redis-py's default connection pool (100). Each gets the whole answer;
    none waits for a connection another stream holds (the answer outlasts the PostgreSQL pool's
    10 s wait for a free connection)."""
    long_answer = {"text": " ".join(f"w{i}" for i in range(24)), "tokens_per_s": 2}
    _, key = make_app_with_key(provider_config=long_answer, max_tokens=64)
    with open_stream(platform, key, "/v1/chat-messages", {"query": "hi"}) as first:
        task_id = next(event for _, event in sse_events(first))["task_id"]
        expected = long_answer["text"]

        async def follow(client: httpx.AsyncClient) -> str:
            text = ""
            async with client.stream(
                "GET",
                f"{platform.url}/v1/chat-messages/{task_id}/events",
                params={"user": "u1"},
                headers={"Authorization": f"Bearer {key}"},
            ) as response:
                assert response.status_code == 200, await response.aread()
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        event = json.loads(line.removeprefix("data: "))
                        text += event.get("answer", "") if event["event"] == "message" else ""
                        if event["event"] in ("message_end", "error"):
                            return f"{event['event']}:{text}"
            return f"cut:{text}"

        async def followers() -> list[str]:
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
            async with httpx.AsyncClient(limits=limits, timeout=60) as client:
                return await asyncio.gather(*(follow(client) for _ in range(150)))

        results = asyncio.run(followers())
    assert results == [f"message_end:{expected}"] * 150
