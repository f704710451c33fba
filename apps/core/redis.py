"""Redis connections from REDIS_URL: one sync client per process, one async client per loop."""

import asyncio
import hashlib
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aredis
from django.conf import settings
from redis.exceptions import NoScriptError


def key(*parts: object) -> str:
    """A platform key: the configured prefix, then the parts joined by colons."""
    return settings.REDIS_KEY_PREFIX + ":".join(str(part) for part in parts)


# redis-py 8 gives sockets a 5 s timeout by default, which breaks blocking reads (XREAD BLOCK
# 10 s while an answer is quiet). Reads may block up to BLOCK_MAX_S; a dead connection is still
# noticed within SOCKET_TIMEOUT_S.
BLOCK_MAX_S = 10
SOCKET_TIMEOUT_S = BLOCK_MAX_S + 20
OPTIONS: dict[str, Any] = {
    # No CLIENT SETINFO on connect: redis-py looks its own version up in the package metadata
    # for it, a millisecond per new connection (seen in profiles of a web process opening
    # hundreds of streams at once).
    "driver_info": None,
    "health_check_interval": 30,
    "socket_timeout": SOCKET_TIMEOUT_S,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
}


_sync_client: redis.Redis | None = None
_sync_client_lock = threading.Lock()


def sync_client() -> redis.Redis:
    """The process's one sync client, shared by its threads.

    Made under a lock: a web process's first requests call this from several threads at once,
    and a second client made in that race is dropped as soon as its caller is done with it, and
    a dropped client closes its pool, cutting the connection another thread is still using
    (seen as 500s on a fresh daphne's first burst of requests). `functools.cache` does not lock.
    """
    global _sync_client
    client = _sync_client
    if client is None:
        with _sync_client_lock:
            if _sync_client is None:
                _sync_client = redis.Redis.from_url(settings.REDIS_URL, **OPTIONS)
            client = _sync_client
    return client


# By the loop itself, not its id: a loop that ended frees its id for the next one, which must
# not inherit a pool bound to the old loop (short-lived loops: tests, one-off task runs).
_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aredis.Redis]" = (
    weakref.WeakKeyDictionary()
)


def async_client() -> aredis.Redis:
    """The async client for the running loop: a pool must never be shared between loops.

    A bounded pool that makes callers wait for a free connection once REDIS_MAX_CONNECTIONS are
    open, instead of failing. Nothing holds a connection while it waits for events
    (apps.streams.feeds), but a command holds one until its caller runs again: when the loop is
    busy with a burst of requests that can take tens of milliseconds, so the pool must be large
    enough for a burst's commands in flight (64 made a burst of 1,000 answers wait past the
    timeout)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        pool = aredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            timeout=POOL_WAIT_S,
            **OPTIONS,
        )
        client = aredis.Redis(connection_pool=pool)
        _async_clients[loop] = client
    return client


# How long a caller waits for a free pooled connection before failing.
POOL_WAIT_S = 10.0


async def async_client_close() -> None:
    """Close the running loop's client (a short-lived loop about to end)."""
    client = _async_clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


class LuaScript:
    """A Lua script sent to Redis once, then called by its SHA1: a server that does not know it
    (restarted, flushed, failed over to a replica) answers NOSCRIPT, and it is loaded again.

    In a pipeline (`queue`), redis-py loads the pipeline's scripts that the server lacks before
    it sends the commands (one SCRIPT EXISTS per execute)."""

    def __init__(self, source: str) -> None:
        self.script = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(
        self, client: redis.Redis, keys: Sequence[Any] = (), args: Sequence[Any] = ()
    ) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.script)
            return client.evalsha(self.sha, len(keys), *keys, *args)

    async def run(
        self, client: aredis.Redis, keys: Sequence[Any] = (), args: Sequence[Any] = ()
    ) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.script)
            return await client.evalsha(self.sha, len(keys), *keys, *args)

    def queue(self, pipe: Any, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> None:
        pipe.scripts.add(self)
        pipe.evalsha(self.sha, len(keys), *keys, *args)
