"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp's server) through the official SDK.

provider_config keys: `base_url` (required for anything but OpenAI), `api_key_env` (the name of the
environment variable holding the key; the key itself is never stored), `timeout_s`.
"""

import os
from typing import Any

import openai

from apps.providers.base import GenerationRequest, GenerationResult, OnDelta, ProviderError

DEFAULT_TIMEOUT_S = 60.0


def _error_from(exc: openai.OpenAIError) -> ProviderError:
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(f"provider timed out: {exc}", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(f"provider unreachable: {exc}", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        # 408, 409 (lock contention), 429 and 5xx may pass; other 4xx will fail the same way again.
        retryable = status in (408, 409, 429) or status >= 500
        return ProviderError(
            f"provider answered {status}: {exc.message}", retryable=retryable, status=status
        )
    return ProviderError(f"provider error: {exc}", retryable=True)


class OpenAICompatibleProvider:
    """Provider for OpenAI-compatible chat completion servers."""

    name = "openai"

    def __init__(self, config: dict[str, Any]) -> None:
        api_key_env = str(config.get("api_key_env") or "OPENAI_API_KEY")
        self.client = openai.OpenAI(
            base_url=config.get("base_url") or None,
            # Local servers (vLLM, Ollama, llama.cpp) accept any key; the SDK insists on one.
            api_key=os.environ.get(api_key_env) or "not-needed",
            timeout=float(config.get("timeout_s") or DEFAULT_TIMEOUT_S),
            # The scheduler owns retries (with backoff, jitter and a budget kept in PostgreSQL).
            max_retries=0,
        )

    def generate(self, request: GenerationRequest, on_delta: OnDelta) -> GenerationResult:
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.stop:
            params["stop"] = request.stop
        if request.timeout_s is not None:
            params["timeout"] = max(1.0, request.timeout_s)
        pieces, finish, usage = 0, "stop", None
        try:
            stream = self.client.chat.completions.create(**params)
            try:
                for chunk in stream:
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices:
                        if choice.finish_reason:
                            finish = choice.finish_reason
                        text = choice.delta.content if choice.delta else None
                        if not text:
                            continue
                        pieces += 1
                        if on_delta(text):
                            return GenerationResult(0, pieces, "user_stop")
            finally:
                stream.close()
        except openai.OpenAIError as exc:
            raise _error_from(exc) from exc
        return GenerationResult(
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else pieces,
            finish_reason=finish,
        )
