"""Every route we serve, called on the live server, checked against Dify's OpenAPI document: the
request we send must be a valid Dify request, and our answer must match Dify's response schema
with every documented top-level field present."""

import json
from typing import Any

import httpx
import pytest

from tests.compat import dify_openapi as oa
from tests.factories import make_app_with_key
from tests.processes import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TIMEOUT = httpx.Timeout(60.0)
ANSWER = "Oslo is the capital of Norway."
FORM = [
    {"text-input": {"label": "City", "variable": "city", "required": True, "default": ""}},
    {"paragraph": {"label": "Notes", "variable": "notes", "required": False, "default": ""}},
    {
        "select": {
            "label": "Tone",
            "variable": "tone",
            "required": False,
            "default": "dry",
            "options": ["dry", "fun"],
        }
    },
]


@pytest.fixture(scope="module", autouse=True)
def _spec_present() -> None:
    try:
        oa.spec()
    except oa.SpecMissing as missing:
        pytest.fail(str(missing))


@pytest.fixture
def platform(live_web: WebServer, live_worker: object) -> WebServer:
    return live_web


class Dify:
    """Calls one app on the live server, checking each exchange against the document."""

    def __init__(self, platform: WebServer, key: str) -> None:
        self.base = platform.url
        self.headers = {"Authorization": f"Bearer {key}"}

    def call(
        self,
        method: str,
        template: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        expect: int = 200,
        **ids: str,
    ) -> Any:
        """Send a request to `template` (a path of the document, /v1 added) and return the
        answer's JSON, after checking the request and the answer against the document."""
        if body is not None:
            oa.validate(body, oa.request_schema(method, template))
        for name, schema in oa.parameter_schemas(method, template, "query").items():
            if params and name in params:
                value = params[name]
                oa.validate(int(value) if schema.get("type") == "integer" else value, schema)
        response = httpx.request(
            method,
            self.base + template.format(**ids),
            json=body,
            params=params,
            headers=self.headers,
            timeout=TIMEOUT,
        )
        assert response.status_code == expect, response.text
        if expect == 204:
            assert response.content == b""
            assert "content" not in oa.response_entry(method, template, 204)
            return None
        answer = response.json()
        if expect >= 400:
            examples = oa.error_examples(method, template, expect)
            assert set(answer) == {"status", "code", "message"}
            assert answer["code"] in {example["code"] for example in examples}
            return answer
        oa.validate(answer, oa.require_documented(oa.response_schema(method, template, expect)))
        return answer

    def chat(self, **extra: Any) -> dict[str, Any]:
        body = {
            "inputs": {"city": "Oslo"},
            "query": "What is the capital of Norway?",
            "response_mode": "blocking",
            "user": "u1",
            **extra,
        }
        answer: dict[str, Any] = self.call("POST", "/v1/chat-messages", body=body)
        return answer


@pytest.fixture
def dify(platform: WebServer) -> Dify:
    key = make_app_with_key(
        provider="scripted",
        provider_config={"text": ANSWER},
        opening_statement="Hello! Ask me about Norway.",
        suggested_questions=["What is the capital?"],
        user_input_form=FORM,
        description="Norway facts",
        tags=["travel"],
        author_name="Ops",
    )[1]
    return Dify(platform, key)


@pytest.fixture
def writer(platform: WebServer) -> Dify:
    key = make_app_with_key(
        name="Writer",
        mode="completion",
        provider="scripted",
        provider_config={"text": ANSWER},
        user_input_form=FORM,
    )[1]
    return Dify(platform, key)


def test_chat_message_blocking(dify: Dify) -> None:
    answer = dify.chat(conversation_id="", auto_generate_name=True)
    assert (answer["event"], answer["mode"], answer["answer"]) == ("message", "chat", ANSWER)
    followup = dify.chat(conversation_id=answer["conversation_id"])
    assert followup["conversation_id"] == answer["conversation_id"]


def test_chat_message_streaming_events(dify: Dify, platform: WebServer) -> None:
    body = {"inputs": {"city": "Oslo"}, "query": "Hi", "response_mode": "streaming", "user": "u1"}
    oa.validate(body, oa.request_schema("post", "/v1/chat-messages"))
    events: list[dict[str, Any]] = []
    with httpx.stream(
        "POST", f"{platform.url}/v1/chat-messages", json=body, headers=dify.headers, timeout=TIMEOUT
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [
            json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")
        ]

    assert [e["event"] for e in events][-1] == "message_end"
    for event in events:
        schema = oa.stream_event_schema(event["event"])
        base = ("task_id", "message_id", "conversation_id", "created_at")
        oa.validate(event, {**schema, "required": list(base)})
    assert "".join(e["answer"] for e in events if e["event"] == "message") == ANSWER


def test_completion_message_blocking(writer: Dify) -> None:
    body = {"inputs": {"city": "Oslo"}, "query": "Write", "response_mode": "blocking", "user": "u1"}
    answer = writer.call("POST", "/v1/completion-messages", body=body)
    assert (answer["mode"], answer["answer"]) == ("completion", ANSWER)
    assert "conversation_id" not in answer


def test_stop(dify: Dify, writer: Dify) -> None:
    task_id = dify.chat()["task_id"]
    stopped = dify.call(
        "POST", "/v1/chat-messages/{task_id}/stop", body={"user": "u1"}, task_id=task_id
    )
    assert stopped == {"result": "success"}
    body = {"inputs": {"city": "Oslo"}, "response_mode": "blocking", "user": "u1"}
    task_id = writer.call("POST", "/v1/completion-messages", body=body)["task_id"]
    stopped = writer.call(
        "POST", "/v1/completion-messages/{task_id}/stop", body={"user": "u1"}, task_id=task_id
    )
    assert stopped == {"result": "success"}


@pytest.fixture
def conversation_id(dify: Dify) -> str:
    return str(dify.chat(auto_generate_name=False)["conversation_id"])


def test_conversations_list_rename_and_delete(dify: Dify, conversation_id: str) -> None:
    params = {"user": "u1", "limit": "20", "sort_by": "-updated_at"}
    listed = dify.call("GET", "/v1/conversations", params=params)
    assert [c["id"] for c in listed["data"]] == [conversation_id]
    assert listed["data"][0]["introduction"] == "Hello! Ask me about Norway."

    renamed = dify.call(
        "POST",
        "/v1/conversations/{conversation_id}/name",
        body={"name": "Norway", "auto_generate": False, "user": "u1"},
        conversation_id=conversation_id,
    )
    assert renamed["name"] == "Norway"
    generated = dify.call(
        "POST",
        "/v1/conversations/{conversation_id}/name",
        body={"auto_generate": True, "user": "u1"},
        conversation_id=conversation_id,
    )
    assert generated["name"] == ANSWER.rstrip(".")

    dify.call(
        "DELETE",
        "/v1/conversations/{conversation_id}",
        body={"user": "u1"},
        expect=204,
        conversation_id=conversation_id,
    )
    assert dify.call("GET", "/v1/conversations", params={"user": "u1"})["data"] == []
    missing = dify.call(
        "DELETE",
        "/v1/conversations/{conversation_id}",
        body={"user": "u1"},
        expect=404,
        conversation_id=conversation_id,
    )
    assert missing["message"] == "Conversation Not Exists."
    unknown_last = dify.call(
        "GET", "/v1/conversations", params={"user": "u1", "last_id": conversation_id}, expect=404
    )
    assert unknown_last["message"] == "Last Conversation Not Exists."


def test_messages_and_feedback(dify: Dify, conversation_id: str) -> None:
    params = {"conversation_id": conversation_id, "user": "u1", "limit": "20"}
    history = dify.call("GET", "/v1/messages", params=params)
    (message,) = history["data"]
    assert (message["answer"], message["feedback"]) == (ANSWER, None)

    for rating in ("like", "dislike", None):
        result = dify.call(
            "POST",
            "/v1/messages/{message_id}/feedbacks",
            body={"rating": rating, "user": "u1", "content": "Helpful"},
            message_id=message["id"],
        )
        assert result == {"result": "success"}
        shown = dify.call("GET", "/v1/messages", params=params)["data"][0]["feedback"]
        assert shown == ({"rating": rating} if rating else None)

    refused = dify.call(
        "POST",
        "/v1/messages/{message_id}/feedbacks",
        body={"rating": "like", "user": "u2"},
        expect=404,
        message_id=message["id"],
    )
    assert refused["message"] == "Message Not Exists."
    no_user = dify.call(
        "POST",
        "/v1/messages/{message_id}/feedbacks",
        body={"user": ""},
        expect=400,
        message_id=message["id"],
    )
    assert no_user["message"] == "Arg user must be provided."
    first_missing = dify.call(
        "GET", "/v1/messages", params={**params, "first_id": conversation_id}, expect=404
    )
    assert first_missing["message"] == "First Message Not Exists."


def test_parameters_info_and_meta(dify: Dify) -> None:
    parameters = dify.call("GET", "/v1/parameters", params={"user": "u1"})
    assert parameters["user_input_form"] == FORM
    assert parameters["suggested_questions"] == ["What is the capital?"]
    info = dify.call("GET", "/v1/info", params={"user": "u1"})
    assert (info["name"], info["mode"], info["tags"]) == ("Test app", "chat", ["travel"])
    assert dify.call("GET", "/v1/meta", params={"user": "u1"}) == {"tool_icons": {}}


def test_files_suggestions_feedbacks_site_and_end_users(platform: WebServer) -> None:
    key = make_app_with_key(
        provider="scripted",
        provider_config={"text": '["What about Bergen?"]'},
        max_tokens=32,
        file_upload_enabled=True,
        file_upload_images=False,
        suggested_questions_after_answer=True,
    )[1]
    dify = Dify(platform, key)
    notes = b"Oslo is the capital of Norway.\n"
    uploaded = httpx.post(
        f"{dify.base}/v1/files/upload",
        data={"user": "u1"},
        files={"file": ("notes.txt", notes, "text/plain")},
        headers=dify.headers,
        timeout=TIMEOUT,
    )
    assert uploaded.status_code == 201, uploaded.text
    schema = oa.require_documented(oa.response_schema("post", "/v1/files/upload", 201))
    oa.validate(uploaded.json(), schema)
    file_id = uploaded.json()["id"]

    preview = httpx.get(
        f"{dify.base}/v1/files/{file_id}/preview",
        params={"user": "u1", "as_attachment": "true"},
        headers=dify.headers,
    )
    assert (preview.status_code, preview.content) == (200, notes)
    assert preview.headers["Content-Disposition"] == 'attachment; filename="notes.txt"'
    dify.call(
        "GET",
        "/v1/files/{file_id}/preview",
        params={"user": "u2"},
        expect=404,
        file_id=file_id,
    )

    files = [{"type": "document", "transfer_method": "local_file", "upload_file_id": file_id}]
    message_id = dify.chat(files=files)["message_id"]
    suggested = dify.call(
        "GET",
        "/v1/messages/{message_id}/suggested",
        params={"user": "u1"},
        message_id=message_id,
    )
    assert suggested == {"result": "success", "data": ["What about Bergen?"]}
    dify.call(
        "POST",
        "/v1/messages/{message_id}/feedbacks",
        body={"rating": "like", "user": "u1", "content": "Helpful"},
        message_id=message_id,
    )
    feedbacks = dify.call("GET", "/v1/app/feedbacks", params={"page": 1, "limit": 20})
    assert [item["content"] for item in feedbacks["data"]] == ["Helpful"]
    site = dify.call("GET", "/v1/site")
    assert site["title"] == "Test app"
    end_user = dify.call(
        "GET", "/v1/end-users/{end_user_id}", end_user_id=feedbacks["data"][0]["from_end_user_id"]
    )
    assert end_user["external_user_id"] == "u1"
    dify.call("GET", "/v1/end-users/{end_user_id}", expect=404, end_user_id=file_id)
