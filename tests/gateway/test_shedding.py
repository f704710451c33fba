"""Load shedding: with more queued work than can be served within a request's budget, low
priority is refused early with 503 `overloaded` and Retry-After (then medium), while high
priority still gets in; the thresholds are settings and show in /metrics."""

import json
import time
from typing import Any

import pytest
from django.test import Client

from apps.core.metrics import metric_inc
from apps.gateway import shedding
from apps.scheduling.models import Task
from apps.scheduling.tasks.services import task_create
from tests.factories import make_app_with_key

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat-messages"


@pytest.fixture(autouse=True)
def _fresh_estimates(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """Per-process caches start empty; one task per second unless a test measures more."""
    monkeypatch.setattr(shedding, "_meter", shedding.ThroughputMeter())
    monkeypatch.setattr(shedding, "_depths", {})
    settings.GATEWAY = {
        **settings.GATEWAY,
        "SHED_MIN_THROUGHPUT_PER_S": 1.0,
        "SHED_MAX_WAIT_S": {"low": 30.0, "medium": 120.0},
    }


def queue_work(django_capture_on_commit_callbacks: Any, priority: str, count: int) -> None:
    """Real queued tasks (no worker runs them), pushed to their RQ queue on commit."""
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(count):
            task_create(kind="noop", app=None, requested_priority=priority)


def ask(client: Client, key: str, priority: str, **extra: Any) -> Any:
    body = {
        "inputs": {},
        "query": "Hello",
        "user": "u1",
        "response_mode": "streaming",
        "priority": priority,
        **extra,
    }
    return client.post(
        CHAT,
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )


def answers(priority: str) -> int:
    return Task.objects.filter(kind="chat", priority=priority).count()


def assert_overloaded(response: Any, retry_after_at_least: int) -> None:
    assert response.status_code == 503, response.content
    body = response.json()
    assert body["code"] == "overloaded"
    assert body["status"] == 503
    assert int(response["Retry-After"]) >= retry_after_at_least


def test_low_is_refused_first_high_always_gets_in(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    _, key = make_app_with_key()
    queue_work(django_capture_on_commit_callbacks, "low", 40)  # 40 s of work at 1 task/s

    refused = ask(client, key, "low")
    assert_overloaded(refused, retry_after_at_least=10)
    assert "40 tasks are queued ahead" in refused.json()["message"]
    assert answers("low") == 0, "a shed request records nothing"
    # Medium and high have nothing queued ahead of them: workers take them first.
    assert ask(client, key, "medium").status_code == 200
    assert ask(client, key, "high").status_code == 200
    assert answers("medium") == 1
    assert answers("high") == 1


def test_a_longer_deadline_is_a_larger_budget(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    _, key = make_app_with_key()
    queue_work(django_capture_on_commit_callbacks, "low", 40)

    assert ask(client, key, "low", deadline_ms=60_000).status_code == 200
    assert_overloaded(ask(client, key, "low", deadline_ms=5_000), retry_after_at_least=35)


def test_medium_is_refused_when_its_own_queue_is_too_deep(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    _, key = make_app_with_key()
    queue_work(django_capture_on_commit_callbacks, "medium", 130)

    assert_overloaded(ask(client, key, "medium"), retry_after_at_least=10)
    assert_overloaded(ask(client, key, "low"), retry_after_at_least=100)
    assert ask(client, key, "high").status_code == 200


def test_the_key_caps_the_priority_that_is_judged(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    """A key limited to low cannot escape shedding by asking for high."""
    from apps.applications.models import ApiKey

    _, key = make_app_with_key()
    ApiKey.objects.update(max_priority="low")
    queue_work(django_capture_on_commit_callbacks, "low", 40)
    assert_overloaded(ask(client, key, "high"), retry_after_at_least=1)


def test_measured_throughput_replaces_the_floor(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    """40 queued at 1/s is too slow for low; at the ~20/s the workers really finish, it is 2 s."""
    _, key = make_app_with_key()
    queue_work(django_capture_on_commit_callbacks, "low", 40)
    assert_overloaded(ask(client, key, "low"), retry_after_at_least=1)  # first sample taken

    metric_inc("dp_tasks_finished_total", {"kind": "chat", "status": "succeeded"}, 50)
    time.sleep(shedding.SAMPLE_EVERY_S + 0.1)

    assert ask(client, key, "low").status_code == 200
    rate = shedding._meter.rate()
    assert rate is not None
    assert 15 < rate < 25


def test_refusals_and_thresholds_are_in_the_metrics(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    _, key = make_app_with_key()
    queue_work(django_capture_on_commit_callbacks, "low", 40)
    assert ask(client, key, "low").status_code == 503

    metrics = client.get("/metrics").content.decode()
    assert 'dp_requests_refused_total{reason="shed_low"} 1' in metrics
    assert 'dp_shed_max_wait_seconds{priority="low"} 30' in metrics
    assert 'dp_shed_max_wait_seconds{priority="medium"} 120' in metrics
    assert "dp_shed_min_throughput_per_second 1" in metrics


def test_shedding_can_be_turned_off(
    client: Client, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    _, key = make_app_with_key()
    queue_work(django_capture_on_commit_callbacks, "low", 40)
    settings.GATEWAY = {**settings.GATEWAY, "SHED_ENABLED": False}
    assert ask(client, key, "low").status_code == 200
