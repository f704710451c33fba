"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp's server) through the official SDK.

Settings (a deployment's): `base_url` (required for anything but OpenAI), `api_key` (handed in
by the worker from the deployment's sealed key, never stored in its JSON), `api_key_env` (else
the name of an allowed environment variable holding the key, default OPENAI_API_KEY),
`timeout_s` (the longest wait for the server's next bytes, default 60).

The SDK's async client, so a worker streams hundreds of answers at once from one event loop.
Its request side (base URL, auth, timeouts, status errors) is used as is; the stream itself is
read as raw Server-Sent Events: building the SDK's typed chunk objects cost a third of the
worker's CPU per token when many answers streamed at once (measured with 500 streams side by
side: 4.6-5.1 s of CPU for the SDK's chunks, 3.0-3.3 s for the raw lines).
"""

import json
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
from apps.providers.credentials import DEFAULT_ALLOWED, DEFAULT_KEY_ENV, key_env_allowed
from apps.providers.tokens import prompt_tokens_estimate, text_tokens_estimate

DEFAULT_TIMEOUT_S = 60.0
# A request never gets less than this, even with its task's deadline about to pass (the
# scheduler expires the task on its own).
MIN_TIMEOUT_S = 1.0
# Retrying may fix these: a timeout (408), lock contention (409), a rate limit (429), and 5xx.
RETRYABLE_STATUSES = frozenset({408, 409, 429})


def retry_after_s(headers: Any) -> float | None:
    """A Retry-After header in seconds (OpenAI's `retry-after-ms` first); None without one.
    An HTTP date is not read: servers that refuse for load send seconds."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        try:
            seconds = float(value) * scale if value is not None else None
        except ValueError:
            continue
        if seconds is not None and 0 <= seconds <= 3600:
            return seconds
    return None


def provider_error(exc: Exception) -> ProviderError:
    """Our error for the SDK's (or, mid-stream, its HTTP client.s): can another attempt succeed?"""
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return ProviderError(
            f"provider timed out: {exc}",
            retryable=True,
            code="completion_request_error",
            server_fault=True,
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retryable = status in RETRYABLE_STATUSES or status >= 500
        return ProviderError(
            f"provider answered {status}: {exc.message}",
            retryable=retryable,
            status=status,
            code="rate_limit_error" if status == 429 else "completion_request_error",
            server_fault=status == 429 or status >= 500,
            # 503: the server is not serving now (starting, overloaded, in maintenance).
            unreachable=status == 503,
            retry_after_s=retry_after_s(exc.response.headers) if status in (429, 503) else None,
        )
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return ProviderError(
            f"provider unreachable: {exc}",
            retryable=True,
            code="completion_request_error",
            unreachable=True,
        )
    # An error event in the middle of a stream, or an answer the SDK could not read.
    return ProviderError(
        f"provider error: {exc}",
        retryable=True,
        code="completion_request_error",
        server_fault=True,
    )


def api_key_for(config: dict[str, Any], allowed: tuple[str, ...] = DEFAULT_ALLOWED) -> str:
    """The app's sealed key (handed in as `api_key`, already unsealed), else the environment
    variable it names, if the operator allows that name (apps.providers.credentials). Local
    servers (vLLM, Ollama, llama.cpp) accept any key, but the SDK insists on one."""
    if config.get("api_key"):
        return str(config["api_key"])
    name = str(config.get("api_key_env") or DEFAULT_KEY_ENV)
    if not key_env_allowed(name, allowed):
        raise ProviderError(
            f"api_key_env {name!r} is not an allowed provider key variable "
            "(PROVIDER_KEY_ENV_ALLOWED)",
            retryable=False,
            code="provider_not_initialize",
        )
    return os.environ.get(name) or "not-needed"


class OpenAICompatibleProvider:
    """Provider for OpenAI-compatible chat completion servers. One instance (and one connection
    pool) per distinct configuration and event loop in a process: see apps.providers.registry.
    `max_connections` bounds the sequences streamed at once through it."""

    name = "openai"

    def __init__(
        self,
        config: dict[str, Any],
        *,
        api_key: str | None = None,
        max_connections: int = 1000,
    ) -> None:
        self.timeout_s = float(config.get("timeout_s") or DEFAULT_TIMEOUT_S)
        limits = httpx2.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        )
        self.client = openai.AsyncOpenAI(
            base_url=config.get("base_url") or None,
            api_key=api_key if api_key is not None else api_key_for(config),
            timeout=self.timeout_s,
            # The scheduler owns retries (with backoff, jitter and a budget kept in PostgreSQL).
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=self.timeout_s),
        )

    def context_window(self) -> int | None:
        return None  # its deployment says (Deployment.context_window): the server does not tell

    def count_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        return prompt_tokens_estimate(messages)

    def count_text_tokens(self, text: str) -> int:
        return text_tokens_estimate(text)

    def _timeout(self, request: GenerationRequest) -> float:
        if request.timeout_s is None:
            return self.timeout_s
        return max(MIN_TIMEOUT_S, min(self.timeout_s, request.timeout_s))

    async def generate(self, request: GenerationRequest, on_delta: OnDelta) -> GenerationResult:
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [_message(m) for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
            "timeout": self._timeout(request),
        }
        if request.stop:
            params["stop"] = request.stop
        params.update(request.options)  # seed, penalties: the request's own, as sent
        try:
            return await self._stream(params, on_delta)
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            raise provider_error(exc) from exc

    async def _stream(self, params: dict[str, Any], on_delta: OnDelta) -> GenerationResult:
        finish, usage = "stop", None
        create = self.client.chat.completions.with_streaming_response.create
        async with create(**params) as response:
            async for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments, `event:` lines
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = _chunk(data)
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or ():
                    if choice.get("finish_reason"):
                        finish = str(choice["finish_reason"])
                    text = (choice.get("delta") or {}).get("content")
                    if text and on_delta(text):
                        # Stopped before the usage chunk: the caller counts both sides.
                        return GenerationResult(None, None, "user_stop")
        return GenerationResult(
            prompt_tokens=_count(usage, "prompt_tokens"),
            completion_tokens=_count(usage, "completion_tokens"),
            finish_reason=finish,
        )


def _message(message: ChatMessage) -> dict[str, Any]:
    """A message as OpenAI's chat API takes it: text alone, or content parts with its images."""
    if not message.images:
        return {"role": message.role, "content": message.content}
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}]
    parts.extend(
        {"type": "image_url", "image_url": {"url": image.url, "detail": image.detail}}
        for image in message.images
    )
    return {"role": message.role, "content": parts}


def _chunk(data: str) -> dict[str, Any]:
    """One streamed chunk; an error event in the middle of a stream fails the attempt."""
    try:
        chunk = json.loads(data)
    except ValueError as error:
        raise ProviderError(
            f"provider sent an unreadable chunk: {data[:200]!r}",
            retryable=True,
            code="completion_request_error",
            server_fault=True,
        ) from error
    if not isinstance(chunk, dict):
        raise ProviderError(f"provider sent {data[:200]!r}", retryable=True, server_fault=True)
    if chunk.get("error"):
        detail = chunk["error"]
        message = detail.get("message") if isinstance(detail, dict) else detail
        raise ProviderError(
            f"provider error: {message}",
            retryable=True,
            code="completion_request_error",
            server_fault=True,
        )
    return chunk


def _count(usage: Any, name: str) -> int | None:
    value = usage.get(name) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
