"""A deterministic provider for tests and benchmarks: set text at a set pace, with failures on cue.

provider_config keys (all optional):
- `text`: the answer (default: "Hello from the scripted provider."), streamed word by word;
- `tokens_per_s`: pace (0 or absent: as fast as possible);
- `first_token_delay_s`: extra wait before the first piece;
- `fail_attempts`: fail this many first attempts with a retryable error;
- `fail_after_pieces`: fail after streaming this many pieces (with `fail_attempts`);
- `permanent_error`: fail every attempt with a non-retryable error;
- `stall_s`: hang this long before answering (a provider that stops responding).
"""

import re
import time
from typing import Any

from apps.providers.base import GenerationRequest, GenerationResult, OnDelta, ProviderError

DEFAULT_TEXT = "Hello from the scripted provider."


def split_pieces(text: str) -> list[str]:
    """Words with their leading space, like a tokenizer's pieces."""
    return re.findall(r"\s*\S+", text) or [text]


class ScriptedProvider:
    """Provider that plays back a script."""

    name = "scripted"

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def generate(self, request: GenerationRequest, on_delta: OnDelta) -> GenerationResult:
        cfg = self.config
        if cfg.get("permanent_error"):
            raise ProviderError(str(cfg["permanent_error"]), retryable=False, status=400)
        if cfg.get("stall_s"):
            time.sleep(float(cfg["stall_s"]))
        failing = request.attempt <= int(cfg.get("fail_attempts", 0))
        fail_after = int(cfg.get("fail_after_pieces", 0))
        if failing and fail_after == 0:
            raise ProviderError(f"scripted failure on attempt {request.attempt}", retryable=True)
        if cfg.get("first_token_delay_s"):
            time.sleep(float(cfg["first_token_delay_s"]))
        pace = float(cfg.get("tokens_per_s", 0))
        pieces = split_pieces(str(cfg.get("text", DEFAULT_TEXT)))[: request.max_tokens]
        sent = 0
        for piece in pieces:
            if pace > 0 and sent > 0:
                time.sleep(1 / pace)
            if failing and sent == fail_after:
                raise ProviderError(
                    f"scripted failure on attempt {request.attempt}", retryable=True
                )
            sent += 1
            if on_delta(piece):
                return GenerationResult(_prompt_tokens(request), sent, "user_stop")
        return GenerationResult(_prompt_tokens(request), sent, "stop")


def _prompt_tokens(request: GenerationRequest) -> int:
    return sum(len(split_pieces(m.content)) for m in request.messages)
