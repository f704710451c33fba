"""The built-in model: tokens per second through the whole platform against xllamacpp alone, on
the same prompt and settings."""

import asyncio
import time
from typing import Any

from bench.harness import builtin_key
from bench.request_bench import _post, sse_read

PROMPT = "Write a long story about a lighthouse keeper and the sea."
MAX_TOKENS = 128


def raw_tokens_per_s(runs: int) -> list[float]:
    """Decode speed of xllamacpp alone: tokens after the first, over the time they took."""
    from django.conf import settings

    from apps.providers.local import LocalSettings, ModelServer

    model = ModelServer(
        LocalSettings(
            threads=settings.PLATFORM["LOCAL_MODEL_THREADS"],
            context=settings.PLATFORM["LOCAL_MODEL_CONTEXT"],
        ),
        api_key="bench-raw",
        port=0,
    )
    speeds = []
    for _ in range(runs):
        stamps: list[float] = []

        def on_chunk(chunk: dict[str, Any], stamps: list[float] = stamps) -> bool:
            for choice in chunk.get("choices", []):
                if (choice.get("delta") or {}).get("content"):
                    stamps.append(time.monotonic())
            return False

        model.server.handle_chat_completions(
            {
                "messages": [{"role": "user", "content": PROMPT}],
                "stream": True,
                "max_tokens": MAX_TOKENS,
                "temperature": 0.0,
            },
            on_chunk,
        )
        if len(stamps) > 1:
            speeds.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
    del model
    return speeds


def platform_tokens_per_s(port: int, key: str, runs: int) -> list[float]:
    """The same through daphne and a worker, measured at the client from the SSE stream: tokens
    after the first (the answer's usage) over the time from the first text to the last. The
    first piece goes out alone; later ones may share an event (apps.generation.coalesce)."""
    speeds = []
    for _ in range(runs):
        stamps: list[float] = []
        tokens: list[int] = []

        def on_event(
            event_id: str | None,
            data: dict[str, Any],
            received_ms: float,
            stamps: list[float] = stamps,
            tokens: list[int] = tokens,
        ) -> None:
            if data.get("event") == "message" and data.get("answer"):
                stamps.append(received_ms / 1000)
            elif data.get("event") == "message_end":
                tokens.append(int(data["metadata"]["usage"]["completion_tokens"]))

        body = {
            "inputs": {},
            "query": PROMPT,
            "user": "bench",
            "response_mode": "streaming",
        }
        asyncio.run(
            sse_read("127.0.0.1", port, _post("/v1/chat-messages", key, body, port), on_event)
        )
        if len(stamps) > 1 and tokens:
            speeds.append((tokens[0] - 1) / (stamps[-1] - stamps[0]))
    return speeds


def local_app_key(port: int, parallel: int) -> str:
    """An app on the built-in model served at `port` (harness.model_server)."""
    return builtin_key(port, parallel=parallel, max_tokens=MAX_TOKENS, temperature=0.0)


def parallel_tokens_per_s(port: int, key: str, sequences: int) -> float:
    """Aggregate decode speed of one worker given `sequences` answers at once: their tokens in
    all over the time from the first request to the last answer's end."""
    tokens: list[int] = []

    async def one(number: int) -> None:
        def on_event(event_id: str | None, data: dict[str, Any], received_ms: float) -> None:
            if data.get("event") == "message_end":
                tokens.append(int(data["metadata"]["usage"]["completion_tokens"]))

        body = {
            "inputs": {},
            "query": PROMPT,
            "user": f"bench-{number}",
            "response_mode": "streaming",
            "auto_generate_name": False,
        }
        await sse_read("127.0.0.1", port, _post("/v1/chat-messages", key, body, port), on_event)

    async def all_at_once() -> float:
        started = time.monotonic()
        await asyncio.gather(*(one(number) for number in range(sequences)))
        return time.monotonic() - started

    elapsed = asyncio.run(all_at_once())
    return sum(tokens) / elapsed if tokens else 0.0
