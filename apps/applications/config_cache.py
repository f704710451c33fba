"""Apps and keys as each process last read them, valid while the cluster's config version holds.

Every answer needs its key (web) and its app (worker). Those rows change rarely, but reading them
is the widest query on the request path (the app has ~45 columns: 2-3 ms of ORM work per read on
a small machine, more than the query). So each process keeps the rows it read, tagged with the
config version, a Redis counter that every change to an app or a key bumps (model signals and
the managers' `update()`/`delete()`, see apps.applications.models). A request reads the counter
(one Redis GET, ~0.2 ms, no thread hop) and uses its copy while the counter is unchanged. Writes
that bypass the ORM (raw SQL) are picked up within CONFIG_CACHE_TTL_S.

The version is read before the database, so a change committed meanwhile bumps the counter past
the version stored with the row, and the next request reads again.
"""

import copy
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.core.redis import async_client, key, sync_client


def VERSION_KEY() -> str:
    return key("config", "version")


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


def config_version() -> bytes:
    client = sync_client()
    value: Any = client.get(VERSION_KEY())
    if value is None:
        client.set(VERSION_KEY(), _fresh_start(), nx=True)
        value = client.get(VERSION_KEY())
    return bytes(value)


async def config_version_async() -> bytes:
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
        sync_client().incr(VERSION_KEY())

    bump()
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(bump)
