"""A stand-in for vLLM: an OpenAI-compatible chat completion server that serves any number of
sequences at once (or at most `--capacity`, refusing the rest with 429 and Retry-After, as a
rate-limited API does), each at a set pace. Loopback only, bounded, no model: it writes numbered
words.

    python -m bench.model_server --port 8100 --tokens 50 --tokens-per-s 25 [--stamp]
        [--capacity 8 --retry-after-s 1]

Routes: `POST /v1/chat/completions` (blocking or `stream: true`, with
`stream_options.include_usage`), `GET /v1/models`, and for benchmarks `GET /stats` (requests
served, refused with 429, sequences open now and the most open at once, the Authorization
headers it was sent) and `POST /stats/reset`. Killing the process cuts every stream mid-answer.
Every answer is distinct: its words carry the request's number (and with `--stamp`, the
wall-clock millisecond it was sent, so a client can tell each word's delay end to end). Written
on asyncio streams alone, so its own cost stays small beside what it measures.
"""

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

MAX_BODY_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024


@dataclass
class Pace:
    tokens: int = 50
    tokens_per_s: float = 25.0
    first_token_delay_s: float = 0.0
    stamp: bool = False
    # Sequences served at once at most (0: no limit); beyond, 429 with Retry-After.
    capacity: int = 0
    retry_after_s: float = 1.0


@dataclass
class Stats:
    requests: int = 0
    refused: int = 0
    open_now: int = 0
    most_open: int = 0
    tokens_sent: int = 0
    last_requests: list[dict[str, Any]] = field(default_factory=list)
    authorizations: set[str] = field(default_factory=set)

    def opened(self) -> None:
        self.requests += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "refused": self.refused,
            "open_now": self.open_now,
            "most_open": self.most_open,
            "tokens_sent": self.tokens_sent,
            "authorizations": sorted(self.authorizations),
        }


class ModelServer:
    def __init__(self, pace: Pace, *, max_connections: int, keep_requests: int = 0) -> None:
        self.pace = pace
        self.stats = Stats()
        self.connections = asyncio.Semaphore(max_connections)
        self.keep_requests = keep_requests

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self.connections:
            try:
                while await self._one_request(reader, writer):
                    pass
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass
            finally:
                writer.close()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEADER_BYTES:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        length = int(headers.get("content-length", "0"))
        if length > MAX_BODY_BYTES:
            await self._json(writer, 413, {"error": {"message": "body too large"}})
            return False
        body = await reader.readexactly(length) if length else b""
        if method == "GET" and path == "/v1/models":
            models = {"object": "list", "data": [{"id": "bench", "object": "model"}]}
            await self._json(writer, 200, models)
        elif method == "GET" and path == "/stats":
            await self._json(writer, 200, self.stats.as_json())
        elif method == "GET" and path == "/requests":
            await self._json(writer, 200, {"requests": self.stats.last_requests})
        elif method == "POST" and path == "/stats/reset":
            self.stats = Stats(open_now=self.stats.open_now)
            await self._json(writer, 200, {"ok": True})
        elif method == "POST" and path == "/v1/chat/completions":
            if headers.get("authorization"):
                self.stats.authorizations.add(headers["authorization"])
            if self.pace.capacity and self.stats.open_now >= self.pace.capacity:
                self.stats.refused += 1
                await self._json(
                    writer,
                    429,
                    {"error": {"message": "too many requests", "type": "rate_limit_exceeded"}},
                    extra=f"Retry-After: {self.pace.retry_after_s:g}\r\n",
                )
            else:
                await self._completion(writer, json.loads(body or b"{}"))
        else:
            await self._json(writer, 404, {"error": {"message": f"no route {method} {path}"}})
        return headers.get("connection", "").lower() != "close"

    async def _json(
        self, writer: asyncio.StreamWriter, status: int, body: Any, extra: str = ""
    ) -> None:
        data = json.dumps(body).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        await writer.drain()

    async def _completion(self, writer: asyncio.StreamWriter, request: dict[str, Any]) -> None:
        number = self.stats.requests + 1
        if self.keep_requests:
            self.stats.last_requests = [*self.stats.last_requests, request][-self.keep_requests :]
        tokens = min(self.pace.tokens, int(request.get("max_tokens") or self.pace.tokens))
        words = [f" w{number}.{index}" for index in range(tokens)]
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 + 1 for m in request["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": tokens,
            "total_tokens": prompt_tokens + tokens,
        }
        self.stats.opened()
        try:
            if request.get("stream"):
                include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
                await self._stream(writer, request, words, usage if include_usage else None)
            else:
                await self._paced(words, lambda _: None)
                await self._json(writer, 200, _completion_body(request, "".join(words), usage))
        finally:
            self.stats.open_now -= 1

    async def _paced(self, words: list[str], send: Any) -> None:
        if self.pace.first_token_delay_s:
            await asyncio.sleep(self.pace.first_token_delay_s)
        interval = 1 / self.pace.tokens_per_s if self.pace.tokens_per_s > 0 else 0.0
        start = time.monotonic()
        for index, word in enumerate(words):
            if interval:
                # On a schedule, not sleep after sleep: the pace holds however busy the loop is.
                delay = start + index * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await send(word) if asyncio.iscoroutinefunction(send) else send(word)
            self.stats.tokens_sent += 1

    async def _stream(
        self,
        writer: asyncio.StreamWriter,
        request: dict[str, Any],
        words: list[str],
        usage: dict[str, Any] | None,
    ) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n"
        )
        base = {
            "id": f"chatcmpl-{self.stats.requests}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.get("model", "bench"),
        }

        async def send(event: dict[str, Any] | str) -> None:
            data = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
            frame = f"data: {data}\n\n".encode()
            writer.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            await writer.drain()

        async def send_word(word: str) -> None:
            if self.pace.stamp:
                word = f"{word}@{time.time() * 1000:.1f}"
            choice = {"index": 0, "delta": {"content": word}, "finish_reason": None}
            await send({**base, "choices": [choice]})

        await send({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        await self._paced(words, send_word)
        await send({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if usage is not None:
            await send({**base, "choices": [], "usage": usage})
        await send("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def _completion_body(request: dict[str, Any], text: str, usage: dict[str, Any]) -> dict[str, Any]:
    message = {"role": "assistant", "content": text}
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "bench"),
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": usage,
    }


async def serve(
    *, port: int, pace: Pace, max_connections: int, ready: asyncio.Event | None = None
) -> None:
    model = ModelServer(pace, max_connections=max_connections)
    server = await asyncio.start_server(model.handle, "127.0.0.1", port, backlog=4096)
    print(f"listening http://127.0.0.1:{port}/v1", flush=True)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--tokens", type=int, default=50, help="Words per answer (at most).")
    parser.add_argument("--tokens-per-s", type=float, default=25.0, help="0: as fast as it can.")
    parser.add_argument("--first-token-delay-s", type=float, default=0.0)
    parser.add_argument("--max-connections", type=int, default=5000)
    parser.add_argument("--stamp", action="store_true", help="Add each word's send time (ms).")
    parser.add_argument(
        "--capacity", type=int, default=0, help="Sequences at once at most; 429 beyond (0: any)."
    )
    parser.add_argument("--retry-after-s", type=float, default=1.0, help="Retry-After of a 429.")
    args = parser.parse_args()
    pace = Pace(
        args.tokens,
        args.tokens_per_s,
        args.first_token_delay_s,
        args.stamp,
        args.capacity,
        args.retry_after_s,
    )
    asyncio.run(serve(port=args.port, pace=pace, max_connections=args.max_connections))


if __name__ == "__main__":
    main()
