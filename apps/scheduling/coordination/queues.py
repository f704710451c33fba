"""The only place that knows queue names and how a task becomes an RQ job."""

import time
from typing import TYPE_CHECKING, Any

import django_rq
import redis
from django.conf import settings
from rq import Queue

from apps.core.priorities import Priority
from apps.core.redis import key, sync_client

if TYPE_CHECKING:
    from apps.scheduling.models import Task

# Workers listen in this order: strictly the most urgent queue first.
QUEUE_ORDER: tuple[str, ...] = (Priority.HIGH.value, Priority.MEDIUM.value, Priority.LOW.value)
JOB_FUNC = "apps.scheduling.jobs.task_run_job"


def queue_for(priority: str, connection: redis.Redis | None = None) -> Queue:
    """The RQ queue of a priority, on the process's shared Redis client by default (django-rq
    would open a new client, and so a new TCP connection, on every call)."""
    return django_rq.get_queue(priority, commit_mode="auto", connection=connection or sync_client())


def job_timeout_s(time_left_s: float | None) -> int:
    """RQ's hard limit for one run: the configured timeout, capped by the time left."""
    limit = settings.PLATFORM["TASK_TIMEOUT_S"]
    if time_left_s is not None:
        limit = min(limit, max(1, int(time_left_s) + 1))
    return int(limit)


def lane_key(lane: str) -> str:
    """The set of queued tasks that need this lane (see TaskKind.lane): a worker whose lane is
    full passes over them when it takes work."""
    return key("lane", lane)


def BULK_KEY() -> str:
    """The set of queued bulk tasks (Task.bulk): workers take them only with room to spare."""
    return key("bulk")


def job_push(
    *,
    task_id: str,
    priority: str,
    time_left_s: float | None,
    delay_s: float = 0,
    lane: str = "",
    bulk: bool = False,
    pipe: Any = None,
) -> None:
    """Put the task's job on the queue of its priority, now or after a delay.

    The job id is the task id, so pushing the same task twice leaves one job in Redis, and the
    worker side (lock plus guarded status update) makes a stale duplicate a no-op. With `pipe`,
    the commands go in the caller's pipeline (many tasks in one round trip).
    """
    client = pipe if pipe is not None else sync_client()
    if delay_s > 0:
        # RQ's own scheduler forks from the worker, and a fork of a process that holds the model
        # hangs; our maintenance loop moves due tasks from this sorted set to their queue instead.
        client.zadd(DELAYED_KEY(), {task_id: time.time() + delay_s})
        return
    # The marks first: a worker that takes the job must find them.
    if lane:
        client.sadd(lane_key(lane), task_id)
    if bulk:
        client.sadd(BULK_KEY(), task_id)
    queue_for(priority).enqueue_call(
        JOB_FUNC,
        args=(task_id,),
        job_id=task_id,
        timeout=job_timeout_s(time_left_s),
        result_ttl=600,
        failure_ttl=24 * 3600,
        pipeline=pipe,
    )


def task_push(task: "Task", *, delay_s: float = 0) -> None:
    """Push a task's job (see job_push) from its row."""
    job_push(
        task_id=str(task.id),
        priority=task.priority,
        time_left_s=task.time_left_s(),
        delay_s=delay_s,
        lane=task.lane,
        bulk=task.bulk,
    )


def tasks_push(tasks: "list[Task]") -> None:
    """Push many tasks' jobs in one round trip (one MULTI: RQ puts a pipeline it is given in
    transaction mode, which must come before any command)."""
    pipe = sync_client().pipeline()
    pipe.multi()
    for task in tasks:
        job_push(
            task_id=str(task.id),
            priority=task.priority,
            time_left_s=task.time_left_s(),
            lane=task.lane,
            bulk=task.bulk,
            pipe=pipe,
        )
    pipe.execute()


def job_remove(*, task_id: str, priority: str, lane: str = "") -> None:
    """Take the task's job off its queue and out of the delayed set, if it is there."""
    queue_for(priority).remove(task_id)
    sync_client().zrem(DELAYED_KEY(), task_id)
    sync_client().srem(BULK_KEY(), task_id)
    if lane:
        sync_client().srem(lane_key(lane), task_id)


def delayed_count() -> int:
    return int(sync_client().zcard(DELAYED_KEY()))


def job_exists_in_queue(*, task_id: str, priority: str) -> bool:
    """Whether the task's job waits in its queue now (O(n) in the queue's length: housekeeping
    only, never on a request's path)."""
    return sync_client().lpos(queue_for(priority).key, task_id) is not None


def DELAYED_KEY() -> str:
    return key("delayed")


_POP_DUE = """
local due = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due > 0 then redis.call('zrem', KEYS[1], unpack(due)) end
return due
"""


def delayed_pop_due(*, limit: int = 500) -> list[str]:
    """Atomically take the ids of delayed tasks that are due (each is taken by one caller only)."""
    due = sync_client().eval(_POP_DUE, 1, DELAYED_KEY(), time.time(), limit)
    return [item.decode() for item in due]


class JobCensus:
    """Which tasks RQ still holds a job for that will run them, for one reconciler round.

    A job hash alone is not enough: a worker that pops a job id (BLPOP) and is killed before it
    marks the job started leaves a hash saying `queued` that is in no queue, and a job marked
    started by a worker that then died says `started` until its timeout. So `queued` counts
    only when the id is in its queue (or RQ's intermediate list, which RQ cleans itself), and
    `started` only while its worker is registered. A job that failed inside RQ (say PostgreSQL
    was unreachable when it started) never runs the task. `finished` counts: a task waiting for
    a concurrency slot has a finished job and is woken by the slot's release.
    The queues are read once per round, and only if some job says `queued`.
    """

    def __init__(self) -> None:
        self.client = sync_client()
        self._waiting: set[bytes] | None = None

    def _waiting_ids(self) -> set[bytes]:
        if self._waiting is None:
            pipe = self.client.pipeline(transaction=False)
            for name in QUEUE_ORDER:
                queue_key = queue_for(name).key
                pipe.lrange(queue_key, 0, -1)
                pipe.lrange(f"{queue_key}:intermediate", 0, -1)
            self._waiting = {job_id for ids in pipe.execute() for job_id in ids}
        return self._waiting

    def holds(self, task_id: str) -> bool:
        """Whether RQ (or our delayed set) holds a job that will run or wake the task."""
        reply: Any = self.client.hmget(f"rq:job:{task_id}", ["status", "worker_name"])
        status, worker = reply
        if status in (b"finished", b"scheduled", b"deferred"):
            return True
        if status == b"queued" and task_id.encode() in self._waiting_ids():
            return True
        if status == b"started" and worker and self.client.exists(f"rq:worker:{worker.decode()}"):
            return True
        return self.client.zscore(DELAYED_KEY(), task_id) is not None


def queued_total() -> int:
    """Jobs waiting in the priority queues, cluster-wide."""
    return sum(queue_for(name).count for name in QUEUE_ORDER)
