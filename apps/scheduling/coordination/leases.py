"""Per-task Redis lock: a task runs in at most one worker at a time.

A lock alone is not enough: Redis can lose it (a restart, a flush, a failover), and then another
worker could start the same task while the first goes on. So the lock is only half of the fence:
each attempt also carries its attempt number, and every write a worker makes to PostgreSQL is
guarded by it (see apps.scheduling.tasks.transitions), while every event it appends to the task's
log is guarded by the lock's token (apps.scheduling.runtime.outbox). A worker that finds its lock
gone takes it back if nobody holds it and PostgreSQL still says the attempt is its own; otherwise it
abandons the attempt (see apps.scheduling.runtime.attempts).
"""

import enum
import uuid

from apps.core.redis import key, sync_client

# Delete only if we still hold it: a lock that expired and was taken by another worker stays theirs.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# 1: extended; 0: the lock is gone (Redis lost it, or it lapsed); -1: someone else holds it.
_EXTEND = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
if holder then return -1 end
return 0
"""


# Take the lock back for its holder: 1 if it is ours now (already, or it was free), -1 if
# another holds it.
_RETAKE = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
if holder then return -1 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


class LockState(enum.IntEnum):
    HELD = 1
    MISSING = 0
    TAKEN = -1


def task_lock_key(task_id: str) -> str:
    return key("task", task_id, "lock")


class TaskLock:
    def __init__(self, task_id: str, ttl_s: float, token: str | None = None) -> None:
        self.task_id = task_id
        self.key = task_lock_key(task_id)
        self.token = token or uuid.uuid4().hex
        self.ttl_ms = int(ttl_s * 1000)

    def acquire(self) -> bool:
        return bool(sync_client().set(self.key, self.token, nx=True, px=self.ttl_ms))

    def extend(self) -> LockState:
        return LockState(int(sync_client().eval(_EXTEND, 1, self.key, self.token, self.ttl_ms)))

    def release(self) -> None:
        sync_client().eval(_RELEASE, 1, self.key, self.token)


def lock_held(task_id: str) -> bool:
    return bool(sync_client().exists(task_lock_key(task_id)))


EXTEND_SCRIPT = _EXTEND
RETAKE_SCRIPT = _RETAKE
