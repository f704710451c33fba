"""Hostile input over REST gets a clear 4xx in the envelope and records nothing: raw and escaped
surrogates everywhere text is read, a key in a query string, floods without a key, and the
operator endpoints' token and cache. (WebSocket frames: test_web_sessions; moderation against
look-alikes: test_moderation_lookalikes; Idempotency-Keys: test_idempotency_scope.)"""

import json
from typing import Any

import pytest
from django.test import Client, override_settings

from apps.scheduling.models import Task
from tests.factories import make_app_with_key

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat-messages"
VALID = {"inputs": {}, "query": "Hello", "user": "u1"}


def post(client: Client, body: bytes | dict[str, Any], key: str, **headers: str) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        CHAT,
        data=raw,
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}", **headers},
    )


def assert_refused(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "status"}
    assert (body["code"], body["status"]) == (code, status)


@pytest.mark.parametrize(
    "raw",
    [
        # A lone surrogate as raw UTF-8-style bytes (Python's json passes them through).
        b'{"inputs": {}, "query": "Hello", "user": "bob\xed\xa0\x80"}',
        b'{"inputs": {"topic": "x\xed\xbf\xbf"}, "query": "Hello", "user": "u1"}',
        b'{"inputs": {}, "query": "Hello\xed\xa0\x80", "user": "u1"}',
        # ... and as JSON escapes, in a value and in a key.
        b'{"inputs": {}, "query": "Hello", "user": "bob\\ud800"}',
        b'{"inputs": {"\\udfff": "x"}, "query": "Hello", "user": "u1"}',
    ],
)
def test_lone_surrogates_in_a_body_are_refused(client: Client, raw: bytes) -> None:
    _, key = make_app_with_key()
    assert_refused(post(client, raw, key), 400, "invalid_param")
    assert Task.objects.count() == 0


@pytest.mark.parametrize(
    "query",
    ["user=bob%ED%A0%80", "user=%ED%BF%BF", "user=%FF%FEbob", "user=u1&limit=%C0%AF"],
)
def test_query_strings_that_are_not_utf8_are_refused(client: Client, query: str) -> None:
    _, key = make_app_with_key()
    response = client.get(f"/v1/conversations?{query}", headers={"Authorization": f"Bearer {key}"})
    assert_refused(response, 400, "invalid_param")
    assert "UTF-8" in response.json()["message"]


def test_well_formed_unicode_in_a_query_string_is_fine(client: Client) -> None:
    _, key = make_app_with_key()
    response = client.get(
        "/v1/conversations?user=%E5%BC%A0%E4%B8%89", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.content


def test_keys_in_a_query_string_are_never_credentials(client: Client) -> None:
    _, key = make_app_with_key()
    response = client.get(f"/v1/conversations?user=u1&api_key={key}")
    assert_refused(response, 401, "unauthorized")


@override_settings(
    GATEWAY={
        **__import__("django.conf", fromlist=["settings"]).settings.GATEWAY,
        "ANON_RATE_LIMIT_PER_S": 1.0,
        "ANON_RATE_LIMIT_BURST": 3,
        "GLOBAL_RATE_LIMIT_PER_S": 1000.0,
    }
)
def test_requests_without_a_key_spend_their_own_budget_not_everyones(client: Client) -> None:
    _, key = make_app_with_key()
    # In use before the flood: a key the process knows is served from an emptied address too
    # (tests/security/test_budgets.py).
    warm = client.get("/v1/parameters", headers={"Authorization": f"Bearer {key}"})
    assert warm.status_code == 200
    statuses = [client.get("/v1/parameters").status_code for _ in range(8)]
    assert statuses[:3] == [401, 401, 401]
    assert set(statuses[3:]) == {429}
    # A client with a key is untouched by the anonymous flood.
    response = client.get("/v1/parameters", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200


@override_settings(METRICS_TOKEN="s3cret-metrics-token")
def test_metrics_need_the_token_when_one_is_set(client: Client) -> None:
    assert_refused(client.get("/metrics"), 401, "unauthorized")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"})
    assert right.status_code == 200
    assert b"dp_" in right.content


@override_settings(OPERATIONS_FIGURES_CACHE_S=60.0)
def test_metrics_figures_are_reused_within_the_window(
    client: Client, django_assert_max_num_queries: Any
) -> None:
    client.get("/metrics")  # computes and keeps the figures
    with django_assert_max_num_queries(0):
        for _ in range(5):
            assert client.get("/metrics").status_code == 200
