"""Redis connections from REDIS_URL: one sync client per process, one async client per loop."""

import asyncio
from functools import cache

import redis
import redis.asyncio as aredis
from django.conf import settings


def key(*parts: object) -> str:
    """A platform key: the configured prefix, then the parts joined by colons."""
    return settings.REDIS_KEY_PREFIX + ":".join(str(part) for part in parts)


@cache
def sync_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, health_check_interval=30)


_async_clients: dict[int, aredis.Redis] = {}


def async_client() -> aredis.Redis:
    """The async client for the running loop: a pool must never be shared between loops."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(id(loop))
    if client is None:
        client = aredis.Redis.from_url(settings.REDIS_URL, health_check_interval=30)
        _async_clients[id(loop)] = client
    return client
