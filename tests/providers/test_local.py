"""The built-in model (SmolLM2 through xllamacpp), served by its own process as `make run` serves
it: real tokens, the app's generation settings honoured, the real tokenizer for counting."""

import asyncio
from typing import Any

import pytest
from django.conf import settings

from apps.providers.base import ChatMessage, GenerationRequest, GenerationResult, ProviderError
from tests.factories import builtin_provider

COUNT = [ChatMessage("user", "Count from 1 to 10, separated by commas.")]


def generate(
    messages: list[ChatMessage], *, stop_after: int = 0, **settings: Any
) -> tuple[list[str], GenerationResult]:
    pieces: list[str] = []

    def on_delta(piece: str) -> bool:
        pieces.append(piece)
        return 0 < stop_after <= len(pieces)

    request = GenerationRequest(messages=messages, model="SmolLM2-135M-Instruct", **settings)
    return pieces, asyncio.run(builtin_provider().generate(request, on_delta))


def test_real_tokens_with_the_models_own_usage() -> None:
    pieces, result = generate(COUNT, max_tokens=12, temperature=0)

    assert "".join(pieces).startswith("1, 2, 3")
    assert result.completion_tokens == len(pieces) == 12
    # The provider's prompt count and ours come from the same tokenizer and chat template.
    assert result.prompt_tokens == builtin_provider().count_prompt_tokens(COUNT)
    assert result.finish_reason == "length"


@pytest.mark.parametrize(("stop", "before"), [([","], "1"), (["3"], "1, 2, ")])
def test_stop_words_end_the_answer(stop: list[str], before: str) -> None:
    pieces, result = generate(COUNT, max_tokens=30, temperature=0, stop=stop)

    answer = "".join(pieces)
    assert answer == before
    assert result.finish_reason == "stop"
    assert result.completion_tokens is not None
    assert result.completion_tokens < 30


@pytest.mark.parametrize("max_tokens", [1, 5])
def test_max_tokens_caps_the_answer(max_tokens: int) -> None:
    pieces, result = generate(COUNT, max_tokens=max_tokens, temperature=0)

    assert result.completion_tokens is not None
    assert result.completion_tokens <= max_tokens
    assert 0 < len(pieces) <= max_tokens
    assert result.finish_reason == "length"


def test_stopping_keeps_what_was_generated() -> None:
    pieces, result = generate(COUNT, max_tokens=30, temperature=0, stop_after=3)

    assert len(pieces) == 3
    assert result.finish_reason == "user_stop"
    # The stream ended before the server's usage: the caller counts both sides, exactly.
    assert (result.prompt_tokens, result.completion_tokens) == (None, None)
    assert builtin_provider().count_text_tokens("".join(pieces)) == 3


def test_a_prompt_beyond_the_context_window_fails_without_retry() -> None:
    too_long = [ChatMessage("user", "word " * 3000)]
    context = settings.PLATFORM["LOCAL_MODEL_CONTEXT"]  # the test server's, per sequence
    assert builtin_provider().count_prompt_tokens(too_long) > context

    with pytest.raises(ProviderError) as failure:
        generate(too_long, max_tokens=4)
    assert failure.value.retryable is False
    assert failure.value.status == 400
    assert "context" in str(failure.value)


def test_text_is_counted_with_the_real_tokenizer() -> None:
    provider = builtin_provider()
    assert provider.count_text_tokens("") == 0
    assert provider.count_text_tokens("1, 2, 3") == 7  # digits, commas and spaces apiece
    with_history = [*COUNT, ChatMessage("assistant", "1, 2, 3"), ChatMessage("user", "More")]
    assert provider.count_prompt_tokens(with_history) > provider.count_prompt_tokens(COUNT) + 7
