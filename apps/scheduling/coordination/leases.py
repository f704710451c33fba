"""Every lease the platform takes in Redis, and the state a lease can be found in.

Two kinds, each written once:

- `ExclusiveLease`: one holder at a time, known by its token. A task's lock (`task_lock`) is one:
  a task runs in at most one worker. The housekeeping's lease is another: one process at a time
  runs it. A holder renews its lease well within its TTL; a crashed holder's lease lapses by
  itself, and someone else may take it.
- `LeaseSet`: at most `limit` holders at once (an app's answers served at once, a deployment's
  sequences in flight), each a member of a sorted set scored with the moment it lapses, on
  Redis's own clock (the same for every host). Every acquire drops lapsed members first, so a
  crashed holder costs capacity for one TTL at most.

A task's lock is only half of the fence that keeps an attempt from writing after another one took
its task over: Redis can lose the lock (a restart, a flush, a failover), so each attempt also
carries its attempt number, and every write a worker makes to PostgreSQL is guarded by it
(apps.scheduling.tasks.transitions), while every event it appends to the task's log is guarded by
the lock's token (apps.scheduling.runtime.outbox). An attempt that finds its lock MISSING takes it
back (`retake`) if PostgreSQL still says the attempt is its own; one that finds it TAKEN abandons
the attempt (apps.scheduling.runtime.attempts).
"""

import enum
import math
import uuid
from typing import Any

from apps.core.redis import LuaScript, async_client, key, sync_client


class LeaseState(enum.IntEnum):
    """What a holder finds when it renews (or writes under) its lease."""

    HELD = 1
    # Gone: it lapsed, or Redis lost it. Free for anyone, its last holder included.
    MISSING = 0
    # Someone else holds it now.
    TAKEN = -1


# ARGV: token, TTL in ms. HELD (renewed), MISSING or TAKEN.
_RENEW = LuaScript("""
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
if holder then return -1 end
return 0
""")
# Take it if free, or renew it if ours: HELD, or TAKEN when another holds it.
_HOLD = LuaScript("""
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
if holder then return -1 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
""")
# Delete only if ours: a lease that lapsed and was taken by another stays theirs.
_RELEASE = LuaScript("""
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
""")


class ExclusiveLease:
    """One holder at a time (see the module's docstring)."""

    def __init__(self, lease_key: str, *, ttl_s: float, token: str | None = None) -> None:
        self.key = lease_key
        self.token = token or uuid.uuid4().hex
        self.ttl_ms = max(1, math.ceil(ttl_s * 1000))

    def acquire(self) -> bool:
        """Take it if nobody holds it."""
        return bool(sync_client().set(self.key, self.token, nx=True, px=self.ttl_ms))

    def hold(self) -> LeaseState:
        """Take it if free, renew it if ours (one atomic step): HELD or TAKEN."""
        return LeaseState(int(_HOLD(sync_client(), [self.key], [self.token, self.ttl_ms])))

    async def retake(self) -> LeaseState:
        """`hold` from the event loop: a holder whose lease went MISSING takes it back."""
        reply = await _HOLD.run(async_client(), [self.key], [self.token, self.ttl_ms])
        return LeaseState(int(reply))

    def renew_in(self, pipe: Any) -> None:
        """Queue a renewal in a pipeline (many leases in one round trip); its reply reads as a
        LeaseState."""
        _RENEW.queue(pipe, [self.key], [self.token, self.ttl_ms])

    def release(self) -> None:
        _RELEASE(sync_client(), [self.key], [self.token])

    async def arelease(self) -> None:
        await _RELEASE.run(async_client(), [self.key], [self.token])


def task_lock_key(task_id: str) -> str:
    return key("task", task_id, "lock")


def task_lock(task_id: str, *, ttl_s: float, token: str | None = None) -> ExclusiveLease:
    """The lock of a task: whoever holds it runs the task's current attempt."""
    return ExclusiveLease(task_lock_key(task_id), ttl_s=ttl_s, token=token)


def lock_held(task_id: str) -> bool:
    return bool(sync_client().exists(task_lock_key(task_id)))


# --- leases counted in a set ------------------------------------------------------------------

# Redis's clock in ms, for scripts that need "now" (every host agrees on it).
NOW_MS_LUA = """
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# KEYS[1]: the set; ARGV: limit, TTL in ms, member. 1 when taken (or already held: renewed).
_SET_ACQUIRE = LuaScript(
    NOW_MS_LUA
    + """
redis.call('zremrangebyscore', KEYS[1], '-inf', now_ms)
if not redis.call('zscore', KEYS[1], ARGV[3]) and
    redis.call('zcard', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('zadd', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[3])
redis.call('pexpire', KEYS[1], math.max(tonumber(ARGV[2]), redis.call('pttl', KEYS[1])))
return 1
"""
)
# ARGV: TTL in ms, member. Only a lease that still exists is renewed: one that lapsed (and may
# have been counted out) is not brought back. 1 when renewed.
_SET_RENEW = LuaScript(
    NOW_MS_LUA
    + """
local renewed = redis.call('zadd', KEYS[1], 'XX', 'CH', now_ms + tonumber(ARGV[1]), ARGV[2])
if renewed == 1 then
  redis.call('pexpire', KEYS[1], math.max(tonumber(ARGV[1]), redis.call('pttl', KEYS[1])))
end
return renewed
"""
)
_SET_COUNT = LuaScript(
    NOW_MS_LUA
    + """
return redis.call('zcount', KEYS[1], '(' .. now_ms, '+inf')
"""
)


class LeaseSet:
    """At most `limit` holders at once (see the module's docstring). A member is whatever names
    its holder: an answer's random id, a task's id."""

    def __init__(self, set_key: str, *, ttl_s: float) -> None:
        self.key = set_key
        self.ttl_ms = max(1, math.ceil(ttl_s * 1000))

    async def acquire(self, member: str, *, limit: int) -> bool:
        reply = await _SET_ACQUIRE.run(async_client(), [self.key], [limit, self.ttl_ms, member])
        return bool(int(reply))

    async def renew(self, member: str) -> bool:
        reply = await _SET_RENEW.run(async_client(), [self.key], [self.ttl_ms, member])
        return bool(int(reply))

    def renew_in(self, pipe: Any, member: str) -> None:
        """Queue a renewal in a pipeline; its reply is 1 when renewed."""
        _SET_RENEW.queue(pipe, [self.key], [self.ttl_ms, member])

    async def release(self, member: str) -> None:
        await async_client().zrem(self.key, member)

    async def count(self) -> int:
        """Leases held now (lapsed ones not counted)."""
        return int(await _SET_COUNT.run(async_client(), [self.key]))
