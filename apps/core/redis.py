"""Redis connections from REDIS_URL: one sync client per process, one async client per loop."""

import asyncio
from functools import cache
from typing import Any

import redis
import redis.asyncio as aredis
from django.conf import settings


def key(*parts: object) -> str:
    """A platform key: the configured prefix, then the parts joined by colons."""
    return settings.REDIS_KEY_PREFIX + ":".join(str(part) for part in parts)


# redis-py 8 gives sockets a 5 s timeout by default, which breaks blocking reads (XREAD BLOCK
# 10 s while an answer is quiet). Reads may block up to BLOCK_MAX_S; a dead connection is still
# noticed within SOCKET_TIMEOUT_S.
BLOCK_MAX_S = 10
SOCKET_TIMEOUT_S = BLOCK_MAX_S + 20
OPTIONS: dict[str, Any] = {
    "health_check_interval": 30,
    "socket_timeout": SOCKET_TIMEOUT_S,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
}


@cache
def sync_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, **OPTIONS)


_async_clients: dict[int, aredis.Redis] = {}


def async_client() -> aredis.Redis:
    """The async client for the running loop: a pool must never be shared between loops."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(id(loop))
    if client is None:
        client = aredis.Redis.from_url(
            settings.REDIS_URL, max_connections=settings.REDIS_MAX_CONNECTIONS, **OPTIONS
        )
        _async_clients[id(loop)] = client
    return client
