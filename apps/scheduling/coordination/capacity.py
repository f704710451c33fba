"""Concurrency slots: at most N tasks sharing a key (say, one app's model server) run at once.

A task that finds every slot taken does not fail and does not spend an attempt: it waits in a
per-key set ordered by priority, then by arrival, and the task that frees a slot puts the best
waiter back on its queue. Slots are leases renewed while the task runs, so a crashed worker's slot
comes back by itself.
"""

import time

from apps.core.priorities import PRIORITY_RANK, Priority
from apps.core.redis import key, sync_client

# Take a free slot unless a waiter ranks before us: a woken waiter stays in the waiting set until
# it takes its slot, so a later arrival of lower rank cannot take the slot from under it.
# ARGV: the task, the group's limit, now, the lease's end, the task's rank, the slots this task
# may take up to (the limit; less for bulk work, which leaves live work the last ones).
_ACQUIRE = """
redis.call('set', KEYS[3], ARGV[2])
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[3])
if redis.call('zscore', KEYS[1], ARGV[1]) then
  redis.call('zadd', KEYS[1], ARGV[4], ARGV[1])
  return 1
end
if redis.call('zcard', KEYS[1]) < tonumber(ARGV[6]) then
  local best = redis.call('zrange', KEYS[2], 0, 0, 'WITHSCORES')
  if #best == 0 or best[1] == ARGV[1] or tonumber(ARGV[5]) <= tonumber(best[2]) then
    redis.call('zadd', KEYS[1], ARGV[4], ARGV[1])
    redis.call('zrem', KEYS[2], ARGV[1])
    return 1
  end
end
redis.call('zadd', KEYS[2], 'NX', ARGV[5], ARGV[1])
return 0
"""

# Free our slot (if we hold one) and name the waiter whose turn it is, while slots are free.
_RELEASE = """
redis.call('zrem', KEYS[1], ARGV[1])
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[2])
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[3]) then return false end
local best = redis.call('zrange', KEYS[2], 0, 0)
if #best == 0 then return false end
return best[1]
"""

_RENEW = """
if redis.call('zscore', KEYS[1], ARGV[1]) then
  return redis.call('zadd', KEYS[1], ARGV[2], ARGV[1])
end
return false
"""


RENEW_SCRIPT = _RENEW


def wait_score(*, priority: str, enqueued_at_s: float) -> float:
    """Lower is served first: the priority class, then the arrival time."""
    return PRIORITY_RANK[Priority(priority)] * 1e11 + enqueued_at_s


class Slot:
    def __init__(self, *, name: str, limit: int, task_id: str, lease_s: float) -> None:
        self.holders = key("slots", name, "holders")
        self.waiters = key("slots", name, "waiting")
        self.limit_key = key("slots", name, "limit")
        self.limit = limit
        self.task_id = task_id
        self.lease_s = lease_s

    def acquire(self, *, score: float, up_to: int | None = None) -> bool:
        """Take a slot if one is free (counting only up to `up_to` of the group's), else wait
        in line."""
        now = time.time()
        keys = [self.holders, self.waiters, self.limit_key]
        cap = self.limit if up_to is None else min(up_to, self.limit)
        args: list[str | float] = [self.task_id, self.limit, now, now + self.lease_s, score, cap]
        return bool(sync_client().eval(_ACQUIRE, 3, *keys, *args))

    def renew(self) -> None:
        sync_client().eval(_RENEW, 1, self.holders, self.task_id, time.time() + self.lease_s)

    def release(self) -> str | None:
        """Free the slot; returns the id of the waiting task whose turn it is now, if any."""
        keys = [self.holders, self.waiters]
        woken = sync_client().eval(_RELEASE, 2, *keys, self.task_id, time.time(), self.limit)
        return woken.decode() if isinstance(woken, bytes) else None


def waiting_keys() -> list[str]:
    """Names of the slot groups that have waiters (for the housekeeping's backstop)."""
    prefix, suffix = key("slots", ""), ":waiting"
    names = sync_client().scan_iter(match=key("slots", "*", "waiting"), count=500)
    return [name.decode()[len(prefix) : -len(suffix)] for name in names]


def slot_wake_next(name: str) -> str | None:
    """Hand a free slot of the group to its best waiter (after a crashed holder's lease lapsed)."""
    limit = sync_client().get(key("slots", name, "limit"))
    if limit is None:
        return None
    return Slot(name=name, limit=int(limit), task_id="", lease_s=0).release()


def slot_forget_waiter(name: str, task_id: str) -> None:
    sync_client().zrem(key("slots", name, "waiting"), task_id)
