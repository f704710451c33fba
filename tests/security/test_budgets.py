"""Nobody spends another's budget: a request whose credential does not check out (an unknown
key, a bad scheme, a chat code without its session) spends the budget of its address, like one
with no credential at all, and never the platform's ceiling, which only valid callers reach."""

from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings

from tests.factories import make_app, make_app_with_key

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
