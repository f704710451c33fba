"""XML output on request (`Accept: application/xml`) for the blocking answer routes and the DRF
routes; JSON stays the default; an Accept we cannot serve is 406 in the envelope."""

from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

from apps.api.renderers import xml_bytes
from tests.factories import make_app_with_key
from tests.gateway.live import TIMEOUT, auth
from tests.processes import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHAT = "/v1/chat-messages"
BODY = {"inputs": {}, "query": "Hello", "user": "u1", "auto_generate_name": False}


@pytest.fixture
def platform(live_web: WebServer, live_worker: object) -> WebServer:
    return live_web


@pytest.fixture
def key() -> str:
    return make_app_with_key(provider_config={"text": "Fish & chips <3"})[1]


def xml(response: httpx.Response) -> ElementTree.Element:
    assert response.headers["Content-Type"].startswith("application/xml"), response.headers
    return ElementTree.fromstring(response.content)


def test_blocking_chat_answer_as_xml(platform: WebServer, key: str) -> None:
    response = httpx.post(
        f"{platform.url}{CHAT}",
        json=BODY,
        headers={**auth(key), "Accept": "application/xml"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    root = xml(response)
    assert root.tag == "response"
    assert root.findtext("event") == "message"
    assert root.findtext("mode") == "chat"
    assert root.findtext("answer") == "Fish & chips <3"
    assert root.findtext("task_id")
    assert root.findtext("metadata/usage/completion_tokens") == "4"  # four words
    assert root.find("metadata/retriever_resources") is not None


def test_json_stays_the_default(platform: WebServer, key: str) -> None:
    for accept in (None, "*/*", "application/json", "application/xml;q=0.5, application/json"):
        headers = auth(key) if accept is None else {**auth(key), "Accept": accept}
        response = httpx.post(f"{platform.url}{CHAT}", json=BODY, headers=headers, timeout=TIMEOUT)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["answer"] == "Fish & chips <3"


def test_ask_and_errors_as_xml(platform: WebServer, key: str) -> None:
    answered = httpx.post(
        f"{platform.url}/api/v1/ask",
        json={"query": "Hi"},
        headers={**auth(key), "Accept": "text/xml, application/json;q=0.1"},
        timeout=TIMEOUT,
    )
    assert answered.status_code == 200
    assert answered.headers["Content-Type"].startswith("text/xml")
    assert ElementTree.fromstring(answered.content).findtext("response") == "Fish & chips <3"

    refused = httpx.post(
        f"{platform.url}{CHAT}", json=BODY, headers={"Accept": "application/xml"}, timeout=TIMEOUT
    )
    assert refused.status_code == 401
    root = xml(refused)
    assert root.findtext("code") == "unauthorized"
    assert root.findtext("status") == "401"


def test_drf_routes_as_xml(platform: WebServer, key: str) -> None:
    response = httpx.get(
        f"{platform.url}/v1/parameters", headers={**auth(key), "Accept": "application/xml"}
    )
    assert response.status_code == 200
    root = xml(response)
    assert root.find("speech_to_text/enabled").text == "false"  # type: ignore[union-attr]
    assert root.find("suggested_questions") is not None

    missing_user = httpx.get(
        f"{platform.url}/v1/conversations", headers={**auth(key), "Accept": "application/xml"}
    )
    assert missing_user.status_code == 400
    assert xml(missing_user).findtext("code") == "invalid_param"


@pytest.mark.parametrize("path", [CHAT, "/v1/info"])
def test_unservable_accept_is_not_acceptable(platform: WebServer, key: str, path: str) -> None:
    headers = {**auth(key), "Accept": "image/png"}
    if path == CHAT:
        response = httpx.post(f"{platform.url}{path}", json=BODY, headers=headers)
    else:
        response = httpx.get(f"{platform.url}{path}", headers=headers)
    assert response.status_code == 406
    assert response.json()["code"] == "not_acceptable"


def test_streaming_ignores_document_preferences(platform: WebServer, key: str) -> None:
    with httpx.stream(
        "POST",
        f"{platform.url}{CHAT}",
        json={**BODY, "response_mode": "streaming"},
        headers={**auth(key), "Accept": "text/event-stream"},
        timeout=TIMEOUT,
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["Content-Type"] == "text/event-stream"
        stream.read()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"a b": 1}, '<response><item key="a b">1</item></response>'),
        ({"xmlish": True, "n": None}, '<response><item key="xmlish">true</item><n nil="true"/>'),
        ({"list": [1, "two"]}, "<response><list><item>1</item><item>two</item></list>"),
        ({"text": "bell\x07 & <tag>"}, "<text>bell\ufffd &amp; &lt;tag&gt;</text>"),
        ({"1st": "x"}, '<item key="1st">x</item>'),
    ],
    ids=["space-key", "xml-prefix-and-null", "list", "control-chars", "digit-key"],
)
def test_xml_mapping(data: dict[str, Any], expected: str) -> None:
    text = xml_bytes(data).decode()
    assert expected in text
    ElementTree.fromstring(text.encode())
