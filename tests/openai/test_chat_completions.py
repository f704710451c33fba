"""The official `openai` Python SDK, unchanged, pointed at our live server: chat completions
blocking and streaming (with usage), the request's own settings reaching the model, errors in
OpenAI's envelope, and the same pipeline as the Dify routes (tasks, messages, idempotency)."""

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from apps.conversations.models import Message
from apps.scheduling.models import Task
from tests.factories import make_app_with_key, model_of
from tests.files.servers import ChatServer
from tests.processes import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ANSWER = "Bergen is the rainiest city in Norway."


@pytest.fixture
def platform(live_web: WebServer, live_worker: object) -> WebServer:
    return live_web


def sdk(platform: WebServer, key: str, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{platform.url}/v1", api_key=key, max_retries=0, **options)


@pytest.fixture
def scripted(platform: WebServer) -> tuple[openai.OpenAI, str]:
    app, key = make_app_with_key(
        provider_config={"text": ANSWER}, model_name="smol-scripted", max_tokens=64
    )
    return sdk(platform, key), model_of(app)


@pytest.fixture
def model() -> Iterator[ChatServer]:
    with ChatServer(answer="Sunny.") as server:
        yield server


def test_blocking_completion_with_usage(scripted: tuple[openai.OpenAI, str]) -> None:
    client, model_name = scripted
    completion = client.chat.completions.create(
        model=model_name,
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Which city?"},
            {"role": "assistant", "content": "In Norway?"},
            {"role": "user", "content": "Yes, the rainiest."},
        ],
        user="u1",
    )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == model_name
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == ANSWER
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )

    # Recorded like any answer: a task on the queues, a message the operator sees.
    message = Message.objects.get(answer=ANSWER)
    assert message.end_user == "u1"
    assert message.conversation_id is None
    assert message.query == "Yes, the rainiest."
    assert message.history == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Which city?"},
        {"role": "assistant", "content": "In Norway?"},
    ]
    assert message.finish_reason == "stop"
    assert message.task is not None
    assert message.task.status == "succeeded"


def test_streaming_completion_with_usage(scripted: tuple[openai.OpenAI, str]) -> None:
    client, model_name = scripted
    stream = client.chat.completions.create(
        model=model_name,
        messages=[{"role": "user", "content": "Which city?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == ANSWER
    assert len([chunk for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]) > 1
    finishing = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert [chunk.choices[0].finish_reason for chunk in finishing] == ["stop"]
    usage = chunks[-1]
    assert usage.choices == []
    assert usage.usage is not None
    assert usage.usage.completion_tokens > 0


def test_a_max_tokens_cut_says_length(scripted: tuple[openai.OpenAI, str]) -> None:
    client, model_name = scripted
    completion = client.chat.completions.create(
        model=model_name, messages=[{"role": "user", "content": "Which city?"}], max_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


def test_the_requests_settings_and_turns_reach_the_model(
    platform: WebServer, model: ChatServer
) -> None:
    _, key = make_app_with_key(
        provider="openai",
        provider_config={"base_url": model.url},
        model_name="remote-model",
        system_prompt="You are the weather desk.",
        stop=["\n\n"],
    )
    completion = sdk(platform, key).chat.completions.create(
        model="remote-model",
        messages=[
            {"role": "developer", "content": "Use Celsius."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
        ],
        temperature=0.2,
        top_p=0.5,
        max_completion_tokens=7,
        stop=["END"],
        seed=42,
        presence_penalty=0.5,
    )
    assert completion.choices[0].message.content == "Sunny."
    [sent] = model.requests
    assert sent["model"] == "remote-model"
    assert sent["messages"] == [
        {"role": "system", "content": "You are the weather desk."},
        {"role": "system", "content": "Use Celsius."},
        {"role": "user", "content": "Weather in Oslo?"},
    ]
    assert sent["temperature"] == 0.2
    assert sent["top_p"] == 0.5
    assert sent["max_tokens"] == 7
    assert sent["stop"] == ["END"]
    assert sent["seed"] == 42
    assert sent["presence_penalty"] == 0.5


def test_models_lists_the_apps_model(scripted: tuple[openai.OpenAI, str]) -> None:
    client, model_name = scripted
    assert [model.id for model in client.models.list()] == [model_name]
    assert client.models.retrieve(model_name).id == model_name
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("gpt-4o")
    assert missing.value.code == "model_not_found"


def test_errors_in_openais_envelope(
    platform: WebServer, scripted: tuple[openai.OpenAI, str]
) -> None:
    client, model_name = scripted
    one: Any = [{"role": "user", "content": "Hi"}]

    with pytest.raises(openai.NotFoundError) as wrong_model:
        client.chat.completions.create(model="gpt-4o", messages=one)
    assert wrong_model.value.code == "model_not_found"
    assert "gpt-4o" in wrong_model.value.message

    with pytest.raises(openai.AuthenticationError) as bad_key:
        sdk(platform, "app-not-a-key").chat.completions.create(model=model_name, messages=one)
    assert bad_key.value.code == "invalid_api_key"

    with pytest.raises(openai.BadRequestError) as several:
        client.chat.completions.create(model=model_name, messages=one, n=2)
    assert several.value.code == "unsupported_parameter"
    assert several.value.param == "n"

    with pytest.raises(openai.BadRequestError) as tools:
        client.chat.completions.create(
            model=model_name,
            messages=one,
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    assert tools.value.param == "tools"

    with pytest.raises(openai.BadRequestError) as last:
        client.chat.completions.create(
            model=model_name, messages=[{"role": "assistant", "content": "Hi"}]
        )
    assert last.value.param == "messages[0].role"

    with pytest.raises(openai.BadRequestError) as hot:
        client.chat.completions.create(model=model_name, messages=one, temperature=3)
    assert hot.value.param == "temperature"

    raw = httpx.post(
        f"{platform.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {client.api_key}"},
        json={"model": model_name, "messages": one, "frobnicate": True},
    )
    assert raw.status_code == 400
    assert raw.json() == {
        "error": {
            "message": "Unrecognized request argument supplied: frobnicate",
            "type": "invalid_request_error",
            "param": "frobnicate",
            "code": None,
        }
    }
    broken = httpx.post(
        f"{platform.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {client.api_key}"},
        content=b'{"model": ',
    )
    assert broken.status_code == 400
    assert broken.json()["error"]["type"] == "invalid_request_error"


def test_a_provider_failure_is_an_error_object(platform: WebServer) -> None:
    app, key = make_app_with_key(provider_config={"permanent_error": "model refused"})
    client = sdk(platform, key)
    with pytest.raises(openai.BadRequestError) as blocking:
        client.chat.completions.create(
            model=model_of(app), messages=[{"role": "user", "content": "Hi"}]
        )
    assert "model refused" in blocking.value.message

    stream = client.chat.completions.create(
        model=model_of(app), messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    with pytest.raises(openai.APIError) as streamed:
        list(stream)
    assert "model refused" in streamed.value.message


def test_an_idempotency_key_replays_the_first_answer(scripted: tuple[openai.OpenAI, str]) -> None:
    client, model_name = scripted
    asked: Any = {"model": model_name, "messages": [{"role": "user", "content": "Once?"}]}
    headers = {"Idempotency-Key": "order-77"}
    first = client.chat.completions.with_raw_response.create(**asked, extra_headers=headers)
    again = client.chat.completions.with_raw_response.create(**asked, extra_headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.parse().id == first.parse().id
    assert again.parse().choices[0].message.content == ANSWER
    assert Task.objects.filter(idempotency_key="order-77").count() == 1

    streamed = client.chat.completions.create(**asked, stream=True, extra_headers=headers)
    chunks = list(streamed)
    assert {chunk.id for chunk in chunks} == {first.parse().id}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER


def test_priority_from_the_body_a_header_or_the_service_tier(
    scripted: tuple[openai.OpenAI, str],
) -> None:
    client, model_name = scripted
    one: Any = [{"role": "user", "content": "Hi"}]
    client.chat.completions.create(model=model_name, messages=one, extra_body={"priority": "low"})
    client.chat.completions.create(
        model=model_name, messages=one, extra_headers={"X-Priority": "high"}
    )
    client.chat.completions.create(model=model_name, messages=one, service_tier="flex")
    priorities = list(Task.objects.order_by("created_at").values_list("priority", flat=True))
    assert priorities[:3] == ["low", "high", "low"]
