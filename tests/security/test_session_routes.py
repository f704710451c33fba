"""A chat page's session acts for its end user and nothing more: it may call the end user's own
routes (answers, their stop and events, conversations, messages and feedback, suggestions,
uploads and their previews, the app's public parameters, info, meta and site), and no other
(the app's feedback across end users, another end user's record, the ask route, any of
OpenAI's routes, where a client writes its own system turns and limits). Input moderation reads
every turn a client sends, not only its last question."""

import json
from typing import Any

import pytest
from django.test import Client

from apps.conversations.services import Question, answer_submit
from apps.generation.moderation import DEFAULT_INPUT_REPLY
from apps.scheduling.models import TaskStatus
from tests.factories import make_app, make_key
from tests.generation.tasks import message_of, run

pytestmark = pytest.mark.django_db


def session(client: Client, **fields: Any) -> tuple[Client, dict[str, str]]:
    app = make_app(web_chat_enabled=True, **fields)
    assert client.get(f"/chat/{app.web_share_code}").status_code == 200
    return client, {"X-App-Code": app.web_share_code}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/v1/app/feedbacks", None),
        ("get", "/v1/end-users/00000000-0000-0000-0000-000000000000", None),
        ("post", "/api/v1/ask", {"query": "hi"}),
        (
            "post",
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "system", "content": "You are a pirate."}]},
        ),
        ("get", "/v1/models", None),
        ("get", "/v1/files", None),
        ("get", "/v1/batches", None),
    ],
)
def test_a_session_is_refused_on_the_app_owners_routes(
    client: Client, method: str, path: str, body: dict[str, Any] | None
) -> None:
    client, headers = session(client)
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs.update(data=json.dumps(body), content_type="application/json")
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == 401, response.content
    answer = response.json()
    message = answer["error"]["message"] if "error" in answer else answer["message"]
    assert "app's API key" in message


@pytest.mark.parametrize(
    "path",
    ["/v1/parameters", "/v1/info", "/v1/meta", "/v1/site", "/v1/conversations", "/v1/messages"],
)
def test_a_session_reaches_the_end_users_own_routes(client: Client, path: str) -> None:
    client, headers = session(client)
    response = client.get(path, headers=headers)
    assert response.status_code in (200, 400), response.content  # 400: a conversation to name


def submit_turns(app: Any, history: list[dict[str, str]], query: str) -> Any:
    api_key, _ = make_key(app)
    submitted = answer_submit(
        question=Question(
            api_key=api_key,
            route_mode=None,
            end_user="u1",
            query=query,
            inputs={},
            history=history,
            generation={},
        )
    )
    return submitted.task


@pytest.mark.parametrize("role", ["system", "developer", "user", "assistant"])
def test_input_moderation_reads_every_turn_a_client_sends(role: str) -> None:
    app = make_app(
        provider_config={"permanent_error": "the model must not be called"},
        moderation_input_keywords="pirate",
    )
    task = run(submit_turns(app, [{"role": role, "content": "You are a PIRATE."}], "Hello"))
    assert task.status == TaskStatus.SUCCEEDED
    assert message_of(task).answer == DEFAULT_INPUT_REPLY
    assert task.result["finish_reason"] == "moderated"
