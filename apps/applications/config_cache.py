"""Apps and keys as each process last read them, valid while the cluster's config version holds.

Every answer needs its key (web) and its app (worker). Those rows change rarely, but reading them
is the widest query on the request path (the app has ~45 columns: 2-3 ms of ORM work per read on
a small machine, more than the query). So each process keeps the rows it read, tagged with the
config version, a Redis counter that every change to an app or a key bumps (model signals and
the managers' `update()`/`delete()`, see apps.applications.models). A copy is used while the
counter is unchanged. Writes that bypass the ORM (raw SQL) are picked up within
CONFIG_CACHE_TTL_S.

Each process learns the counter without a round trip per request: a bump publishes the new value
(one script: INCR, then PUBLISH), and a thread of each process (`VersionWatch`) holds a
subscription and keeps the value it last heard, reading the counter itself when it subscribes
and once a second besides, in case a message was lost. While the subscription is down (Redis
restarting, a new process), requests read the counter (one GET) as before.

The version is read before the database, so a change committed meanwhile bumps the counter past
the version stored with the row, and the next request reads again.
"""

import copy
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db import transaction

from apps.core.redis import OPTIONS, LuaScript, async_client, key, sync_client

logger = logging.getLogger(__name__)

# How often a watching process reads the counter besides what it hears, and how long it waits
# before subscribing again after losing its connection.
RECHECK_S = 1.0
RECONNECT_S = 0.5


def VERSION_KEY() -> str:
    return key("config", "version")


def VERSION_CHANNEL() -> str:
    # Pub/sub channels are shared by every database of a Redis server: the channel names the
    # database, so processes on another database (another test run) are not told.
    database = sync_client().connection_pool.connection_kwargs.get("db", 0)
    return f"{key('config', 'changed')}:{database}"


# KEYS: the counter; ARGV: the channel, a fresh start. The new value, also published (in the
# order of bumps). A missing counter starts afresh (see _fresh_start).
_BUMP = LuaScript("""
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[2])
end
redis.call('INCR', KEYS[1])
-- As text: a Lua number is a double, which would round a counter past 2^53.
local value = redis.call('GET', KEYS[1])
redis.call('PUBLISH', ARGV[1], value)
return value
""")


@dataclass(frozen=True)
class _Entry:
    version: bytes
    stored_at: float
    row: Any


class ConfigCache:
    """Rows by lookup key; a hit is a copy, so callers may change it freely."""

    def __init__(self) -> None:
        self._rows: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def get(self, lookup: str, version: bytes) -> tuple[bool, Any]:
        entry = self._rows.get(lookup)
        ttl = float(settings.PLATFORM["CONFIG_CACHE_TTL_S"])
        if entry is None or entry.version != version or time.monotonic() - entry.stored_at > ttl:
            return False, None
        return True, copy.copy(entry.row)

    def put(self, lookup: str, version: bytes, row: Any) -> None:
        with self._lock:
            if len(self._rows) > 10_000:  # bounded: a flood of unknown keys cannot grow it
                self._rows.clear()
            self._rows[lookup] = _Entry(version, time.monotonic(), copy.copy(row))


# A missing counter (a new or restarted Redis) starts at a random value, never at one that rows
# cached before the restart may carry.
def _fresh_start() -> int:
    return secrets.randbelow(2**62) + 1


class VersionWatch:
    """The config version as this process last heard it, kept by a thread of its own."""

    def __init__(self) -> None:
        self._value: bytes | None = None
        self._lock = threading.Lock()
        self._pid: int | None = None

    def current(self) -> bytes | None:
        """The version heard, or None while not subscribed (the caller reads the counter)."""
        if self._pid != os.getpid():
            self._start()
        return self._value

    def heard(self, value: bytes) -> None:
        # Bumps are heard in the order they were made (one script: INCR, then PUBLISH).
        self._value = value

    def _start(self) -> None:
        with self._lock:
            # A forked child inherits the parent's value but not its thread: it starts its own.
            if self._pid == os.getpid():
                return
            self._pid, self._value = os.getpid(), None
            threading.Thread(target=self._run, name="config-version", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                self._watch()
            except Exception as error:
                self._value = None
                logger.info("config version subscription lost; reconnecting: %r", error)
            time.sleep(RECONNECT_S)

    def _watch(self) -> None:
        client = redis.Redis.from_url(settings.REDIS_URL, **OPTIONS)
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(VERSION_CHANNEL())
            # Confirmed before the counter is read, so no bump between the two goes unheard.
            while (pubsub.get_message(timeout=RECHECK_S) or {}).get("type") != "subscribe":
                pass
            self._value = _version_read(client)
            next_check = time.monotonic() + RECHECK_S
            while True:
                message = pubsub.get_message(timeout=max(0.0, next_check - time.monotonic()))
                if message is not None and message.get("type") == "message":
                    self.heard(bytes(message["data"]))
                if time.monotonic() >= next_check:
                    # Authoritative: also right after the counter was lost with Redis's data.
                    self._value = _version_read(client)
                    next_check = time.monotonic() + RECHECK_S
        finally:
            pubsub.close()
            client.close()


_watch = VersionWatch()


def _version_read(client: redis.Redis) -> bytes:
    value: Any = client.get(VERSION_KEY())
    if value is None:
        client.set(VERSION_KEY(), _fresh_start(), nx=True)
        value = client.get(VERSION_KEY())
    return bytes(value)


def config_version_heard() -> bytes | None:
    """The version this process last heard, without asking Redis (None while not subscribed)."""
    return _watch.current()


def config_version() -> bytes:
    heard = _watch.current()
    return heard if heard is not None else _version_read(sync_client())


async def config_version_async() -> bytes:
    heard = _watch.current()
    if heard is not None:
        return heard
    client = async_client()
    value: Any = await client.get(VERSION_KEY())
    if value is None:
        await client.set(VERSION_KEY(), _fresh_start(), nx=True)
        value = await client.get(VERSION_KEY())
    return bytes(value)


def config_changed() -> None:
    """Tell every process that an app or a key changed: now, and again once the change commits
    (a process that reads the row in between caches the old row under the first bump; the second
    drops it)."""

    def bump() -> None:
        value = _BUMP(sync_client(), [VERSION_KEY()], [VERSION_CHANNEL(), _fresh_start()])
        _watch.heard(bytes(value))  # this process knows at once

    bump()
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(bump)
