"""Per-task Redis lock: a task runs in at most one worker at a time."""

import uuid

from apps.core.redis import key, sync_client

# Delete only if we still hold it: a lock that expired and was taken by another worker stays theirs.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


class TaskLock:
    def __init__(self, task_id: str, ttl_s: float) -> None:
        self.key = key("task", task_id, "lock")
        self.token = uuid.uuid4().hex
        self.ttl_ms = int(ttl_s * 1000)

    def acquire(self) -> bool:
        return bool(sync_client().set(self.key, self.token, nx=True, px=self.ttl_ms))

    def extend(self) -> bool:
        return bool(sync_client().eval(_EXTEND, 1, self.key, self.token, self.ttl_ms))

    def release(self) -> None:
        sync_client().eval(_RELEASE, 1, self.key, self.token)
