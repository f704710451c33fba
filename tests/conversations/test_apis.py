"""The conversation-facing routes in-process: paging, scoping to (app, user), bad input, feedback
and the app's description. Live-server checks (naming through a worker) are in test_live.py."""

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from apps.applications.models import App
from apps.conversations.models import Conversation, Feedback, Message, MessageStatus
from tests.conversations.rows import make_conversation, make_message
from tests.factories import make_app, make_key

pytestmark = pytest.mark.django_db

FORM = [
    {"text-input": {"label": "City", "variable": "city", "required": True, "max_length": 40}},
    {"select": {"label": "Tone", "variable": "tone", "required": False, "options": ["dry", "fun"]}},
    {"paragraph": {"label": "Notes", "variable": "notes", "required": False}},
    {"number": {"label": "Days", "variable": "days", "required": False}},
]


class Api:
    """The Django test client with the app's key on every call."""

    def __init__(self, client: Client, key: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params, headers=self.headers)

    def send(self, method: str, path: str, body: Any) -> Any:
        raw = body if isinstance(body, bytes) else json.dumps(body)
        call = getattr(self.client, method.lower())
        return call(path, data=raw, content_type="application/json", headers=self.headers)


@pytest.fixture
def app() -> App:
    return make_app(opening_statement="Welcome! Ask me anything.", user_input_form=FORM)


@pytest.fixture
def api(client: Client, app: App) -> Api:
    return Api(client, make_key(app)[1])


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.content
    return response.json()


def assert_error(response: Any, status: int, code: str, message: str | None = None) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert body == {"code": code, "message": body["message"], "status": status}
    if message is not None:
        assert body["message"] == message


def ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["data"]]


# --- GET /v1/conversations ----------------------------------------------------------------------


def test_conversation_items_have_difys_fields(api: Api, app: App) -> None:
    conversation = make_conversation(
        app, name="Trip", created_s=10, updated_s=20, inputs={"city": "Oslo"}
    )
    body = ok(api.get("/v1/conversations", user="u1"))

    assert body == {
        "limit": 20,
        "has_more": False,
        "data": [
            {
                "id": str(conversation.id),
                "name": "Trip",
                "inputs": {"city": "Oslo"},
                "status": "normal",
                "introduction": "Welcome! Ask me anything.",
                "created_at": int(conversation.created_at.timestamp()),
                "updated_at": int(conversation.updated_at.timestamp()),
            }
        ],
    }
    assert body["data"][0]["updated_at"] - body["data"][0]["created_at"] == 10


def test_conversations_are_scoped_to_the_app_and_the_user(api: Api, app: App) -> None:
    mine = make_conversation(app, user="u1")
    make_conversation(app, user="u2")
    make_conversation(make_app(name="Other app"), user="u1")

    assert ids(ok(api.get("/v1/conversations", user="u1"))) == [str(mine.id)]
    assert ids(ok(api.get("/v1/conversations", user="nobody"))) == []


@pytest.mark.parametrize(
    ("sort_by", "expected"),
    [
        ("-updated_at", ["c", "a", "b"]),
        ("updated_at", ["b", "a", "c"]),
        ("-created_at", ["b", "c", "a"]),
        ("created_at", ["a", "c", "b"]),
        (None, ["c", "a", "b"]),  # Dify's default: most recently active first
    ],
)
def test_every_sort_order(api: Api, app: App, sort_by: str | None, expected: list[str]) -> None:
    rows = {
        "a": make_conversation(app, name="a", created_s=1, updated_s=50),
        "b": make_conversation(app, name="b", created_s=3, updated_s=10),
        "c": make_conversation(app, name="c", created_s=2, updated_s=90),
    }
    params = {"user": "u1"} if sort_by is None else {"user": "u1", "sort_by": sort_by}
    assert ids(ok(api.get("/v1/conversations", **params))) == [str(rows[n].id) for n in expected]


def test_paging_with_last_id_visits_every_conversation_once(api: Api, app: App) -> None:
    made = [make_conversation(app, created_s=i, updated_s=100 - i) for i in range(5)]
    # Two with the very same activity time: ties are ordered by id, never skipped or repeated.
    made += [make_conversation(app, created_s=7, updated_s=50) for _ in range(2)]

    for sort_by in ("-updated_at", "updated_at", "created_at", "-created_at"):
        seen: list[str] = []
        last_id = ""
        for _ in range(10):
            body = ok(
                api.get("/v1/conversations", user="u1", limit=2, sort_by=sort_by, last_id=last_id)
            )
            assert body["limit"] == 2
            seen += ids(body)
            if not body["has_more"]:
                break
            last_id = body["data"][-1]["id"]
        everything = ids(ok(api.get("/v1/conversations", user="u1", sort_by=sort_by, limit=100)))
        assert seen == everything
        assert sorted(seen) == sorted(str(c.id) for c in made)


def test_has_more_at_the_edges(api: Api, app: App) -> None:
    for i in range(3):
        make_conversation(app, created_s=i)

    one = ok(api.get("/v1/conversations", user="u1", limit=1))
    assert (len(one["data"]), one["has_more"], one["limit"]) == (1, True, 1)
    full = ok(api.get("/v1/conversations", user="u1", limit=3))
    assert (len(full["data"]), full["has_more"]) == (3, False)
    last = ok(api.get("/v1/conversations", user="u1", limit=2, last_id=one["data"][0]["id"]))
    assert (len(last["data"]), last["has_more"]) == (2, False)
    after_the_end = ok(api.get("/v1/conversations", user="u1", last_id=full["data"][-1]["id"]))
    assert (after_the_end["data"], after_the_end["has_more"]) == ([], False)
    assert ok(api.get("/v1/conversations", user="u1", limit=100))["limit"] == 100


def test_last_id_must_be_one_of_the_users_conversations(api: Api, app: App) -> None:
    strangers = make_conversation(app, user="u2")
    for last_id in (str(uuid.uuid4()), str(strangers.id)):
        assert_error(
            api.get("/v1/conversations", user="u1", last_id=last_id),
            404,
            "not_found",
            "Last Conversation Not Exists.",
        )
    assert_error(api.get("/v1/conversations", user="u1", last_id="nope"), 400, "invalid_param")


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "x"},
        {"limit": "-1"},
        {"limit": "2.5"},
        {"sort_by": "name"},
        {"sort_by": "updated"},
    ],
)
def test_bad_paging_arguments(api: Api, params: dict[str, str]) -> None:
    assert_error(api.get("/v1/conversations", user="u1", **params), 400, "invalid_param")


def test_user_is_required_everywhere(api: Api, app: App) -> None:
    conversation = make_conversation(app)
    message = make_message(conversation)
    missing = "Arg user must be provided."
    assert_error(api.get("/v1/conversations"), 400, "invalid_param", missing)
    assert_error(api.get("/v1/conversations", user=""), 400, "invalid_param", missing)
    assert_error(
        api.get("/v1/messages", conversation_id=str(conversation.id)), 400, "invalid_param", missing
    )
    path = f"/v1/conversations/{conversation.id}"
    assert_error(api.send("DELETE", path, {}), 400, "invalid_param", missing)
    assert_error(api.send("POST", f"{path}/name", {"name": "x"}), 400, "invalid_param", missing)
    assert_error(
        api.send("POST", f"/v1/messages/{message.id}/feedbacks", {"rating": "like"}),
        400,
        "invalid_param",
        missing,
    )
    assert_error(api.send("POST", f"{path}/name", {"name": "x", "user": 7}), 400, "invalid_param")
    assert Conversation.objects.get(id=conversation.id).name == "Chat"


def test_a_completion_app_has_no_conversations(client: Client) -> None:
    completion = make_app(name="Writer", mode="completion")
    api = Api(client, make_key(completion)[1])
    for response in (
        api.get("/v1/conversations", user="u1"),
        api.get("/v1/messages", user="u1", conversation_id=str(uuid.uuid4())),
        api.send("DELETE", f"/v1/conversations/{uuid.uuid4()}", {"user": "u1"}),
        api.send("POST", f"/v1/conversations/{uuid.uuid4()}/name", {"user": "u1", "name": "x"}),
    ):
        assert_error(response, 400, "not_chat_app")


def test_routes_refuse_a_missing_key_and_a_wrong_method(client: Client, api: Api) -> None:
    response = client.get("/v1/conversations", {"user": "u1"})
    assert_error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert_error(api.send("POST", "/v1/conversations", {"user": "u1"}), 405, "method_not_allowed")
    assert_error(api.send("PUT", "/v1/parameters", {}), 405, "method_not_allowed")


# --- DELETE /v1/conversations/{id} and POST /v1/conversations/{id}/name --------------------------


def test_delete_then_list(api: Api, app: App) -> None:
    keep, gone = make_conversation(app, created_s=1), make_conversation(app, created_s=2)
    message = make_message(gone)
    Feedback.objects.create(message=message, end_user="u1", rating="like")

    response = api.send("DELETE", f"/v1/conversations/{gone.id}", {"user": "u1"})
    assert response.status_code == 204
    assert response.content == b""
    assert ids(ok(api.get("/v1/conversations", user="u1"))) == [str(keep.id)]
    assert not Message.objects.filter(id=message.id).exists()
    assert not Feedback.objects.exists()
    assert_error(
        api.send("DELETE", f"/v1/conversations/{gone.id}", {"user": "u1"}),
        404,
        "not_found",
        "Conversation Not Exists.",
    )


@pytest.mark.parametrize("which", ["stranger", "unknown", "malformed"])
def test_delete_or_rename_what_is_not_yours_is_404(api: Api, app: App, which: str) -> None:
    strangers = make_conversation(app, user="u2", name="Theirs")
    target = {"stranger": str(strangers.id), "unknown": str(uuid.uuid4()), "malformed": "12%20x"}
    path = f"/v1/conversations/{target[which]}"
    for response in (
        api.send("DELETE", path, {"user": "u1"}),
        api.send("POST", f"{path}/name", {"user": "u1", "name": "Mine now"}),
    ):
        assert_error(response, 404, "not_found", "Conversation Not Exists.")
    strangers.refresh_from_db()
    assert strangers.name == "Theirs"


def test_rename_returns_the_renamed_conversation(api: Api, app: App) -> None:
    conversation = make_conversation(app, name="Old", created_s=0, updated_s=0)
    body = ok(
        api.send(
            "POST",
            f"/v1/conversations/{conversation.id}/name",
            {"name": "  Trip to Oslo ", "user": "u1", "auto_generate": False},
        )
    )

    assert body["id"] == str(conversation.id)
    assert body["name"] == "Trip to Oslo"
    assert body["status"] == "normal"
    assert body["introduction"] == "Welcome! Ask me anything."
    assert body["updated_at"] > int(conversation.updated_at.timestamp())
    listed = ok(api.get("/v1/conversations", user="u1"))["data"][0]
    assert listed == body


@pytest.mark.parametrize(
    "body",
    [
        {"user": "u1"},
        {"user": "u1", "name": "   "},
        {"user": "u1", "name": None},
        {"user": "u1", "name": "x" * 256},
        {"user": "u1", "name": 12},
        {"user": "u1", "name": "x", "auto_generate": "perhaps"},
    ],
)
def test_rename_refuses_a_bad_name(api: Api, app: App, body: dict[str, Any]) -> None:
    conversation = make_conversation(app, name="Old")
    path = f"/v1/conversations/{conversation.id}/name"
    assert_error(api.send("POST", path, body), 400, "invalid_param")
    assert_error(api.send("POST", path, b"{oops"), 400, "invalid_param")
    conversation.refresh_from_db()
    assert conversation.name == "Old"


def test_auto_generate_needs_a_message_to_name_from(api: Api, app: App) -> None:
    conversation = make_conversation(app, name="Old")
    response = api.send(
        "POST", f"/v1/conversations/{conversation.id}/name", {"user": "u1", "auto_generate": True}
    )
    assert_error(response, 400, "invalid_param")


# --- GET /v1/messages ----------------------------------------------------------------------------


def test_messages_newest_page_in_chronological_order_and_paging_back(api: Api, app: App) -> None:
    conversation = make_conversation(app)
    made = [make_message(conversation, query=f"q{i}", created_s=i) for i in range(5)]
    url = "/v1/messages"
    cid = str(conversation.id)

    newest = ok(api.get(url, user="u1", conversation_id=cid, limit=2))
    assert [m["query"] for m in newest["data"]] == ["q3", "q4"]
    assert (newest["limit"], newest["has_more"]) == (2, True)

    older = ok(api.get(url, user="u1", conversation_id=cid, limit=2, first_id=made[3].id))
    assert [m["query"] for m in older["data"]] == ["q1", "q2"]
    assert older["has_more"] is True

    oldest = ok(api.get(url, user="u1", conversation_id=cid, limit=2, first_id=made[1].id))
    assert ([m["query"] for m in oldest["data"]], oldest["has_more"]) == (["q0"], False)

    exactly = ok(api.get(url, user="u1", conversation_id=cid, limit=5))
    assert (len(exactly["data"]), exactly["has_more"]) == (5, False)
    default = ok(api.get(url, user="u1", conversation_id=cid))
    assert (default["limit"], [m["query"] for m in default["data"]]) == (
        20,
        [f"q{i}" for i in range(5)],
    )


def test_message_items_have_difys_fields(api: Api, app: App) -> None:
    conversation = make_conversation(app, inputs={"city": "Oslo"})
    message = make_message(
        conversation,
        query="Weather?",
        answer="Sunny.",
        inputs={"city": "Oslo"},
        prompt_tokens=7,
        completion_tokens=3,
        latency_s=0.4567,
        total_price=Decimal("0.0000425"),
        currency="EUR",
    )
    item = ok(api.get("/v1/messages", user="u1", conversation_id=str(conversation.id)))["data"][0]

    assert item == {
        "id": str(message.id),
        "conversation_id": str(conversation.id),
        "parent_message_id": None,
        "inputs": {"city": "Oslo"},
        "query": "Weather?",
        "answer": "Sunny.",
        "status": "normal",
        "error": None,
        "message_files": [],
        "feedback": None,
        "retriever_resources": [],
        "agent_thoughts": [],
        "extra_contents": [],
        "created_at": int(message.created_at.timestamp()),
        "message_tokens": 7,
        "answer_tokens": 3,
        "total_tokens": 10,
        "provider_response_latency": 0.457,
        "total_price": "0.0000425",
        "currency": "EUR",
    }


def test_message_status_in_difys_terms(api: Api, app: App) -> None:
    conversation = make_conversation(app)
    make_message(conversation, status=MessageStatus.NORMAL, created_s=1)
    make_message(conversation, status=MessageStatus.STOPPED, answer="Part", created_s=2)
    make_message(conversation, status=MessageStatus.ERROR, answer="", error="boom", created_s=3)
    make_message(conversation, status=MessageStatus.PENDING, answer="", created_s=4)

    data = ok(api.get("/v1/messages", user="u1", conversation_id=str(conversation.id)))["data"]
    assert [(m["status"], m["error"]) for m in data] == [
        ("normal", None),
        ("normal", None),
        ("error", "boom"),
        ("normal", None),
    ]


def test_messages_of_someone_elses_conversation_are_404(api: Api, app: App) -> None:
    strangers = make_conversation(app, user="u2")
    make_message(strangers)
    for conversation_id in (str(strangers.id), str(uuid.uuid4())):
        assert_error(
            api.get("/v1/messages", user="u1", conversation_id=conversation_id),
            404,
            "not_found",
            "Conversation Not Exists.",
        )


def test_messages_bad_arguments(api: Api, app: App) -> None:
    conversation = make_conversation(app)
    other = make_message(make_conversation(app))
    cid = str(conversation.id)
    assert_error(api.get("/v1/messages", user="u1"), 400, "invalid_param")
    assert_error(api.get("/v1/messages", user="u1", conversation_id="x"), 400, "invalid_param")
    for limit in ("0", "101", "x"):
        assert_error(
            api.get("/v1/messages", user="u1", conversation_id=cid, limit=limit),
            400,
            "invalid_param",
        )
    # first_id must be a message of this conversation.
    for first_id in (str(other.id), str(uuid.uuid4())):
        assert_error(
            api.get("/v1/messages", user="u1", conversation_id=cid, first_id=first_id),
            404,
            "not_found",
            "First Message Not Exists.",
        )


# --- POST /v1/messages/{id}/feedbacks ------------------------------------------------------------


def test_feedback_like_dislike_and_take_back(api: Api, app: App) -> None:
    conversation = make_conversation(app)
    message = make_message(conversation)
    path = f"/v1/messages/{message.id}/feedbacks"

    def shown() -> Any:
        data = ok(api.get("/v1/messages", user="u1", conversation_id=str(conversation.id)))
        return data["data"][0]["feedback"]

    assert ok(api.send("POST", path, {"rating": "like", "user": "u1", "content": "Nice"})) == {
        "result": "success"
    }
    assert shown() == {"rating": "like"}
    feedback = Feedback.objects.get(message=message)
    assert (feedback.rating, feedback.content, feedback.end_user) == ("like", "Nice", "u1")

    ok(api.send("POST", path, {"rating": "dislike", "user": "u1"}))
    assert shown() == {"rating": "dislike"}
    assert Feedback.objects.count() == 1

    ok(api.send("POST", path, {"rating": None, "user": "u1"}))
    assert shown() is None
    # Nothing left to take back: Dify answers 400.
    assert_error(api.send("POST", path, {"rating": None, "user": "u1"}), 400, "invalid_param")


def test_feedback_on_a_completion_message(client: Client) -> None:
    completion = make_app(name="Writer", mode="completion")
    api = Api(client, make_key(completion)[1])
    message = Message.objects.create(app=completion, end_user="u1", query="Write", answer="Done")
    ok(api.send("POST", f"/v1/messages/{message.id}/feedbacks", {"rating": "like", "user": "u1"}))
    assert Feedback.objects.get(message=message).rating == "like"


@pytest.mark.parametrize("which", ["stranger", "other app", "unknown", "malformed"])
def test_feedback_on_what_is_not_yours_is_404(api: Api, app: App, which: str) -> None:
    strangers = make_message(make_conversation(app, user="u2"))
    other_app = make_message(make_conversation(make_app(name="Other"), user="u1"))
    target = {
        "stranger": strangers.id,
        "other app": other_app.id,
        "unknown": uuid.uuid4(),
        "malformed": "not-a-uuid",
    }[which]
    response = api.send(
        "POST", f"/v1/messages/{target}/feedbacks", {"rating": "like", "user": "u1"}
    )
    assert_error(response, 404, "not_found", "Message Not Exists.")
    assert not Feedback.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"rating": "love", "user": "u1"},
        {"rating": 1, "user": "u1"},
        {"rating": "like", "user": "u1", "content": ["x"]},
    ],
)
def test_feedback_refuses_bad_values(api: Api, app: App, body: dict[str, Any]) -> None:
    message = make_message(make_conversation(app))
    response = api.send("POST", f"/v1/messages/{message.id}/feedbacks", body)
    assert_error(response, 400, "invalid_param")
    assert not Feedback.objects.exists()


# --- GET /v1/parameters, /v1/info, /v1/meta ------------------------------------------------------


def test_parameters_describe_the_app(api: Api, app: App) -> None:
    App.objects.filter(id=app.id).update(suggested_questions=["What can you do?"])
    body = ok(api.get("/v1/parameters", user="u1"))

    assert body["opening_statement"] == "Welcome! Ask me anything."
    assert body["suggested_questions"] == ["What can you do?"]
    assert body["user_input_form"] == FORM
    for feature in (
        "suggested_questions_after_answer",
        "speech_to_text",
        "text_to_speech",
        "retriever_resource",
        "annotation_reply",
        "more_like_this",
        "sensitive_word_avoidance",
    ):
        assert body[feature] == {"enabled": False}, feature
    # An app takes no files until its operator turns file upload on.
    assert body["file_upload"]["enabled"] is False
    assert body["file_upload"]["image"]["enabled"] is False
    assert body["system_parameters"] == {
        "file_size_limit": 15,
        "image_file_size_limit": 10,
        "audio_file_size_limit": 0,
        "video_file_size_limit": 0,
        "workflow_file_upload_limit": 3,
    }
    assert ok(api.get("/v1/parameters")) == body  # user is optional here, as in Dify


def test_parameters_report_the_apps_files_and_suggestions(api: Api, app: App) -> None:
    App.objects.filter(id=app.id).update(
        file_upload_enabled=True,
        vision_enabled=True,
        file_upload_extensions=".png .pdf",
        file_upload_remote=False,
        file_upload_number_limit=5,
        file_image_size_limit_mb=4,
        image_detail="low",
        suggested_questions_after_answer=True,
    )
    body = ok(api.get("/v1/parameters", user="u1"))

    assert body["suggested_questions_after_answer"] == {"enabled": True}
    assert body["file_upload"] == {
        "enabled": True,
        "allowed_file_types": ["image", "document"],
        "allowed_file_extensions": [".pdf", ".png"],
        "allowed_file_upload_methods": ["local_file"],
        "number_limits": 5,
        "image": {
            "enabled": True,
            "number_limits": 5,
            "detail": "low",
            "transfer_methods": ["local_file"],
        },
    }
    assert body["system_parameters"]["image_file_size_limit"] == 4


def test_info_and_meta(api: Api, app: App) -> None:
    App.objects.filter(id=app.id).update(
        description="Answers travel questions.", tags=["travel"], author_name="Ops"
    )
    assert ok(api.get("/v1/info", user="u1")) == {
        "name": "Test app",
        "description": "Answers travel questions.",
        "tags": ["travel"],
        "mode": "chat",
        "author_name": "Ops",
    }
    assert ok(api.get("/v1/meta", user="u1")) == {"tool_icons": {}}


def test_a_disabled_app_is_forbidden(api: Api, app: App) -> None:
    App.objects.filter(id=app.id).update(enabled=False)
    assert_error(api.get("/v1/info"), 403, "forbidden")
    assert_error(api.get("/v1/conversations", user="u1"), 403, "forbidden")
