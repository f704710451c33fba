"""The official Dify Python client (`dify-client`), unchanged, pointed at our live server."""

import json
from typing import Any

import pytest
from dify_client import ChatClient, CompletionClient  # type: ignore[import-untyped]

from tests.factories import make_app_with_key
from tests.processes import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ANSWER = "Bergen is the rainiest city in Norway."


@pytest.fixture
def platform(live_web: WebServer, live_worker: object) -> WebServer:
    return live_web


def pointed_at(client: Any, platform: WebServer) -> Any:
    # The client has no base-URL argument in this version; the attribute is what it reads.
    client.base_url = f"{platform.url}/v1"
    return client


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def chat_client(platform: WebServer) -> Any:
    key = make_app_with_key(
        provider="scripted",
        provider_config={"text": ANSWER},
        opening_statement="Hi! Ask about Norway.",
    )[1]
    return pointed_at(ChatClient(key), platform)


def test_chat_blocking_then_conversations_messages_rename_and_feedback(chat_client: Any) -> None:
    answer = ok(chat_client.create_chat_message(inputs={}, query="Where does it rain?", user="u1"))
    assert answer["answer"] == ANSWER
    conversation_id = answer["conversation_id"]

    followup = ok(
        chat_client.create_chat_message(
            inputs={}, query="And in summer?", user="u1", conversation_id=conversation_id
        )
    )
    assert followup["conversation_id"] == conversation_id

    conversations = ok(chat_client.get_conversations(user="u1"))
    assert [c["id"] for c in conversations["data"]] == [conversation_id]
    assert conversations["data"][0]["introduction"] == "Hi! Ask about Norway."
    assert ok(chat_client.get_conversations(user="u1", limit=1, last_id=conversation_id)) == {
        "limit": 1,
        "has_more": False,
        "data": [],
    }

    messages = ok(chat_client.get_conversation_messages(user="u1", conversation_id=conversation_id))
    assert [m["query"] for m in messages["data"]] == ["Where does it rain?", "And in summer?"]
    older = ok(
        chat_client.get_conversation_messages(
            user="u1", conversation_id=conversation_id, first_id=followup["message_id"], limit=1
        )
    )
    assert [m["id"] for m in older["data"]] == [answer["message_id"]]

    renamed = ok(chat_client.rename_conversation(conversation_id, name="Rain", user="u1"))
    assert renamed["name"] == "Rain"

    assert ok(chat_client.message_feedback(answer["message_id"], "like", "u1")) == {
        "result": "success"
    }
    messages = ok(chat_client.get_conversation_messages(user="u1", conversation_id=conversation_id))
    assert messages["data"][0]["feedback"] == {"rating": "like"}

    parameters = ok(chat_client.get_application_parameters(user="u1"))
    assert parameters["opening_statement"] == "Hi! Ask about Norway."


def test_chat_streaming_as_the_clients_readme_reads_it(chat_client: Any) -> None:
    response = chat_client.create_chat_message(
        inputs={}, query="Where does it rain?", user="u1", response_mode="streaming"
    )
    response.raise_for_status()
    events: list[dict[str, Any]] = []
    for line in response.iter_lines(decode_unicode=True):
        line = line.split("data:", 1)[-1]
        if line.strip():
            events.append(json.loads(line.strip()))

    assert "".join(e.get("answer", "") for e in events if e["event"] == "message") == ANSWER
    assert events[-1]["event"] == "message_end"


def test_completion_blocking_and_streaming(platform: WebServer) -> None:
    form = [{"paragraph": {"label": "Query", "variable": "query", "required": True}}]
    key = make_app_with_key(
        name="Writer",
        mode="completion",
        provider="scripted",
        provider_config={"text": ANSWER},
        user_input_form=form,
        system_prompt="{{query}}",
    )[1]
    client = pointed_at(CompletionClient(key), platform)

    answer = ok(
        client.create_completion_message(
            inputs={"query": "Which city is rainiest?"}, response_mode="blocking", user="u1"
        )
    )
    assert (answer["mode"], answer["answer"]) == ("completion", ANSWER)

    streamed = client.create_completion_message(
        inputs={"query": "Which city is rainiest?"}, response_mode="streaming", user="u1"
    )
    streamed.raise_for_status()
    lines = [line for line in streamed.iter_lines(decode_unicode=True) if line.startswith("data:")]
    events = [json.loads(line[5:]) for line in lines]
    assert "".join(e["answer"] for e in events if e["event"] == "message") == ANSWER


SUGGESTIONS = '["Is Oslo rainy too?", "When is it driest?"]'


def test_files_suggestions_feedback_site_and_end_users(platform: WebServer) -> None:
    """The routes this client has a method for, through it (upload, chat with files, feedback,
    parameters); the others through its own transport, `_send_request`, as its users call them."""
    app, key = make_app_with_key(
        name="Rain",
        provider="scripted",
        provider_config={"text": SUGGESTIONS},
        max_tokens=64,
        file_upload_enabled=True,
        file_upload_images=False,
        suggested_questions_after_answer=True,
        site_copyright="© Rain",
    )
    client = pointed_at(ChatClient(key), platform)
    notes = b"Bergen: 2,250 mm of rain a year.\n"

    upload = client.file_upload("u1", files={"file": ("rain.md", notes, "text/markdown")})
    assert upload.status_code == 201, upload.text
    uploaded = upload.json()
    assert (uploaded["name"], uploaded["size"], uploaded["mime_type"]) == (
        "rain.md",
        len(notes),
        "text/markdown",
    )
    preview = client._send_request("GET", f"/files/{uploaded['id']}/preview", params={"user": "u1"})
    assert (preview.status_code, preview.content) == (200, notes)
    assert preview.headers["Content-Type"] == "text/markdown"
    assert client._send_request(
        "GET", f"/files/{uploaded['id']}/preview", params={"user": "u2"}
    ).json() == {"code": "file_not_found", "message": "File Not Exists.", "status": 404}

    files = [
        {"type": "document", "transfer_method": "local_file", "upload_file_id": uploaded["id"]}
    ]
    answer = ok(client.create_chat_message(inputs={}, query="How wet?", user="u1", files=files))
    message_id = answer["message_id"]
    history = ok(
        client.get_conversation_messages(user="u1", conversation_id=answer["conversation_id"])
    )
    assert history["data"][0]["message_files"][0]["upload_file_id"] == uploaded["id"]

    suggested = ok(
        client._send_request("GET", f"/messages/{message_id}/suggested", params={"user": "u1"})
    )
    assert suggested == {"result": "success", "data": ["Is Oslo rainy too?", "When is it driest?"]}
    stranger = client._send_request(
        "GET", f"/messages/{message_id}/suggested", params={"user": "u2"}
    )
    assert (stranger.status_code, stranger.json()["code"]) == (404, "not_found")

    assert ok(client.message_feedback(message_id, "dislike", "u1")) == {"result": "success"}
    feedbacks = ok(client._send_request("GET", "/app/feedbacks", params={"page": 1, "limit": 5}))
    [feedback] = feedbacks["data"]
    assert (feedback["message_id"], feedback["rating"], feedback["from_source"]) == (
        message_id,
        "dislike",
        "user",
    )
    end_user = ok(client._send_request("GET", f"/end-users/{feedback['from_end_user_id']}"))
    assert end_user["external_user_id"] == "u1"
    assert end_user["id"] == uploaded["created_by"]
    assert client._send_request("GET", f"/end-users/{app.id}").status_code == 404

    site = ok(client._send_request("GET", "/site"))
    assert (site["title"], site["copyright"]) == ("Rain", "© Rain")
    parameters = ok(client.get_application_parameters(user="u1"))
    assert parameters["suggested_questions_after_answer"] == {"enabled": True}
    assert parameters["file_upload"]["allowed_file_upload_methods"] == ["local_file", "remote_url"]


def test_suggestions_are_refused_when_the_app_has_them_off(chat_client: Any) -> None:
    answer = ok(chat_client.create_chat_message(inputs={}, query="Rain?", user="u1"))
    refused = chat_client._send_request(
        "GET", f"/messages/{answer['message_id']}/suggested", params={"user": "u1"}
    )
    assert refused.status_code == 400
    assert refused.json() == {
        "code": "bad_request",
        "message": "Suggested questions feature is disabled.",
        "status": 400,
    }
