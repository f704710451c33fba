"""The prompt within the model's context window: a long conversation keeps its newest turns and
drops the oldest, the instructions and the question always stay, and everything fits."""

import asyncio

import pytest

from apps.applications.models import App
from apps.conversations.models import Conversation, Message, MessageStatus
from apps.generation.prompts import Prompt, prompt_build
from apps.providers.base import ChatMessage, GenerationRequest, Provider
from apps.providers.scripted import ScriptedProvider
from apps.scheduling.models import TaskStatus
from tests.factories import app_deployment, builtin_provider, make_app, model_of
from tests.generation.tasks import events, message_of, run, submit_to

pytestmark = pytest.mark.django_db(transaction=True)

TURNS = 40


def long_conversation(app: App, turns: int = TURNS) -> Conversation:
    conversation = Conversation.objects.create(app=app, end_user="u1", inputs={"city": "Lyon"})
    for number in range(turns):
        Message.objects.create(
            app=app,
            conversation=conversation,
            end_user="u1",
            query=f"Question {number}: what should I see on day {number} of my trip to Lyon?",
            answer=f"Answer {number}: visit the old town, the river banks and a market, then "
            f"have dinner in a bouchon near the Saône on day {number}.",
            status=MessageStatus.NORMAL,
        )
    return conversation


def question_in(conversation: Conversation, query: str = "And on the last day?") -> Message:
    app = conversation.app
    task = submit_to(app, query, conversation_id=str(conversation.id))
    return message_of(task)


def built(app: App, message: Message, provider: Provider) -> Prompt:
    return prompt_build(
        app=app,
        message=message,
        count=provider.count_prompt_tokens,
        context_tokens=app_deployment(app).context_window,
    )


def assert_trimmed(
    prompt: Prompt, app: App, provider: Provider, context: int, *, system: str
) -> None:
    messages = prompt.messages
    # The instructions (rendered with the conversation's inputs) first, the question last.
    assert messages[0] == ChatMessage("system", system)
    assert messages[-1] == ChatMessage("user", "And on the last day?")
    kept = prompt.history_turns
    assert 0 < kept < TURNS
    assert prompt.history_dropped == TURNS - kept
    # The newest turns, in order, in user/assistant pairs.
    expected: list[ChatMessage] = []
    for number in range(TURNS - kept, TURNS):
        expected.append(ChatMessage("user", f"Question {number}: " + _question_tail(number)))
        expected.append(ChatMessage("assistant", f"Answer {number}: " + _answer_tail(number)))
    assert messages[1:-1] == expected
    # Everything fits, and one more turn would not have.
    assert provider.count_prompt_tokens(messages) == prompt.prompt_tokens
    assert prompt.prompt_tokens + app.max_tokens <= context
    older = TURNS - kept - 1
    one_more = [
        messages[0],
        ChatMessage("user", f"Question {older}: " + _question_tail(older)),
        ChatMessage("assistant", f"Answer {older}: " + _answer_tail(older)),
        *messages[1:],
    ]
    assert provider.count_prompt_tokens(one_more) + app.max_tokens > context


def _question_tail(number: int) -> str:
    return f"what should I see on day {number} of my trip to Lyon?"


def _answer_tail(number: int) -> str:
    return (
        "visit the old town, the river banks and a market, then have dinner in a bouchon near "
        f"the Saône on day {number}."
    )


def test_a_long_conversation_keeps_its_newest_turns_within_the_apps_window() -> None:
    app = make_app(system_prompt="You plan trips to {{city}}.", context_window=1000, max_tokens=100)
    message = question_in(long_conversation(app))
    provider = ScriptedProvider({})

    prompt = built(app, message, provider)

    assert_trimmed(prompt, app, provider, 1000, system="You plan trips to Lyon.")
    assert prompt.max_tokens == 100


def test_the_built_in_model_is_trimmed_with_its_real_tokenizer() -> None:
    # A small window, so a long conversation overflows it quickly.
    app = make_app(
        provider="local",
        provider_config={},
        context_window=512,
        system_prompt="You plan trips to {{city}}.",
        max_tokens=8,
        temperature=0,
    )
    message = question_in(long_conversation(app))
    provider = builtin_provider()

    prompt = built(app, message, provider)
    assert_trimmed(prompt, app, provider, 512, system="You plan trips to Lyon.")

    # The model itself reads exactly as many prompt tokens as were counted.
    request = GenerationRequest(
        messages=prompt.messages, model=model_of(app), max_tokens=8, temperature=0
    )
    result = asyncio.run(provider.generate(request, lambda piece: False))
    assert result.prompt_tokens == prompt.prompt_tokens


def test_a_question_too_long_for_the_window_fails_with_a_clear_error() -> None:
    app = make_app(context_window=64, provider_config={"text": "never"})
    task = run(submit_to(app, "Please read this. " * 40))

    assert (task.status, task.attempts) == (TaskStatus.FAILED, 1)
    last = events(task)[-1]
    assert (last["status"], last["code"]) == (400, "completion_request_error")
    assert "context window is 64" in last["message"]


def test_the_answer_gets_what_the_window_has_left() -> None:
    app = make_app(context_window=200, max_tokens=190, provider_config={"text": "ok"})
    message = question_in(long_conversation(app, turns=3), "Short question?")
    provider = ScriptedProvider({})

    prompt = built(app, message, provider)

    assert prompt.history_turns == 0
    assert prompt.max_tokens == 200 - prompt.prompt_tokens < 190


def test_a_completion_app_joins_instructions_and_query() -> None:
    app = make_app(
        mode="completion",
        system_prompt="Translate to {{language}}:",
        user_input_form=[{"text-input": {"label": "Language", "variable": "language"}}],
    )
    task = submit_to(app, "Good morning", inputs={"language": "French"})
    prompt = built(app, message_of(task), ScriptedProvider({}))

    assert prompt.messages == [ChatMessage("user", "Translate to French:\n\nGood morning")]
    assert prompt.history_turns == 0
