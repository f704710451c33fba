"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp's server) through the official SDK.

provider_config keys: `base_url` (required for anything but OpenAI), `api_key_env` (the name of the
environment variable holding the key, default OPENAI_API_KEY; the key itself is never stored),
`timeout_s` (the longest wait for the server's next bytes, default 60).
"""

import os
from typing import Any

import httpx2
import openai

from apps.providers.base import (
    ChatMessage,
    GenerationRequest,
    GenerationResult,
    OnDelta,
    ProviderError,
)
from apps.providers.tokens import prompt_tokens_estimate, text_tokens_estimate

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
# A request never gets less than this, even with its task's deadline about to pass (the
# scheduler expires the task on its own).
MIN_TIMEOUT_S = 1.0
# Retrying may fix these: a timeout (408), lock contention (409), a rate limit (429), and 5xx.
RETRYABLE_STATUSES = frozenset({408, 409, 429})


def provider_error(exc: Exception) -> ProviderError:
    """Our error for the SDK's (or, mid-stream, its HTTP client.s): can another attempt succeed?"""
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return ProviderError(
            f"provider timed out: {exc}", retryable=True, code="completion_request_error"
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retryable = status in RETRYABLE_STATUSES or status >= 500
        return ProviderError(
            f"provider answered {status}: {exc.message}",
            retryable=retryable,
            status=status,
            code="rate_limit_error" if status == 429 else "completion_request_error",
        )
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return ProviderError(
            f"provider unreachable: {exc}", retryable=True, code="completion_request_error"
        )
    # An error event in the middle of a stream, or an answer the SDK could not read.
    return ProviderError(f"provider error: {exc}", retryable=True, code="completion_request_error")


def api_key_for(config: dict[str, Any]) -> str:
    """The key from the environment variable the app names. Local servers (vLLM, Ollama,
    llama.cpp) accept any key, but the SDK insists on one."""
    return os.environ.get(str(config.get("api_key_env") or DEFAULT_KEY_ENV)) or "not-needed"


class OpenAICompatibleProvider:
    """Provider for OpenAI-compatible chat completion servers. One instance (and one connection
    pool) per distinct configuration in a process: see apps.providers.registry."""

    name = "openai"

    def __init__(self, config: dict[str, Any]) -> None:
        self.timeout_s = float(config.get("timeout_s") or DEFAULT_TIMEOUT_S)
        self.client = openai.OpenAI(
            base_url=config.get("base_url") or None,
            api_key=api_key_for(config),
            timeout=self.timeout_s,
            # The scheduler owns retries (with backoff, jitter and a budget kept in PostgreSQL).
            max_retries=0,
        )

    def context_window(self) -> int | None:
        return None  # the app says (App.context_window): the server does not tell

    def count_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        return prompt_tokens_estimate(messages)

    def count_text_tokens(self, text: str) -> int:
        return text_tokens_estimate(text)

    def _timeout(self, request: GenerationRequest) -> float:
        if request.timeout_s is None:
            return self.timeout_s
        return max(MIN_TIMEOUT_S, min(self.timeout_s, request.timeout_s))

    def generate(self, request: GenerationRequest, on_delta: OnDelta) -> GenerationResult:
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
            "timeout": self._timeout(request),
        }
        if request.stop:
            params["stop"] = request.stop
        try:
            return self._stream(params, on_delta)
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            raise provider_error(exc) from exc

    def _stream(self, params: dict[str, Any], on_delta: OnDelta) -> GenerationResult:
        finish, usage = "stop", None
        stream = self.client.chat.completions.create(**params)
        try:
            for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.finish_reason:
                        finish = choice.finish_reason
                    text = choice.delta.content if choice.delta else None
                    if text and on_delta(text):
                        # Stopped before the usage chunk: the caller counts both sides.
                        return GenerationResult(None, None, "user_stop")
        finally:
            stream.close()
        return GenerationResult(
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            finish_reason=finish,
        )
