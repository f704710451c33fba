"""The per-app cap on answers served at once (Dify's `max_active_requests`), exact across web
processes and self-healing.

Each served answer holds a lease: a member of the app's Redis sorted set, scored with the time it
lapses. The web process renews its leases while the answer is served and removes them when it
ends (finished, failed, or the client went away). A process that dies leaves leases that nobody
renews: every acquire first drops lapsed leases, so a crash costs capacity for one lease TTL at
most, never for good. Acquire is one Lua script (drop lapsed, count, add), so two processes can
never both take the last slot. Time is Redis's clock, the same for every host.
"""

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from django.conf import settings

from apps.applications.models import App
from apps.core.background import in_background
from apps.core.db import db_sync_to_async
from apps.core.errors import TooManyRequests
from apps.core.redis import async_client, key
from apps.scheduling.tasks.selectors import task_is_over

logger = logging.getLogger(__name__)

# KEYS[1]: the app's lease set; ARGV: limit, lease TTL in ms, member. 1 when the lease was taken.
_ACQUIRE = """
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# KEYS[1]: the lease set; ARGV: lease TTL in ms, member. Only a lease that still exists is
# renewed: one that lapsed (and may have been dropped) is not brought back.
_RENEW = """
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local renewed = redis.call('ZADD', KEYS[1], 'XX', 'CH', now_ms + tonumber(ARGV[1]), ARGV[2])
if renewed == 1 then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
end
return renewed
"""

_COUNT = """
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now_ms, '+inf')
"""


@dataclass(eq=False)
class Lease:
    """A slot held by one served answer."""

    set_key: str
    member: str
    ttl_s: float
    released: bool = False

    @property
    def ttl_ms(self) -> int:
        return max(1, math.ceil(self.ttl_s * 1000))


def leases_key(app_id: object) -> str:
    return key("cap", app_id)


def cap_limit(app: App) -> int:
    """The app's cap, else the platform default; 0 means no cap."""
    if app.max_active_requests is not None:
        return int(app.max_active_requests)
    return int(settings.GATEWAY["MAX_ACTIVE_REQUESTS"])


async def lease_acquire(app: App) -> Lease | None:
    """A lease for one answer, None when the app has no cap; TooManyRequests when it is full."""
    limit = cap_limit(app)
    if limit <= 0:
        return None
    lease = Lease(
        set_key=leases_key(app.id),
        member=uuid.uuid4().hex,
        ttl_s=float(settings.GATEWAY["CAP_LEASE_TTL_S"]),
    )
    taken = await async_client().eval(_ACQUIRE, 1, lease.set_key, limit, lease.ttl_ms, lease.member)
    if not int(taken):
        raise TooManyRequests(
            f"Too many requests: this app serves at most {limit} answers at once. "
            "Please try again later.",
            headers={"Retry-After": "1"},
        )
    return lease


async def lease_renew(lease: Lease) -> bool:
    renewed = await async_client().eval(_RENEW, 1, lease.set_key, lease.ttl_ms, lease.member)
    return bool(int(renewed))


async def lease_release(lease: Lease) -> None:
    lease.released = True
    try:
        await async_client().zrem(lease.set_key, lease.member)
    except Exception:
        # The lease lapses by itself within its TTL.
        logger.warning("could not release an answer slot", exc_info=True)


async def leases_active(app_id: object) -> int:
    """Leases held now (lapsed ones not counted)."""
    return int(await async_client().eval(_COUNT, 1, leases_key(app_id)))


async def _renew_forever(lease: Lease) -> None:
    while True:
        await asyncio.sleep(lease.ttl_s / 3)
        try:
            if not await lease_renew(lease):
                logger.warning("an answer slot lapsed while still in use", extra={"lease": lease})
        except Exception:
            logger.warning("could not renew an answer slot", exc_info=True)


@asynccontextmanager
async def lease_kept(lease: Lease | None, task_id: str | None = None) -> AsyncIterator[None]:
    """Hold the lease for the block: renewed every third of its TTL, released at the end.

    With `task_id`, a block cut short because the client went away (cancelled, or its stream
    closed) before the answer ended hands the lease to a holder that keeps it
    until the task ends: dropping a connection and resuming the answer elsewhere must not free
    its slot while it is still being generated (the cap would count nothing)."""
    if lease is None:
        yield
        return
    renewer = asyncio.create_task(_renew_forever(lease))
    client_gone = False
    try:
        yield
    except (asyncio.CancelledError, GeneratorExit):
        client_gone = True
        raise
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        if task_id is not None and client_gone and not lease.released:
            in_background(lease_hold_until_over(lease, task_id))
        else:
            await lease_release(lease)


_task_is_over = db_sync_to_async(task_is_over)
# How often a held-over lease looks whether its task has ended.
HOLD_CHECK_S = 2.0


async def lease_hold_until_over(lease: Lease, task_id: str) -> None:
    """Keep an answer's lease until its task is final (or gone), then release it. The web
    process dying meanwhile costs one lease TTL, as for any lease."""
    renewed_at = time.monotonic()
    try:
        while not lease.released:
            if await _task_is_over(task_id=task_id):
                break
            await asyncio.sleep(min(HOLD_CHECK_S, lease.ttl_s / 3))
            if time.monotonic() - renewed_at >= lease.ttl_s / 3:
                renewed_at = time.monotonic()
                if not await lease_renew(lease):
                    return  # lapsed and dropped already: nothing left to release
    except Exception:
        logger.warning("could not hold an answer slot to its end", exc_info=True)
    finally:
        await lease_release(lease)


async def leased_stream(
    lease: Lease | None, source: AsyncIterator[bytes], task_id: str | None = None
) -> AsyncIterator[bytes]:
    """`source`, holding the lease from the first byte until the stream ends or is dropped.

    A stream that is never started renews nothing, so its lease lapses by itself.
    """
    try:
        async with lease_kept(lease, task_id):
            async for chunk in source:
                yield chunk
    finally:
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()
