"""Rate limits against real servers: concurrent requests through two daphne processes sharing
Redis get exactly the allowed number through; the refused get 429 `rate_limit_error` with
Retry-After and leave no task behind."""

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from apps.applications.models import ApiKey
from apps.scheduling.models import Task
from tests.factories import make_app, make_key
from tests.gateway.live import auth, extra_web, post_all, run
from tests.processes import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHAT = "/v1/chat-messages"
BODY = {"inputs": {}, "query": "Hello", "user": "u1", "auto_generate_name": False}


@pytest.fixture(scope="module")
def second_web(live_web: WebServer) -> Iterator[WebServer]:
    with extra_web() as server:
        yield server


@pytest.fixture
def servers(
    live_web: WebServer, second_web: WebServer, live_worker: object
) -> tuple[WebServer, WebServer]:
    return live_web, second_web


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["code"] == "rate_limit_error"
    assert body["status"] == 429
    assert int(response.headers["Retry-After"]) >= 1


def test_key_limit_lets_exactly_the_burst_through_across_processes(
    servers: tuple[WebServer, WebServer],
) -> None:
    # A slow refill (one token per 5 s) so the burst alone decides, however long the run takes.
    app = make_app(provider_config={"text": "ok"})
    api_key, key = make_key(app)
    ApiKey.objects.filter(id=api_key.id).update(rate_limit_per_s=0.2, rate_limit_burst=10)

    calls = [(f"{servers[n % 2].url}{CHAT}", BODY, auth(key)) for n in range(50)]
    responses = run(post_all(calls))

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: 10, 429: 40}, statuses
    for response in responses:
        if response.status_code == 429:
            assert_rate_limited(response)
            assert "this API key" in response.json()["message"]
    assert Task.objects.filter(kind="chat").count() == 10, "refused requests must not create tasks"


def test_app_limit_applies_to_each_key_and_a_key_may_set_its_own(
    servers: tuple[WebServer, WebServer],
) -> None:
    web = servers[0]
    app = make_app(provider_config={"text": "ok"}, rate_limit_per_s=0.2, rate_limit_burst=2)
    _, first = make_key(app)
    own, second = make_key(app)
    ApiKey.objects.filter(id=own.id).update(rate_limit_per_s=0.2, rate_limit_burst=4)

    first_results = run(post_all([(f"{web.url}{CHAT}", BODY, auth(first))] * 5))
    second_results = run(post_all([(f"{web.url}{CHAT}", BODY, auth(second))] * 5))

    assert Counter(r.status_code for r in first_results) == {200: 2, 429: 3}
    assert Counter(r.status_code for r in second_results) == {200: 4, 429: 1}


def test_user_limit_is_per_end_user(servers: tuple[WebServer, WebServer]) -> None:
    web = servers[0]
    app = make_app(
        provider_config={"text": "ok"}, user_rate_limit_per_s=0.2, user_rate_limit_burst=3
    )
    _, key = make_key(app)

    calls = [(f"{web.url}{CHAT}", {**BODY, "user": "alice"}, auth(key))] * 6
    calls += [(f"{web.url}{CHAT}", {**BODY, "user": "bob"}, auth(key))] * 6
    responses = run(post_all(calls))

    alice = Counter(r.status_code for r in responses[:6])
    bob = Counter(r.status_code for r in responses[6:])
    assert alice == {200: 3, 429: 3}
    assert bob == {200: 3, 429: 3}
    refused = next(r for r in responses if r.status_code == 429)
    assert_rate_limited(refused)
    assert "this user" in refused.json()["message"]
    assert Task.objects.filter(end_user="alice").count() == 3


def test_retry_after_is_enough_to_get_through(servers: tuple[WebServer, WebServer]) -> None:
    web = servers[0]
    app = make_app(provider_config={"text": "ok"}, rate_limit_per_s=2, rate_limit_burst=1)
    _, key = make_key(app)
    url = f"{web.url}/v1/info"

    assert httpx.get(url, headers=auth(key)).status_code == 200
    refused = httpx.get(url, headers=auth(key))
    assert_rate_limited(refused)

    time.sleep(int(refused.headers["Retry-After"]))
    assert httpx.get(url, headers=auth(key)).status_code == 200


def test_drf_routes_share_the_key_budget(servers: tuple[WebServer, WebServer]) -> None:
    web = servers[0]
    app = make_app(provider_config={"text": "ok"}, rate_limit_per_s=0.2, rate_limit_burst=3)
    _, key = make_key(app)

    assert httpx.post(f"{web.url}{CHAT}", json=BODY, headers=auth(key)).status_code == 200
    assert httpx.get(f"{web.url}/v1/parameters", headers=auth(key)).status_code == 200
    listed = httpx.get(f"{web.url}/v1/conversations", params={"user": "u1"}, headers=auth(key))
    assert listed.status_code == 200
    refused = httpx.get(f"{web.url}/v1/info", headers=auth(key))
    assert_rate_limited(refused)


def test_global_ceiling_is_spent_by_valid_callers_only(live_web: WebServer) -> None:
    """A ceiling of burst 5: 20 requests with an unknown key spend none of it (they spend their
    address's budget, tests/security/test_budgets.py); of 20 with a valid key, 5 are served and
    15 refused, whichever process they hit."""
    app = make_app(provider_config={"text": "ok"})
    _, key = make_key(app)
    with extra_web(GLOBAL_RATE_LIMIT_PER_S="0.1", GLOBAL_RATE_LIMIT_BURST="5") as web:
        calls: list[tuple[str, dict[str, Any], dict[str, str]]] = [
            (f"{web.url}{CHAT}", BODY, auth("app-unknown"))
        ] * 20
        unknown = Counter(response.status_code for response in run(post_all(calls)))
        assert unknown == {401: 20}, unknown
        with httpx.Client(base_url=web.url, headers=auth(key), timeout=30) as client:
            responses = [client.get("/v1/parameters") for _ in range(20)]
        statuses = Counter(response.status_code for response in responses)
        assert statuses == {200: 5, 429: 15}, statuses
        refused = next(r for r in responses if r.status_code == 429)
        assert_rate_limited(refused)
        assert "the platform" in refused.json()["message"]
        # Probes and metrics stay reachable under the ceiling.
        assert httpx.get(f"{web.url}/healthz").status_code == 200
        metrics = httpx.get(f"{web.url}/metrics").text
        assert 'dp_requests_refused_total{reason="rate_global"} 15' in metrics
