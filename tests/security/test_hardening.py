"""Hardening: a bearer token with characters outside ASCII is a wrong token everywhere (401, never
a 500), production cookies carry the `__Host-` prefix, and share codes stay out of access-log
paths."""

import json
import logging

import pytest
from django.test import Client, override_settings

from tests.factories import make_app, make_app_with_key

pytestmark = pytest.mark.django_db

# As a client sends it (UTF-8), and as an ASGI server hands it on (the bytes read as latin-1).
NON_ASCII_TOKENS = ["clé-ключ-🔑", "clé-ключ".encode().decode("latin-1"), "app-\u00ff\u0100"]


@pytest.mark.parametrize("token", NON_ASCII_TOKENS)
@override_settings(METRICS_TOKEN="s3cret-metrics-token")
def test_metrics_refuse_a_non_ascii_token(client: Client, token: str) -> None:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.content
    assert response.json()["code"] == "unauthorized"


@pytest.mark.parametrize("token", NON_ASCII_TOKENS)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/parameters"),
        ("post", "/v1/chat-messages"),
        ("get", "/v1/conversations?user=u1"),
        ("post", "/v1/chat/completions"),
        ("get", "/v1/models"),
        ("get", "/v1/files"),
        ("get", "/v1/batches"),
        ("post", "/v1/files/upload"),
    ],
)
def test_api_routes_refuse_a_non_ascii_token(
    client: Client, token: str, method: str, path: str
) -> None:
    make_app_with_key()
    response = getattr(client, method)(
        path,
        data=b"{}" if method == "post" else None,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401, response.content
    body = response.json()
    status = body["error"]["code"] if "error" in body else body["status"]
    assert status in (401, "invalid_api_key"), body


PRODUCTION_COOKIES = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.SESSION_COOKIE_NAME, s.CSRF_COOKIE_NAME, s.SESSION_COOKIE_DOMAIN, "
    "s.CSRF_COOKIE_DOMAIN, s.SESSION_COOKIE_PATH, s.CSRF_COOKIE_PATH)"
)


def test_production_cookies_carry_the_host_prefix() -> None:
    from tests.deploy.test_production_defaults import production, python

    result = python(PRODUCTION_COOKIES, **production())
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "__Host-sessionid",
        "__Host-csrftoken",
        "None",
        "None",
        "/",
        "/",
    ]
    # Over plain HTTP (the quick start), a `__Host-` cookie would be dropped by browsers.
    plain = python(PRODUCTION_COOKIES, **production(SESSION_COOKIE_SECURE="false"))
    assert plain.stdout.split()[0] == "sessionid"


@override_settings(WEB_SESSION_COOKIE_SECURE=True)
def test_secure_chat_sessions_carry_the_host_prefix_and_still_work(client: Client) -> None:
    app = make_app(web_chat_enabled=True)
    page = client.get(f"/chat/{app.web_share_code}", secure=True)
    assert page.status_code == 200
    name = f"__Host-dp_eu_{app.id.hex}"
    cookie = page.cookies[name]
    assert cookie["secure"]
    assert cookie["path"] == "/"
    assert not cookie["domain"]
    assert f"dp_eu_{app.id.hex}" not in {n for n in page.cookies if not n.startswith("__Host-")}
    listed = client.get(
        "/v1/conversations", headers={"X-App-Code": app.web_share_code}, secure=True
    )
    assert listed.status_code == 200, listed.content
    # A cookie without the prefix (planted by a sibling subdomain) is no session.
    planted = Client()
    planted.cookies[f"dp_eu_{app.id.hex}"] = cookie.value
    refused = planted.get(
        "/v1/conversations", headers={"X-App-Code": app.web_share_code}, secure=True
    )
    assert refused.status_code == 401


def test_share_codes_stay_out_of_the_access_log(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(web_chat_enabled=True)
    code = app.web_share_code
    with caplog.at_level(logging.INFO):
        assert client.get(f"/chat/{code}").status_code == 200
        client.get(f"/chat/{code}?x=1")
        assert client.get("/chat/not-a-code-at-all").status_code == 404  # also Django's warning
    assert len([record for record in caplog.records if record.name == "apps.http"]) == 3
    for record in caplog.records:
        written = record.getMessage() + json.dumps(record.__dict__, default=str)
        assert code not in written
        assert "not-a-code-at-all" not in written
    assert "GET /chat/<share_code> 200" in caplog.messages
