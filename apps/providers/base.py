"""The provider interface: stream text for a chat, report usage, and say whether a failure is worth
another attempt. Providers know nothing about Django: they get plain values and return plain values.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# Called with each new piece of text; returns True to stop generating (the user pressed stop).
OnDelta = Callable[[str], bool]


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


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
    timeout_s: float | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationResult:
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length" | "user_stop"


class ProviderError(Exception):
    """A provider failed. `retryable` tells the scheduler whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class Provider(Protocol):
    """A model client. `generate` blocks until the answer is complete or `on_delta` asks to stop."""

    name: str

    def generate(self, request: GenerationRequest, on_delta: OnDelta) -> GenerationResult: ...
