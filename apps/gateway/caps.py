"""The per-app cap on answers served at once (Dify's `max_active_requests`), exact across web
processes and self-healing.

Each served answer holds a lease in its app's LeaseSet (apps.scheduling.coordination.leases): the
web process renews it while the answer is served and releases it when it ends (finished, failed,
or the client went away); a process that dies costs capacity for one lease TTL at most.
"""

import asyncio
import contextlib
import logging
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
from apps.core.redis import key
from apps.scheduling.coordination.leases import LeaseSet
from apps.scheduling.tasks.selectors import task_is_over

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Lease:
    """One served answer's place in its app's cap."""

    leases: LeaseSet
    member: str
    released: bool = False

    @property
    def ttl_s(self) -> float:
        return self.leases.ttl_ms / 1000


def leases_key(app_id: object) -> str:
    return key("cap", app_id)


def _app_leases(app_id: object) -> LeaseSet:
    return LeaseSet(leases_key(app_id), ttl_s=float(settings.GATEWAY["CAP_LEASE_TTL_S"]))


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
    lease = Lease(_app_leases(app.id), member=uuid.uuid4().hex)
    if not await lease.leases.acquire(lease.member, limit=limit):
        raise TooManyRequests(
            f"Too many requests: this app serves at most {limit} answers at once. "
            "Please try again later.",
            headers={"Retry-After": "1"},
        )
    return lease


async def lease_renew(lease: Lease) -> bool:
    return await lease.leases.renew(lease.member)


async def lease_release(lease: Lease) -> None:
    lease.released = True
    try:
        await lease.leases.release(lease.member)
    except Exception:
        # The lease lapses by itself within its TTL.
        logger.warning("could not release an answer slot", exc_info=True)


async def leases_active(app_id: object) -> int:
    """Leases held now (lapsed ones not counted)."""
    return await _app_leases(app_id).count()


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
