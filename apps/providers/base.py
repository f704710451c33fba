"""The provider interface: stream text for a chat, count tokens, report usage, and say whether a
failure is worth another attempt. Providers know nothing about Django: they get plain values and
return plain values.

Generation is a coroutine: a worker process runs many answers at once on one event loop, so a
provider never blocks it. Remote providers wait on sockets; the built-in model runs each sequence
in a thread of its own (llama.cpp computes outside the GIL) and hands its pieces to the loop.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# Called on the event loop with each new piece of text; returns True to stop generating (the user
# pressed stop, the deadline passed, or the attempt lost its lease). Never blocks.
OnDelta = Callable[[str], bool]


@dataclass(frozen=True)
class ImagePart:
    """An image shown to a vision model with a message: a `data:` URL (the bytes themselves, so
    the model server needs no access to our storage) and how closely to look at it."""

    url: str
    detail: str = "auto"  # "low" | "high" | "auto", as OpenAI's image_url parts take it


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str
    # Images with the text (a user's message to a vision model); providers that read no images
    # refuse a message that has some rather than drop them.
    images: tuple[ImagePart, ...] = ()


@dataclass(frozen=True)
class GenerationRequest:
    messages: list[ChatMessage]
    model: str
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    stop: list[str] = field(default_factory=list)
    # Which attempt this is (1-based): lets the scripted provider fail the first N on purpose.
    attempt: int = 1
    # The most this attempt may take (the task's time left); None: the provider's own timeout.
    timeout_s: float | None = None
    # Further settings in OpenAI's names (seed, presence_penalty, frequency_penalty), passed on
    # by the providers whose models take them.
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationResult:
    """How a generation ended. A token count is None when the provider did not report it (a
    stream cut short, a server that sends no usage): the caller counts it instead."""

    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str  # "stop" | "length" | "user_stop" | the provider's own reason


class ProviderError(Exception):
    """A provider failed. `retryable` tells the scheduler whether another attempt may succeed;
    `code` is the API error code a client sees if this is the last attempt (None: the
    platform's default for the kind of failure). `server_fault`: the server failed (it could
    not be reached, timed out, answered 5xx or 429), not the request; `unreachable`: it could not be
    reached or cut the answer off (connection refused or reset); `retry_after_s`: how long it
    asked to be left alone (a 429's Retry-After)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        code: str | None = None,
        server_fault: bool = False,
        unreachable: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.code = code
        self.server_fault = server_fault or unreachable
        self.unreachable = unreachable
        self.retry_after_s = retry_after_s


class Provider(Protocol):
    """A model client. `generate` returns when the answer is complete or `on_delta` asks to stop;
    cancelling it stops the generation (the connection to the model is closed).

    Token counts are the model's own where the provider can ask its tokenizer, otherwise a
    calibrated estimate (apps.providers.tokens).
    """

    name: str

    async def generate(self, request: GenerationRequest, on_delta: OnDelta) -> GenerationResult: ...

    def count_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        """Tokens the model will read for these messages, chat template included."""
        ...

    def count_text_tokens(self, text: str) -> int:
        """Tokens of a piece of generated text."""
        ...

    def context_window(self) -> int | None:
        """The model's context size in tokens if the provider knows it (the built-in model);
        None when the app's setting decides."""
        ...
