"""Helpers for the input-layer tests that run against real servers: extra daphne processes with
their own settings (a second web process, a low global ceiling, a short lease TTL) and concurrent
calls through httpx."""

import asyncio
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.processes import WebServer, daphne_start, free_port, process_ready_wait

TIMEOUT = httpx.Timeout(60.0)


@contextmanager
def extra_web(**env: str) -> Iterator[WebServer]:
    """Another daphne process on the same database and Redis, with extra environment."""
    port = free_port()
    process = daphne_start(port, **env)
    server = WebServer(process, port)
    try:
        process_ready_wait(lambda: _healthy(server.url), "the extra daphne to start", process)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def post_all(
    calls: list[tuple[str, dict[str, Any], dict[str, str]]],
) -> list[httpx.Response]:
    """POST every (url, json, headers) at once, each on its own connection."""
    limits = httpx.Limits(max_connections=len(calls) + 1, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
        return list(
            await asyncio.gather(
                *(client.post(url, json=body, headers=headers) for url, body, headers in calls)
            )
        )


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
