"""End-user sessions of the web chat against daphne and a worker as real processes: each browser
acts as its own end user only, whatever `user` it sends, over REST and the WebSocket; the
share code and the app's switch decide who gets in; stop and resume frames are rate-limited;
a dropped socket does not free its answer's slot under the app's cap; keys never ride in URLs;
hostile frames are refused."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from apps.applications.models import App
from apps.applications.services import app_share_code_rotate
from apps.conversations.models import Conversation, Message
from apps.scheduling.models import Task, TaskStatus
from tests.factories import make_app, make_key
from tests.processes import WebServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WAIT_S = 30.0
SLOW_TEXT = " ".join(f"w{i}" for i in range(30))  # 3 s at 10 words a second


@pytest.fixture
def platform(live_web: WebServer, live_worker: object) -> WebServer:
    return live_web


def web_app(**fields: Any) -> App:
    defaults: dict[str, Any] = {"web_chat_enabled": True, "default_priority": "medium"}
    return make_app(**{**defaults, **fields})


def slow_app(**fields: Any) -> App:
    return web_app(provider_config={"text": SLOW_TEXT, "tokens_per_s": 10}, max_tokens=40, **fields)


@contextmanager
def browser(platform: WebServer, app: App) -> Iterator[httpx.Client]:
    """A browser's cookie jar after opening the app's chat page."""
    with httpx.Client(base_url=platform.url, timeout=WAIT_S) as client:
        page = client.get(f"/chat/{app.web_share_code}")
        assert page.status_code == 200, page.text
        client.headers["X-App-Code"] = app.web_share_code
        yield client


def end_user_of(client: httpx.Client, app: App) -> str:
    from django.core import signing

    value = client.cookies[f"dp_eu_{app.id.hex}"]
    # The cookie is signed, not encrypted: the test reads it without the salt's check.
    payload = signing.b64_decode(value.split(":")[0].encode())
    return str(json.loads(payload)["u"])


def ask(client: httpx.Client, query: str, **fields: Any) -> httpx.Response:
    body = {"inputs": {}, "query": query, "user": "victim", **fields}
    return client.post("/v1/chat-messages", json=body)


@contextmanager
def socket(platform: WebServer, app: App, client: httpx.Client) -> Iterator[ClientConnection]:
    """The browser's chat socket: the share code in the URL, its cookie in the handshake."""
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    url = f"ws://127.0.0.1:{platform.port}/ws/v1/chat?app_code={app.web_share_code}"
    with connect(url, additional_headers={"Cookie": cookie}, open_timeout=WAIT_S) as ws:
        ready = receive(ws)
        assert ready["type"] == "ready", ready
        yield ws


def receive(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(ws.recv(timeout=WAIT_S))
    return frame


def until(ws: ClientConnection, wanted: str) -> dict[str, Any]:
    while True:
        frame = receive(ws)
        if frame.get("type") == wanted or frame.get("event") == wanted:
            return frame


def test_the_page_issues_an_httponly_session_and_no_key(platform: WebServer) -> None:
    app = web_app()
    response = httpx.get(f"{platform.url}/chat/{app.web_share_code}")
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert f"dp_eu_{app.id.hex}=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "app-" not in response.text  # no API key reaches the browser
    assert "script-src 'self'" in response.headers["content-security-policy"]


def test_each_browser_is_its_own_end_user_whatever_it_sends(platform: WebServer) -> None:
    app = web_app()
    with browser(platform, app) as alice, browser(platform, app) as mallory:
        answered = ask(alice, "Alice's secret question")
        assert answered.status_code == 200, answered.text
        alice_id = end_user_of(alice, app)
        assert alice_id.startswith("web-")
        assert alice_id != end_user_of(mallory, app)
        conversation = Conversation.objects.get()
        assert conversation.end_user == alice_id  # not "victim", which the page sent

        # Mallory names Alice (and "victim") in every way the API reads a user: nothing.
        for name in (alice_id, "victim"):
            listed = mallory.get("/v1/conversations", params={"user": name})
            assert listed.status_code == 200
            assert listed.json()["data"] == []
            history = mallory.get(
                "/v1/messages", params={"user": name, "conversation_id": str(conversation.id)}
            )
            assert history.status_code == 404
        renamed = mallory.post(
            f"/v1/conversations/{conversation.id}/name", json={"name": "pwned", "user": alice_id}
        )
        assert renamed.status_code == 404
        deleted = mallory.request(
            "DELETE", f"/v1/conversations/{conversation.id}", json={"user": alice_id}
        )
        assert deleted.status_code == 404
        assert Conversation.objects.get().name != "pwned"

        # Alice sees her own.
        mine = alice.get("/v1/conversations", params={"user": "someone-else"})
        assert [c["id"] for c in mine.json()["data"]] == [str(conversation.id)]


def test_sessions_ask_at_the_apps_priority_at_most(platform: WebServer) -> None:
    app = web_app()
    with browser(platform, app) as alice:
        assert ask(alice, "Hurry", priority="high").status_code == 200
    assert Task.objects.exclude(kind="conversation_name").get().priority == "medium"


def test_without_a_valid_session_nothing_is_served(platform: WebServer) -> None:
    app = web_app()
    code = {"X-App-Code": app.web_share_code}
    # No cookie at all, a forged one, and a cookie for another app.
    other = web_app(name="Other")
    with browser(platform, other) as stranger:
        stolen = {f"dp_eu_{app.id.hex}": stranger.cookies[f"dp_eu_{other.id.hex}"]}
    for cookies in ({}, {f"dp_eu_{app.id.hex}": "forged:value"}, stolen):
        response = httpx.get(
            f"{platform.url}/v1/conversations", headers=code, cookies=cookies, timeout=WAIT_S
        )
        assert response.status_code == 401, (cookies, response.text)
        assert response.json()["code"] == "unauthorized"
    # A foreign page using a browser's cookie is refused.
    with browser(platform, app) as alice:
        foreign = alice.get("/v1/conversations", headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403


def test_rotating_the_code_or_turning_the_chat_off_ends_the_sessions(platform: WebServer) -> None:
    app = web_app()
    with browser(platform, app) as alice:
        assert alice.get("/v1/conversations").status_code == 200
        old_code = app.web_share_code
        app_share_code_rotate(app)
        app.save()
        assert alice.get("/v1/conversations").status_code == 401
        assert httpx.get(f"{platform.url}/chat/{old_code}").status_code == 404
        assert httpx.get(f"{platform.url}/chat/{app.web_share_code}").status_code == 200
    app.web_chat_enabled = False
    app.save()
    assert httpx.get(f"{platform.url}/chat/{app.web_share_code}").status_code == 404
    assert httpx.get(f"{platform.url}/chat/").status_code == 404


def test_a_private_chat_takes_the_signed_in_account_as_the_end_user(platform: WebServer) -> None:
    app = web_app(web_chat_private=True)
    account = User.objects.create_user("carol", password="a-long-password-for-carol")
    with httpx.Client(base_url=platform.url, timeout=WAIT_S) as client:
        page = client.get(f"/chat/{app.web_share_code}")
        assert page.status_code == 302
        assert page.headers["location"].startswith("/chat/login/")
        login = client.get("/chat/login/")
        token = client.cookies["csrftoken"]
        signed_in = client.post(
            "/chat/login/",
            data={
                "username": "carol",
                "password": "a-long-password-for-carol",
                "csrfmiddlewaretoken": token,
                "next": f"/chat/{app.web_share_code}",
            },
            headers={"Referer": f"{platform.url}/chat/login/"},
        )
        assert login.status_code == 200
        assert signed_in.status_code == 302, signed_in.text
        assert client.get(f"/chat/{app.web_share_code}").status_code == 200
        client.headers["X-App-Code"] = app.web_share_code
        assert ask(client, "Hello").status_code == 200
    assert Conversation.objects.get().end_user == f"account-{account.pk}"


def test_the_socket_acts_as_the_session_and_cannot_stop_anothers_answer(
    platform: WebServer,
) -> None:
    app = slow_app()
    with (
        browser(platform, app) as alice,
        browser(platform, app) as mallory,
        socket(platform, app, alice) as ws_alice,
        socket(platform, app, mallory) as ws_bad,
    ):
        ws_alice.send(json.dumps({"type": "query", "query": "Hi", "inputs": {}, "user": "x"}))
        accepted = until(ws_alice, "accepted")
        task_id = accepted["task_id"]
        ws_bad.send(json.dumps({"type": "stop", "task_id": task_id, "user": "x"}))
        ws_bad.send(json.dumps({"type": "resume", "task_id": task_id, "user": "x"}))
        refused = until(ws_bad, "error")
        assert refused["code"] == "not_found"
        end = until(ws_alice, "message_end")
        assert end["task_id"] == task_id
    message = Message.objects.get()
    assert message.end_user == end_user_of(alice, app)
    assert message.answer == SLOW_TEXT  # Mallory's stop changed nothing
    assert Task.objects.exclude(kind="conversation_name").get().status == TaskStatus.SUCCEEDED


def test_stop_and_resume_frames_are_rate_limited(platform: WebServer) -> None:
    app = web_app(user_rate_limit_per_s=0.5, user_rate_limit_burst=2)
    with browser(platform, app) as alice, socket(platform, app, alice) as ws:
        for _ in range(6):
            ws.send(
                json.dumps({"type": "stop", "task_id": "8" * 8 + "-0000-4000-8000-" + "0" * 12})
            )
        refused = until(ws, "error")
        assert refused["code"] == "rate_limit_error"
        assert refused["status"] == 429


def test_a_dropped_socket_keeps_its_answers_slot_until_the_answer_ends(
    platform: WebServer,
) -> None:
    app = slow_app(max_active_requests=1)
    with browser(platform, app) as alice:
        with socket(platform, app, alice) as first:
            first.send(json.dumps({"type": "query", "query": "one", "inputs": {}}))
            task_id = until(first, "accepted")["task_id"]
            until(first, "message")
        # The first socket is gone; its answer still runs and still counts.
        with socket(platform, app, alice) as second:
            second.send(json.dumps({"type": "query", "query": "two", "inputs": {}}))
            refused = until(second, "error")
            assert refused["status"] == 429
            second.send(json.dumps({"type": "resume", "task_id": task_id}))
            assert until(second, "message_end")["task_id"] == task_id

            # Once it ended, the slot is free again (the holder looks every 2 s).
            def accepted() -> bool:
                second.send(json.dumps({"type": "query", "query": "three", "inputs": {}}))
                frame = receive(second)
                while frame.get("type") not in ("accepted", "error"):
                    frame = receive(second)
                assert frame["type"] == "accepted" or frame["status"] == 429, frame
                return bool(frame["type"] == "accepted")

            wait_until(accepted, WAIT_S, "the slot to come back")


def test_keys_in_the_handshake_url_are_refused(platform: WebServer) -> None:
    app = web_app()
    _, key = make_key(app)
    with connect(f"ws://127.0.0.1:{platform.port}/ws/v1/chat?api_key={key}") as ws:
        frame = receive(ws)
        assert frame["type"] == "error"
        assert frame["code"] == "unauthorized"
        assert "URL" in frame["message"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=WAIT_S)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4401


@pytest.mark.parametrize(
    "frame",
    [
        '{"type": "query", "query": "hi\\ud800", "inputs": {}, "user": "u1"}',
        '{"type": "query", "query": "hi", "inputs": {"\\udfff": "x"}, "user": "u1"}',
        '{"type": "query", "query": "hi", "inputs": {}, "user": "u1\\u0000"}',
    ],
)
def test_hostile_frames_get_a_clear_error_and_record_nothing(
    platform: WebServer, frame: str
) -> None:
    app = web_app()
    _, key = make_key(app)
    url = f"ws://127.0.0.1:{platform.port}/ws/v1/chat"
    with connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        assert receive(ws)["type"] == "ready"
        ws.send(frame)
        refused = receive(ws)
        assert refused["type"] == "error"
        assert refused["status"] == 400
    assert Task.objects.count() == 0


def test_deleting_a_conversation_mid_answer_ends_its_stream(platform: WebServer) -> None:
    app = slow_app()
    with browser(platform, app) as alice:
        body = {"inputs": {}, "query": "long one", "response_mode": "streaming"}
        with alice.stream("POST", "/v1/chat-messages", json=body) as stream:
            events = []
            deleted = False
            for line in stream.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                events.append(event["event"])
                if event["event"] == "message" and not deleted:
                    conversation_id = event["conversation_id"]
                    response = alice.request(
                        "DELETE", f"/v1/conversations/{conversation_id}", json={}
                    )
                    assert response.status_code in (200, 204), response.text
                    deleted = True
        assert deleted
        assert events[-1] in ("message_end", "error")  # the stream ended, no hang
    task = Task.objects.exclude(kind="conversation_name").get()
    assert task.status == TaskStatus.CANCELLED
    assert Conversation.objects.count() == 0


def test_a_session_has_no_access_to_the_apps_batches_and_files(platform: WebServer) -> None:
    """Batches and their files are the app's own; a chat page's session acts for one end user."""
    app = web_app()
    with browser(platform, app) as client:
        for method, path in (
            ("GET", "/v1/batches"),
            ("POST", "/v1/batches"),
            ("GET", "/v1/files"),
            ("GET", "/v1/batches/batch_0123456789abcdef0123456789abcdef"),
        ):
            response = client.request(method, path, json={} if method == "POST" else None)
            assert response.status_code == 401, (path, response.text)
            assert response.json()["error"]["code"] == "invalid_api_key"
        uploaded = client.post(
            "/v1/files", files={"file": ("in.jsonl", b"{}\n")}, data={"purpose": "batch"}
        )
        assert uploaded.status_code == 401
