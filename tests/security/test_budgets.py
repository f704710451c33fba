"""Nobody spends another's budget: a request whose credential does not check out (an unknown
key, a bad scheme, a chat code without its session) spends the budget of its address, like one
with no credential at all, and never the platform's ceiling, which only valid callers reach."""

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.test import Client, override_settings

from apps.interface.http.forwarded import ForwardedHeadersMiddleware
from tests.factories import make_app, make_app_with_key
from tests.gateway.live import extra_web
from tests.processes import WebServer

pytestmark = pytest.mark.django_db


def limits(**values: Any) -> Any:
    return override_settings(GATEWAY={**settings.GATEWAY, **values})


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@limits(
    GLOBAL_RATE_LIMIT_PER_S=0.01,
    GLOBAL_RATE_LIMIT_BURST=5,
    ANON_RATE_LIMIT_PER_S=0.01,
    ANON_RATE_LIMIT_BURST=3,
)
def test_wrong_keys_spend_their_address_budget_not_the_platforms(client: Client) -> None:
    _, key = make_app_with_key()
    assert client.get("/v1/parameters", headers=bearer(key)).status_code == 200
    statuses = [
        client.get("/v1/parameters", headers=bearer("junk-key")).status_code for _ in range(20)
    ]
    assert statuses[:3] == [401, 401, 401], statuses
    assert set(statuses[3:]) == {429}, statuses
    refused = client.get("/v1/parameters", headers=bearer("junk-key"))
    assert refused.json()["code"] == "rate_limit_error"
    assert "your address" in refused.json()["message"]
    # Every valid request is still served: the flood spent none of the ceiling.
    for _ in range(4):
        assert client.get("/v1/parameters", headers=bearer(key)).status_code == 200
    # ... which valid callers do spend: the sixth is over the platform's burst of 5.
    over = client.get("/v1/parameters", headers=bearer(key))
    assert over.status_code == 429
    assert "the platform" in over.json()["message"]


@limits(ANON_RATE_LIMIT_PER_S=0.01, ANON_RATE_LIMIT_BURST=2)
@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"X-App-Code": "no-such-code"},
        {"Authorization": "Bearer junk", "X-App-Code": "no-such-code"},
    ],
)
def test_any_credential_that_does_not_check_out_spends_the_address(
    client: Client, headers: dict[str, str]
) -> None:
    statuses = [client.get("/v1/parameters", headers=headers).status_code for _ in range(5)]
    assert statuses[:2] in ([401, 401], [403, 403]), statuses
    assert set(statuses[2:]) == {429}, statuses
    # Anonymous requests from that address share the same, now empty, budget.
    assert client.get("/v1/parameters").status_code == 429


@limits(ANON_RATE_LIMIT_PER_S=0.01, ANON_RATE_LIMIT_BURST=2)
def test_a_valid_key_from_a_flooded_address_is_still_served(client: Client) -> None:
    """Once an address's budget is known to be empty, requests naming a caller from it are
    refused without a lookup (wrong keys, each new, would otherwise cost a query apiece), except
    a key this process knows to be valid: a client behind the same NAT keeps being served."""
    _, key = make_app_with_key()
    assert client.get("/v1/parameters", headers=bearer(key)).status_code == 200
    for index in range(6):
        client.get("/v1/parameters", headers=bearer(f"junk-{index}"))
    assert client.get("/v1/parameters", headers=bearer("junk-new")).status_code == 429
    for _ in range(5):
        assert client.get("/v1/parameters", headers=bearer(key)).status_code == 200


@limits(ANON_RATE_LIMIT_PER_S=0.01, ANON_RATE_LIMIT_BURST=2)
def test_a_chat_session_that_checks_out_spends_no_address_budget(client: Client) -> None:
    app = make_app(web_chat_enabled=True)
    assert client.get(f"/chat/{app.web_share_code}").status_code == 200
    for _ in range(5):
        listed = client.get("/v1/conversations", headers={"X-App-Code": app.web_share_code})
        assert listed.status_code == 200, listed.content


# --- the client's address ----------------------------------------------------------------------


def scope_seen(scope: dict[str, Any], trusted: list[str]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(inner: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(inner)

    with override_settings(TRUSTED_PROXIES=trusted):
        asyncio.run(ForwardedHeadersMiddleware(app)(scope, None, None))
    return seen


def http_scope(peer: str, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "scheme": "http", "client": [peer, 5000], "headers": list(headers)}


def test_forwarded_headers_from_anyone_else_are_ignored_and_removed() -> None:
    seen = scope_seen(
        http_scope(
            "198.51.100.7",
            (b"x-forwarded-for", b"203.0.113.9"),
            (b"x-forwarded-proto", b"https"),
            (b"x-real-ip", b"203.0.113.9"),
            (b"accept", b"*/*"),
        ),
        trusted=["10.0.0.0/8"],
    )
    assert seen["client"] == ["198.51.100.7", 5000]
    assert seen["scheme"] == "http"
    assert seen["headers"] == [(b"accept", b"*/*")]


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        ("203.0.113.9", "203.0.113.9"),
        # What the client wrote itself is left of what the proxies appended.
        ("1.1.1.1, 2.2.2.2, 203.0.113.9", "203.0.113.9"),
        # Proxies of the chain are skipped from the right.
        ("1.1.1.1, 203.0.113.9, 10.0.0.3", "203.0.113.9"),
        # Garbage from the client: the proxy that passed it on is the client seen.
        ("203.0.113.9, not-an-address", "10.0.0.2"),
        ("[2001:db8::5]:443", "2001:db8::5"),
    ],
)
def test_trusted_proxies_name_the_client_from_the_right(forwarded_for: str, client: str) -> None:
    seen = scope_seen(
        http_scope(
            "10.0.0.2",
            (b"x-forwarded-for", forwarded_for.encode()),
            (b"x-forwarded-proto", b"https"),
        ),
        trusted=["10.0.0.0/8"],
    )
    assert seen["client"][0] == client
    assert seen["scheme"] == "https"


def anonymous_flood(web: WebServer, forwarded: bool) -> Counter[int]:
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=web.url, timeout=30) as client:
        for index in range(40):
            headers = {"X-Forwarded-For": f"203.0.113.{index}"} if forwarded else {}
            statuses[client.get("/v1/parameters", headers=headers).status_code] += 1
    return statuses


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_client_cannot_name_its_own_address_to_dodge_its_budget() -> None:
    """The web server as `make run` starts it: each request naming another address in
    X-Forwarded-For still spends the one budget of the address it comes from."""
    env = {"ANON_RATE_LIMIT_PER_S": "0.01", "ANON_RATE_LIMIT_BURST": "10"}
    with extra_web(**env) as web:
        statuses = anonymous_flood(web, forwarded=True)
    assert statuses == {401: 10, 429: 30}, statuses
    # Behind a trusted proxy (here: loopback), the address it names is the client's.
    with extra_web(**env, TRUSTED_PROXIES="127.0.0.1") as web:
        statuses = anonymous_flood(web, forwarded=True)
    assert statuses == {401: 40}, statuses
