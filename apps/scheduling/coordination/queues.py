"""The only place that knows queue names and how a task becomes an RQ job."""

import time
from typing import Any

import django_rq
import redis
from django.conf import settings
from rq import Queue
from rq.job import JobStatus
from rq.utils import now as rq_now

from apps.core.priorities import Priority
from apps.core.redis import LuaScript, key, sync_client
from apps.scheduling.coordination.capacity import CAPACITY_WAITING_REPLIES, capacity_waiting_in

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


def BULK_KEY() -> str:
    """The set of queued bulk tasks (Task.bulk): workers take them only with room to spare."""
    return key("bulk")


def _job_options(task_id: str, time_left_s: float | None) -> dict[str, Any]:
    """A task's job: its id is the task's, its time limit the task's time left at most."""
    return {
        "args": (task_id,),
        "job_id": task_id,
        "timeout": job_timeout_s(time_left_s),
        "result_ttl": 600,
        "failure_ttl": 24 * 3600,
    }


def job_push(
    *,
    task_id: str,
    priority: str,
    time_left_s: float | None,
    delay_s: float = 0,
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
        job_delay(task_id=task_id, delay_s=delay_s, pipe=client)
        return
    if bulk:
        client.sadd(BULK_KEY(), task_id)  # the mark first: a worker that takes the job finds it
    queue_for(priority).enqueue_call(JOB_FUNC, **_job_options(task_id, time_left_s), pipeline=pipe)


def job_delay(*, task_id: str, delay_s: float, pipe: Any = None) -> None:
    """Push the task again after `delay_s`.

    RQ's own scheduler forks from the worker, and a fork of a process that holds the model hangs;
    our housekeeping moves due tasks from this sorted set onwards instead."""
    client = pipe if pipe is not None else sync_client()
    client.zadd(DELAYED_KEY(), {task_id: time.time() + delay_s})


def job_save_in(
    pipe: Any, *, task_id: str, priority: str, time_left_s: float | None, bulk: bool = False
) -> None:
    """Write the task's job (its hash, status queued) without pushing it: a deployment pushes
    it onto its queue when it takes the task (apps.scheduling.coordination.capacity)."""
    queue = queue_for(priority)
    job = queue.create_job(
        JOB_FUNC,
        **_job_options(task_id, time_left_s),
        status=JobStatus.QUEUED,
    )
    job.enqueued_at = rq_now()
    if bulk:
        pipe.sadd(BULK_KEY(), task_id)
    job.save(pipeline=pipe)


def job_remove(*, task_id: str, priority: str) -> None:
    """Take the task's job off its queue and out of the delayed set, if it is there."""
    queue_for(priority).remove(task_id)
    pipe = sync_client().pipeline(transaction=False)
    pipe.zrem(DELAYED_KEY(), task_id)
    pipe.srem(BULK_KEY(), task_id)
    pipe.execute()


def delayed_count() -> int:
    return int(sync_client().zcard(DELAYED_KEY()))


def job_exists_in_queue(*, task_id: str, priority: str) -> bool:
    """Whether the task's job waits in its queue now (O(n) in the queue's length: housekeeping
    only, never on a request's path)."""
    return sync_client().lpos(queue_for(priority).key, task_id) is not None


def DELAYED_KEY() -> str:
    return key("delayed")


_POP_DUE = LuaScript("""
local due = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due > 0 then redis.call('zrem', KEYS[1], unpack(due)) end
return due
""")


def delayed_pop_due(*, limit: int = 500) -> list[str]:
    """Atomically take the ids of delayed tasks that are due (each is taken by one caller only)."""
    due = _POP_DUE(sync_client(), [DELAYED_KEY()], [time.time(), limit])
    return [item.decode() for item in due]


class JobCensus:
    """Which tasks RQ still holds a job for that will run them, for one reconciler round.

    A job hash alone is not enough: a worker that pops a job id (BLPOP) and is killed before it
    marks the job started leaves a hash saying `queued` that is in no queue, and a job marked
    started by a worker that then died says `started` until its timeout. So `queued` counts
    only when the id is in its queue (or RQ's intermediate list, which RQ cleans itself), and
    `started` only while its worker is registered. A job that failed inside RQ (say PostgreSQL
    was unreachable when it started) never runs the task. A task that waits in a deployment's
    line is held there (apps.scheduling.coordination.capacity), whatever its job says; one a
    deployment took is held by its job, like any other (pushed again, it keeps its deployment).
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

    def held(self, task_ids: list[str]) -> set[str]:
        """Which of these tasks RQ (or a deployment, or our delayed set) holds a job for that
        will run or wake them: one round trip for all, and the queues' lists when needed."""
        pipe = self.client.pipeline(transaction=False)
        for task_id in task_ids:
            capacity_waiting_in(pipe, task_id)
            pipe.hmget(f"rq:job:{task_id}", ["status", "worker_name"])
            pipe.zscore(DELAYED_KEY(), task_id)
        replies = iter(pipe.execute())
        held: set[str] = set()
        started_by: dict[str, str] = {}
        for task_id in task_ids:
            # Every reply is read, whatever the first says: they are in order.
            flags = [next(replies) for _ in range(CAPACITY_WAITING_REPLIES)]
            by_deployment = any(flags)
            status, worker = next(replies)
            delayed = next(replies) is not None
            if (
                by_deployment
                or delayed
                or status in (b"scheduled", b"deferred")
                or (status == b"queued" and task_id.encode() in self._waiting_ids())
            ):
                held.add(task_id)
            elif status == b"started" and worker:
                started_by[task_id] = worker.decode()
        workers = sorted(set(started_by.values()))
        if workers:
            pipe = self.client.pipeline(transaction=False)
            for worker in workers:
                pipe.exists(f"rq:worker:{worker}")
            alive = {w for w, up in zip(workers, pipe.execute(), strict=True) if up}
            held.update(task_id for task_id, worker in started_by.items() if worker in alive)
        return held


def queued_total() -> int:
    """Jobs waiting in the priority queues, cluster-wide."""
    return sum(queue_for(name).count for name in QUEUE_ORDER)
