"""A deterministic provider for tests and benchmarks: set text at a set pace, with failures on cue.

provider_config keys (all optional):
- `text`: the answer (default: "Hello from the scripted provider."), streamed word by word;
- `pieces`: the answer as an explicit list of pieces, streamed one by one (instead of `text`:
  e.g. a word split over several pieces, as a tokenizer would);
- `tokens_per_s`: pace (0 or absent: as fast as possible);
- `first_token_delay_s`: extra wait before the first piece (a slow first token);
- `fail_attempts`: fail this many first attempts with a retryable error;
- `fail_after_pieces`: fail after streaming this many pieces (with `fail_attempts`);
- `permanent_error`: fail every attempt with a non-retryable error (the model is never reached);
- `stall_s`: hang this long (after `stall_after_pieces` pieces, default 0), like a provider that
  stops responding; past `timeout_s` (or the task's time left) it gives up with a retryable
  timeout, as a real client would.
"""

import asyncio
import re
from typing import Any

from apps.providers.base import (
    ChatMessage,
    GenerationRequest,
    GenerationResult,
    OnDelta,
    ProviderError,
)
from apps.providers.tokens import prompt_tokens_estimate, text_tokens_estimate

DEFAULT_TEXT = "Hello from the scripted provider."


def split_pieces(text: str) -> list[str]:
    """Words with their leading space, like a tokenizer's pieces."""
    return re.findall(r"\s*\S+", text) or [text]


class ScriptedProvider:
    """Provider that plays back a script."""

    name = "scripted"

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def context_window(self) -> int | None:
        return None

    def count_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        return prompt_tokens_estimate(messages)

    def count_text_tokens(self, text: str) -> int:
        return text_tokens_estimate(text)

    def _pieces(self) -> list[str]:
        pieces = self.config.get("pieces")
        if isinstance(pieces, list) and pieces:
            return [str(piece) for piece in pieces]
        return split_pieces(str(self.config.get("text", DEFAULT_TEXT)))

    async def _stall(self, request: GenerationRequest) -> None:
        stall = float(self.config.get("stall_s") or 0)
        limits = [float(self.config["timeout_s"])] if self.config.get("timeout_s") else []
        if request.timeout_s is not None:
            limits.append(max(0.0, request.timeout_s))
        if limits and min(limits) < stall:
            await asyncio.sleep(min(limits))
            raise ProviderError(
                f"scripted provider timed out after {min(limits):g} s", retryable=True
            )
        await asyncio.sleep(stall)

    async def generate(self, request: GenerationRequest, on_delta: OnDelta) -> GenerationResult:
        cfg = self.config
        if cfg.get("permanent_error"):
            raise ProviderError(str(cfg["permanent_error"]), retryable=False, status=400)
        failing = request.attempt <= int(cfg.get("fail_attempts", 0))
        fail_after = int(cfg.get("fail_after_pieces", 0))
        stall_after = int(cfg.get("stall_after_pieces", 0)) if cfg.get("stall_s") else -1
        if stall_after == 0:
            await self._stall(request)
        if failing and fail_after == 0:
            raise ProviderError(f"scripted failure on attempt {request.attempt}", retryable=True)
        if cfg.get("first_token_delay_s"):
            await asyncio.sleep(float(cfg["first_token_delay_s"]))
        pace = float(cfg.get("tokens_per_s", 0))
        sent = 0
        pieces = self._pieces()
        loop = asyncio.get_running_loop()
        started = loop.time()
        for piece in pieces[: request.max_tokens]:
            if pace > 0 and sent > 0:
                # On a schedule rather than sleep after sleep: the pace holds however many
                # answers share the loop.
                await asyncio.sleep(max(0.0, started + sent / pace - loop.time()))
            else:
                await asyncio.sleep(0)  # an instant script still lets the other answers run
            if failing and sent == fail_after:
                raise ProviderError(
                    f"scripted failure on attempt {request.attempt}", retryable=True
                )
            if sent > 0 and sent == stall_after:
                await self._stall(request)
                started = loop.time() - sent / pace if pace > 0 else started
            sent += 1
            if on_delta(piece):
                return GenerationResult(None, sent, "user_stop")
        finish = "length" if len(pieces) > request.max_tokens else "stop"
        return GenerationResult(prompt_tokens_estimate(request.messages), sent, finish)
