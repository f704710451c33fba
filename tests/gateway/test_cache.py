"""The response cache, against a real server and worker: identical blocking completions are
answered from Redis and say so; different questions, streaming, chat and other settings versions
are not; a settings change invalidates it; only complete answers are stored."""

from typing import Any

import httpx
import pytest
from django.db.models import F

from apps.applications.models import App
from apps.scheduling.models import Task
from tests.factories import make_app, make_key
from tests.gateway.live import TIMEOUT, auth
from tests.processes import WebServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

COMPLETION = "/v1/completion-messages"
FORM = [{"text-input": {"label": "Topic", "variable": "topic", "required": False}}]


@pytest.fixture
def platform(live_web: WebServer, live_worker: object) -> WebServer:
    return live_web


def cached_app(**fields: Any) -> tuple[App, str]:
    defaults: dict[str, Any] = {
        "mode": "completion",
        "provider_config": {"text": "A cached answer."},
        "cache_enabled": True,
        "cache_ttl_s": 60,
        "user_input_form": FORM,
    }
    app = make_app(**{**defaults, **fields})
    return app, make_key(app)[1]


def complete(web: WebServer, key: str, **body: Any) -> httpx.Response:
    payload = {"inputs": {"topic": "maps"}, "query": "Tell me  about Oslo", "user": "u1", **body}
    return httpx.post(f"{web.url}{COMPLETION}", json=payload, headers=auth(key), timeout=TIMEOUT)


def answer_tasks(app: App) -> int:
    return Task.objects.filter(app=app, kind="completion").count()


def test_hit_miss_and_invalidation(platform: WebServer) -> None:
    app, key = cached_app()

    first = complete(platform, key)
    assert first.status_code == 200, first.text
    assert first.json()["metadata"]["cache"] == {"hit": False}
    assert first.json()["answer"] == "A cached answer."

    # Same question after normalisation (NFC, whitespace), another user: from the cache.
    again = complete(
        platform, key, query="  Tell me about\tOslo ", user="someone-else", inputs={"topic": "maps"}
    )
    assert again.status_code == 200
    body = again.json()
    assert body["metadata"]["cache"]["hit"] is True
    assert body["metadata"]["cache"]["age_s"] >= 0
    assert body["answer"] == first.json()["answer"]
    assert body["message_id"] == first.json()["message_id"]
    assert body["metadata"]["usage"] == first.json()["metadata"]["usage"]
    assert answer_tasks(app) == 1, "a hit runs nothing"

    # Different inputs or query: a miss.
    assert complete(platform, key, inputs={"topic": "ships"}).json()["metadata"]["cache"] == {
        "hit": False
    }
    assert (
        complete(platform, key, query="Tell me about Bergen").json()["metadata"]["cache"]["hit"]
        is False
    )
    assert answer_tasks(app) == 3

    # A settings change (the admin bumps settings_version) invalidates every entry.
    App.objects.filter(id=app.id).update(settings_version=F("settings_version") + 1)
    after_change = complete(platform, key)
    assert after_change.json()["metadata"]["cache"] == {"hit": False}
    assert answer_tasks(app) == 4
    assert complete(platform, key).json()["metadata"]["cache"]["hit"] is True


def test_unicode_normalisation_makes_equal_text_hit(platform: WebServer) -> None:
    _, key = cached_app()
    composed, decomposed = "Caf\u00e9 in Oslo", "Cafe\u0301 in Oslo"
    assert complete(platform, key, query=composed).json()["metadata"]["cache"]["hit"] is False
    assert complete(platform, key, query=decomposed).json()["metadata"]["cache"]["hit"] is True


def test_entries_lapse_with_the_app_ttl(platform: WebServer) -> None:
    _, key = cached_app(cache_ttl_s=1)
    assert complete(platform, key).json()["metadata"]["cache"]["hit"] is False
    assert complete(platform, key).json()["metadata"]["cache"]["hit"] is True
    wait_until(
        lambda: complete(platform, key).json()["metadata"]["cache"]["hit"] is False,
        10,
        "the entry to lapse",
    )


def test_only_opted_in_blocking_completions_are_cached(platform: WebServer) -> None:
    app, key = cached_app(cache_enabled=False)
    first = complete(platform, key)
    assert "cache" not in first.json()["metadata"]
    complete(platform, key)
    assert answer_tasks(app) == 2

    _, cached_key = cached_app()
    with httpx.stream(
        "POST",
        f"{platform.url}{COMPLETION}",
        json={"inputs": {}, "query": "Hi", "user": "u1", "response_mode": "streaming"},
        headers=auth(cached_key),
        timeout=TIMEOUT,
    ) as stream:
        assert stream.status_code == 200
        stream.read()
    assert complete(platform, cached_key, inputs={}, query="Hi").json()["metadata"]["cache"] == {
        "hit": False
    }, "a streamed answer is not stored"

    chat = make_app(cache_enabled=True, provider_config={"text": "chat"})
    _, chat_key = make_key(chat)
    for _ in range(2):
        response = httpx.post(
            f"{platform.url}/v1/chat-messages",
            json={"inputs": {}, "query": "Hi", "user": "u1", "auto_generate_name": False},
            headers=auth(chat_key),
            timeout=TIMEOUT,
        )
        assert "cache" not in response.json()["metadata"]
    assert Task.objects.filter(app=chat, kind="chat").count() == 2


def test_failed_answers_are_not_stored(platform: WebServer) -> None:
    app, key = cached_app(provider_config={"permanent_error": "the model refused"})
    for _ in range(2):
        response = complete(platform, key)
        assert response.status_code == 400
        assert response.json()["code"] == "completion_request_error"
    assert answer_tasks(app) == 2
