"""Request-path benchmarks through daphne: blocking latency and throughput with an instant
provider, streaming time to first byte and token relay delay, and many simultaneous streams."""

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench.harness import app_key, percentile


def make_key(**fields: Any) -> str:
    """A key of a new app on a scripted deployment of its own (see harness.app_key)."""
    return app_key(**{"name": "bench", "max_tokens": 64, **fields})


def _body(**extra: Any) -> dict[str, Any]:
    return {"inputs": {}, "query": "hello", "user": "bench", **extra}


def load_summary(latencies: list[float], errors: int, elapsed: float) -> dict[str, float]:
    """Requests served per second, latency percentiles (ms) and errors of a load run."""
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "errors": float(errors),
    }


async def blocking_load(
    url: str,
    key: str,
    clients: int,
    seconds: float,
    route: tuple[str, dict[str, Any]] | None = None,
) -> dict[str, float]:
    """`clients` concurrent clients posting blocking requests back to back (a chat request to
    /v1/chat-messages unless `route` names another path and body)."""
    path, body = route or ("/v1/chat-messages", _body())
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        stop_at = time.monotonic() + seconds

        async def one_client() -> None:
            nonlocal errors
            while time.monotonic() < stop_at:
                started = time.monotonic()
                response = await client.post(
                    f"{url}{path}", json=body, headers={"Authorization": f"Bearer {key}"}
                )
                if response.status_code == 200:
                    latencies.append(time.monotonic() - started)
                else:
                    errors += 1

        started = time.monotonic()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.monotonic() - started
    return load_summary(latencies, errors, elapsed)


@dataclass(frozen=True)
class IdleSample:
    latency_s: float
    sent_at: float  # wall clock, to line up with the task's timestamps
    received_at: float
    task_id: str


async def idle_latency(url: str, key: str, samples: int, **extra: Any) -> list[IdleSample]:
    """Blocking requests one after another on an idle system."""
    taken = []
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(samples):
            sent_at, started = time.time(), time.monotonic()
            response = await client.post(
                f"{url}/v1/chat-messages",
                json=_body(**extra),
                headers={"Authorization": f"Bearer {key}"},
            )
            latency = time.monotonic() - started
            assert response.status_code == 200, response.text
            taken.append(IdleSample(latency, sent_at, time.time(), response.json()["task_id"]))
    return taken


def idle_breakdown(samples: list[IdleSample]) -> dict[str, float]:
    """Medians of where an idle blocking request's time goes, from the task's own timestamps:
    `in` (the request to the task's creation: auth, limits, validation), `queue` (creation to the
    worker's start: INSERTs, commit, push, pick-up), `run` (the answer kind, provider included),
    `out` (the task's end to the client's last byte: `message_end`, relay, response)."""
    from apps.scheduling.models import Task

    rows = {
        str(task.id): task
        for task in Task.objects.filter(id__in=[sample.task_id for sample in samples])
    }
    phases: dict[str, list[float]] = {"in": [], "queue": [], "run": [], "out": []}
    for sample in samples:
        task = rows.get(sample.task_id)
        if task is None or not (task.enqueued_at and task.started_at and task.finished_at):
            continue
        enqueued, started = task.enqueued_at.timestamp(), task.started_at.timestamp()
        finished = task.finished_at.timestamp()
        phases["in"].append(enqueued - sample.sent_at)
        phases["queue"].append(started - enqueued)
        phases["run"].append(finished - started)
        phases["out"].append(sample.received_at - finished)
    return {name: percentile(values, 50) * 1000 for name, values in phases.items() if values}


def _stream_id_ms(event_id: str) -> float:
    return float(event_id.split("-", 1)[0])


async def sse_read(
    host: str,
    port: int,
    request: bytes,
    on_event: Any,
    read_limit_s: float = 120,
    on_refusal: Any = None,
) -> tuple[float, int]:
    """A minimal HTTP/1.1 SSE client on a raw socket (cheap enough to run a thousand at once).
    Returns (time to first byte, pings seen); calls on_event(id, data, received_wall_ms)."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    first_byte = None
    pings = 0
    buffer = b""
    event_id = None
    try:
        async with asyncio.timeout(read_limit_s):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                if first_byte is None:
                    first_byte = time.monotonic() - started
                received_ms = time.time() * 1000
                if not buffer and first_byte is not None and on_refusal is not None:
                    status = chunk.split(b" ", 2)[1:2]
                    if status and status[0] != b"200":
                        on_refusal(status[0].decode(), chunk.split(b"\r\n\r\n", 1)[-1][:300])
                        return first_byte, pings
                    on_refusal = None
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    text = line.decode().rstrip("\r")
                    if text.startswith("id: "):
                        event_id = text[4:]
                    elif text.startswith("data: "):
                        data = json.loads(text[6:])
                        # The answer stream carries the log id in the JSON (no `id:` lines).
                        on_event(event_id or data.get("event_id"), data, received_ms)
                        if data.get("event") in ("message_end", "error"):
                            return first_byte or 0.0, pings
                    elif text == "event: ping":
                        pings += 1
    finally:
        writer.close()
    return first_byte or 0.0, pings


def _post(path: str, key: str, body: dict[str, Any], port: int) -> bytes:
    payload = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + payload


def _get(path: str, key: str, port: int) -> bytes:
    return (
        f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


async def streaming_relay(port: int, key: str, streams: int) -> dict[str, float]:
    """Streams one after another: time to first byte, first token delay and per-token relay
    delay (client receive time minus the event's log time, both on this machine's clock)."""
    ttfb, first_token, per_token = [], [], []
    for _ in range(streams):
        delays: list[float] = []

        def on_event(
            event_id: str | None,
            data: dict[str, Any],
            received_ms: float,
            delays: list[float] = delays,
        ) -> None:
            if event_id and data.get("event") == "message":
                delays.append(received_ms - _stream_id_ms(event_id))

        request = _post("/v1/chat-messages", key, _body(response_mode="streaming"), port)
        first_byte, _ = await sse_read("127.0.0.1", port, request, on_event)
        ttfb.append(first_byte * 1000)
        if delays:
            first_token.append(delays[0])
            per_token.extend(delays)
    return {
        "ttfb_p50_ms": percentile(ttfb, 50),
        "first_token_relay_p50_ms": percentile(first_token, 50),
        "token_relay_p50_ms": percentile(per_token, 50),
        "token_relay_p99_ms": percentile(per_token, 99),
    }


async def concurrent_readers(
    port: int, key: str, task_ids: list[str], sse_per_task: int, ws_per_task: int
) -> dict[str, float]:
    """Many clients following live answers at once on one web process: SSE clients on the
    resume route and WebSocket clients resuming over the socket, all from the first event."""
    delays: list[float] = []
    complete = {"sse": 0, "ws": 0}
    pings_seen = 0

    def on_event(seen: list[str], event_id: str | None, data: dict[str, Any], at_ms: float) -> None:
        if event_id:
            seen.append(data["event"])
            delays.append(at_ms - _stream_id_ms(event_id))

    async def sse_reader(task_id: str) -> None:
        nonlocal pings_seen
        seen: list[str] = []
        request = _get(f"/v1/chat-messages/{task_id}/events?user=bench", key, port)
        _, pings = await sse_read(
            "127.0.0.1", port, request, lambda *event: on_event(seen, *event), read_limit_s=180
        )
        pings_seen += pings
        if seen and seen[-1] == "message_end":
            complete["sse"] += 1

    async def ws_reader(task_id: str) -> None:
        from websockets.asyncio.client import connect

        seen: list[str] = []
        url = f"ws://127.0.0.1:{port}/ws/v1/chat"
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            asyncio.timeout(180),
            connect(url, additional_headers=headers, open_timeout=60) as socket,
        ):
            assert json.loads(await socket.recv())["type"] == "ready"
            await socket.send(json.dumps({"type": "resume", "task_id": task_id, "user": "bench"}))
            while True:
                frame = json.loads(await socket.recv())
                if "event" in frame:
                    on_event(seen, frame.get("event_id"), frame, time.time() * 1000)
                    if frame["event"] in ("message_end", "error"):
                        break
                elif frame.get("type") == "error":
                    break
        if seen and seen[-1] == "message_end":
            complete["ws"] += 1

    await asyncio.gather(
        *(sse_reader(t) for t in task_ids for _ in range(sse_per_task)),
        *(ws_reader(t) for t in task_ids for _ in range(ws_per_task)),
    )
    return {
        "sse_clients": float(len(task_ids) * sse_per_task),
        "ws_clients": float(len(task_ids) * ws_per_task),
        "sse_complete": float(complete["sse"]),
        "ws_complete": float(complete["ws"]),
        "token_delay_p50_ms": percentile(delays, 50),
        "token_delay_p99_ms": percentile(delays, 99),
        "pings_seen": float(pings_seen),
    }
