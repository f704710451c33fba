"""Idempotency-Key against a real server and worker: a retry during the first run attaches to
it, a retry after gets the same result, concurrent retries make one task, a different request
with the same key is 422, and the answer survives the event log's expiry."""

import asyncio
import json
from typing import Any

import httpx
import pytest

from apps.core.redis import sync_client
from apps.delivery.answers import AnswerDelivery
from apps.dify.answers import AnswerFold
from apps.scheduling.models import Task
from apps.streams.log import event_append, stream_key
from tests.factories import make_app, make_key
from tests.gateway.live import TIMEOUT, auth, post_all, run
from tests.processes import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHAT = "/v1/chat-messages"
BODY = {"inputs": {}, "query": "Hello", "user": "u1", "auto_generate_name": False}
TEXT = "one two three four five six seven eight nine ten"


@pytest.fixture
def platform(live_web: WebServer, live_worker: object) -> WebServer:
    return live_web


@pytest.fixture
def slow_key() -> str:
    """About one second per answer, so a retry can arrive during the first run."""
    app = make_app(provider_config={"text": TEXT, "tokens_per_s": 10})
    return make_key(app)[1]


def keyed(key: str, idempotency_key: str) -> dict[str, str]:
    return {**auth(key), "Idempotency-Key": idempotency_key}


def chat_tasks() -> int:
    return Task.objects.filter(kind="chat").count()


def test_retry_during_the_run_attaches_and_after_it_gets_the_same_result(
    platform: WebServer, slow_key: str
) -> None:
    url = f"{platform.url}{CHAT}"
    headers = keyed(slow_key, "order-1")
    first, during = run(post_all([(url, BODY, headers), (url, BODY, headers)]))
    assert first.status_code == during.status_code == 200, (first.text, during.text)
    assert first.json() == during.json()
    assert first.json()["answer"] == TEXT
    replays = [r for r in (first, during) if r.headers.get("Idempotent-Replayed") == "true"]
    assert len(replays) == 1, "exactly one of them ran"
    assert chat_tasks() == 1

    after = httpx.post(url, json=BODY, headers=headers, timeout=TIMEOUT)
    assert after.status_code == 200
    assert after.headers["Idempotent-Replayed"] == "true"
    assert after.json() == first.json()
    assert chat_tasks() == 1


def test_concurrent_retries_make_one_task(platform: WebServer, slow_key: str) -> None:
    url = f"{platform.url}{CHAT}"
    responses = run(post_all([(url, BODY, keyed(slow_key, "burst"))] * 8))
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["task_id"] for r in responses}) == 1
    assert {r.json()["answer"] for r in responses} == {TEXT}
    assert chat_tasks() == 1


def test_a_streaming_retry_attaches_to_the_stream(platform: WebServer, slow_key: str) -> None:
    url = f"{platform.url}{CHAT}"
    streaming = {**BODY, "response_mode": "streaming"}
    headers = keyed(slow_key, "stream-1")

    def events() -> list[dict[str, Any]]:
        with httpx.stream("POST", url, json=streaming, headers=headers, timeout=TIMEOUT) as r:
            assert r.status_code == 200
            return [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")]

    first = events()
    retried = events()
    assert [e["event"] for e in first][-1] == "message_end"
    assert retried == first
    assert chat_tasks() == 1
    # The same key may switch to blocking: response_mode is not part of the request's identity.
    blocking = httpx.post(url, json=BODY, headers=headers, timeout=TIMEOUT)
    assert blocking.json()["answer"] == TEXT
    assert blocking.json()["task_id"] == first[0]["task_id"]


@pytest.mark.parametrize(
    "change",
    [{"query": "Something else"}, {"inputs": {"x": "1"}}, {"priority": "low"}],
    ids=["query", "inputs", "priority"],
)
def test_the_same_key_with_another_request_is_refused(
    platform: WebServer, slow_key: str, change: dict[str, Any]
) -> None:
    url = f"{platform.url}{CHAT}"
    headers = keyed(slow_key, "reused")
    assert httpx.post(url, json=BODY, headers=headers, timeout=TIMEOUT).status_code == 200

    refused = httpx.post(url, json={**BODY, **change}, headers=headers, timeout=TIMEOUT)
    assert refused.status_code == 422
    body = refused.json()
    assert body["code"] == "idempotency_key_reused"
    assert "'reused'" in body["message"]
    assert chat_tasks() == 1


def test_keys_are_each_end_users_own(platform: WebServer, slow_key: str) -> None:
    """Another end user's request with the same key is theirs: neither refused (which would
    tell them the key is in use) nor answered with the first user's answer."""
    url = f"{platform.url}{CHAT}"
    headers = keyed(slow_key, "shared")
    first = httpx.post(url, json=BODY, headers=headers, timeout=TIMEOUT)
    other = httpx.post(url, json={**BODY, "user": "u2"}, headers=headers, timeout=TIMEOUT)
    assert first.status_code == other.status_code == 200
    assert other.json()["message_id"] != first.json()["message_id"]
    assert "Idempotent-Replayed" not in other.headers
    assert chat_tasks() == 2


def test_a_retry_after_its_conversation_was_deleted_is_a_new_request(
    platform: WebServer, slow_key: str
) -> None:
    url = f"{platform.url}{CHAT}"
    headers = keyed(slow_key, "then-deleted")
    first = httpx.post(url, json=BODY, headers=headers, timeout=TIMEOUT)
    conversation_id = first.json()["conversation_id"]
    deleted = httpx.request(
        "DELETE",
        f"{platform.url}/v1/conversations/{conversation_id}",
        json={"user": "u1"},
        headers=auth(slow_key),
        timeout=TIMEOUT,
    )
    assert deleted.status_code in (200, 204), deleted.text
    again = httpx.post(url, json=BODY, headers=headers, timeout=TIMEOUT)
    assert again.status_code == 200, again.text
    assert again.json()["conversation_id"] != conversation_id


def test_keys_are_per_app(platform: WebServer, slow_key: str) -> None:
    other = make_key(make_app(provider_config={"text": "other app"}))[1]
    url = f"{platform.url}{CHAT}"
    ours = httpx.post(url, json=BODY, headers=keyed(slow_key, "shared"), timeout=TIMEOUT)
    theirs = httpx.post(url, json=BODY, headers=keyed(other, "shared"), timeout=TIMEOUT)
    assert ours.json()["answer"] == TEXT
    assert theirs.json()["answer"] == "other app"
    assert chat_tasks() == 2


def test_the_answer_outlives_the_event_log(platform: WebServer, slow_key: str) -> None:
    url = f"{platform.url}{CHAT}"
    headers = keyed(slow_key, "old")
    first = httpx.post(url, json=BODY, headers=headers, timeout=TIMEOUT).json()
    sync_client().delete(stream_key(first["task_id"]))  # as if EVENT_LOG_TTL_S had passed

    again = httpx.post(url, json=BODY, headers=headers, timeout=TIMEOUT)
    assert again.status_code == 200
    body = again.json()
    assert body["answer"] == first["answer"]
    assert body["message_id"] == first["message_id"]
    assert body["metadata"]["usage"]["completion_tokens"] == 10

    with httpx.stream(
        "POST", url, json={**BODY, "response_mode": "streaming"}, headers=headers, timeout=TIMEOUT
    ) as stream:
        events = [json.loads(x[5:]) for x in stream.iter_lines() if x.startswith("data:")]
    assert [e["event"] for e in events] == ["message", "message_end"]
    assert events[0]["answer"] == TEXT


def test_a_failed_first_run_is_replayed_as_its_error(platform: WebServer) -> None:
    key = make_key(make_app(provider_config={"permanent_error": "refused by the model"}))[1]
    url = f"{platform.url}{CHAT}"
    headers = keyed(key, "fails")
    first = httpx.post(url, json=BODY, headers=headers, timeout=TIMEOUT)
    again = httpx.post(url, json=BODY, headers=headers, timeout=TIMEOUT)
    assert first.status_code == again.status_code == 400
    assert again.json()["code"] == first.json()["code"] == "completion_request_error"
    assert chat_tasks() == 1


@pytest.mark.parametrize("value", [b"", b"x" * 256, "é".encode()], ids=["empty", "long", "utf8"])
def test_malformed_keys_are_invalid_param(platform: WebServer, slow_key: str, value: bytes) -> None:
    response = httpx.post(
        f"{platform.url}{CHAT}",
        json=BODY,
        headers=[(b"Authorization", f"Bearer {slow_key}".encode()), (b"Idempotency-Key", value)],
        timeout=TIMEOUT,
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_param"
    assert "Idempotency-Key" in response.json()["message"]
    assert chat_tasks() == 0


def test_a_replayed_answer_is_folded_as_the_live_one() -> None:
    """The same events give the same answer whether they are read from the live log or rebuilt:
    a `message_replace` (moderation, a retry) takes back the text before it in both."""
    task_id = "5b0d9a5e-0000-4000-8000-000000000001"
    events: list[dict[str, Any]] = [
        {"event": "message", "answer": "Hello wor"},
        {"event": "message_replace", "answer": "Hello ***", "reason": "moderation"},
        {"event": "message", "answer": "!"},
        {"event": "message_end", "metadata": {}},
    ]
    for event in events:
        event_append(task_id=task_id, event=event)
    live = asyncio.run(AnswerDelivery(task_id=task_id).collected(timeout_s=5))
    assert live.answer == "Hello ***!"
    fold = AnswerFold()
    rebuilt = [fold.add(event["event"], event) for event in events]
    assert rebuilt[-1] == live
