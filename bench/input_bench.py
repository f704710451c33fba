"""The input layer's benchmarks: cheap routes against a bare Django async view on the same daphne,
the answer routes at 10 and 100 clients, and a cluster offered more than the global ceiling.

HTTP load comes from wrk (C, Debian's package): on 2 cores a Python load generator takes as much
CPU as the server it measures. Latency by outcome (a refusal, an admitted request) comes from a
light probe beside wrk's load, since wrk reports one latency distribution for all responses.
"""

import asyncio
import json
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.harness import percentile
from bench.request_bench import _body, _post, load_summary, sse_read

STATUSES_SCRIPT = Path(__file__).resolve().parent / "wrk" / "statuses.lua"
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_PERCENTILE = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    ok: int
    limited: int
    other: int
    seconds: float

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.seconds

    @property
    def limited_per_s(self) -> float:
        return self.limited / self.seconds


def wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    rate: float | None = None,
) -> WrkResult:
    """wrk against one URL (keep-alive connections, 2 threads); statuses counted by class. With
    `rate`, the connections offer about that many requests per second in all; without, as many
    as the server answers."""
    command = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(STATUSES_SCRIPT),
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    paced = ["--", f"{rate:g}", str(connections)] if rate else []
    output = subprocess.run(
        [*command, url, *paced], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    statuses = re.search(r"WRK_STATUSES (\{.*\})", output)
    if rate is None or statuses is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    latency = {int(q): float(v) * _UNITS[unit] for q, v, unit in _PERCENTILE.findall(output)}
    counts = json.loads(statuses.group(1))
    return WrkResult(
        requests_per_s=float(rate.group(1)),
        p50_ms=latency.get(50, 0.0),
        p99_ms=latency.get(99, 0.0),
        ok=counts["ok"],
        limited=counts["limited"],
        other=counts["other"],
        seconds=seconds,
    )


async def streaming_load(port: int, key: str, clients: int, seconds: float) -> dict[str, float]:
    """`clients` clients, each posting streaming chat requests back to back and reading each
    stream to its end (raw sockets: cheap enough not to be the bottleneck)."""
    done: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds

    async def one_client() -> None:
        nonlocal errors
        request = _post("/v1/chat-messages", key, _body(response_mode="streaming"), port)
        while time.monotonic() < stop_at:
            ended: list[str] = []

            def on_event(
                _: str | None, data: dict[str, Any], __: float, ended: list[str] = ended
            ) -> None:
                ended.append(str(data.get("event")))

            started = time.monotonic()
            await sse_read("127.0.0.1", port, request, on_event)
            if ended and ended[-1] == "message_end":
                done.append(time.monotonic() - started)
            else:
                errors += 1

    started = time.monotonic()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    return load_summary(done, errors, time.monotonic() - started)


class OutcomeProbe:
    """Requests one after another beside a load, each timed and filed by its status: what a
    refused client and an admitted one each wait while the platform is over its ceiling."""

    def __init__(self, url: str, headers: dict[str, str], threads: int = 2) -> None:
        self.url = url
        self.headers = headers
        self.latencies: dict[int, list[float]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> "OutcomeProbe":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        with httpx.Client(headers=self.headers, timeout=10) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status = client.get(self.url).status_code
                except httpx.HTTPError:
                    status = 0
                elapsed_ms = (time.monotonic() - started) * 1000
                with self._lock:
                    self.latencies.setdefault(status, []).append(elapsed_ms)
                self._stop.wait(0.02)

    def p99_ms(self, status: int) -> float:
        values = self.latencies.get(status, [])
        return percentile(values, 99) if values else float("nan")

    def count(self, status: int) -> int:
        return len(self.latencies.get(status, []))
