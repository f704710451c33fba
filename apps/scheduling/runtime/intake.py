"""How a worker takes its next jobs: only as many as it has free slots, strictly `high`, then
`medium`, then `low`.

The queues hold only work that can start now: a task that needs a model deployment reaches its
queue once the deployment has taken it (apps.scheduling.coordination.capacity), so a worker never
holds a job it cannot run. Bulk work (Task.bulk: a batch's requests) is taken only with room to
spare: never into the last BULK_RESERVED_SLOTS free slots of a worker, which stay for live work;
a bulk job that cannot be taken is passed over and stays queued, in order.

One script takes up to as many jobs as the worker has free slots, in priority order, and returns
their hashes and the deployments they hold: a busy worker pays one round trip for a batch of
jobs, not several per job (taking one job at a time with RQ's calls capped a worker at about 40
jobs a second under load: each reply waited for the GIL behind the event loop). When nothing can
be taken, an idle worker blocks in RQ's BLPOP over its queues in priority order, so a new job
starts the moment it is pushed.
"""

from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue
from rq.exceptions import DequeueTimeout
from rq.job import Job

from apps.core.redis import LuaScript
from apps.scheduling.coordination.capacity import grant_of, grants_key
from apps.scheduling.coordination.queues import BULK_KEY

# How far into each queue a worker looks for jobs it can run (past bulk jobs it has no room for).
SCAN_DEPTH = 200

# KEYS: the queues in priority order, the bulk set, the grants. ARGV: the number of queues, how
# many jobs to take, the scan depth, RQ's job key prefix, the bulk jobs this worker may take.
# Returns, per job taken: the queue key, the job id, whether it is bulk work ("1"/"0"), the
# deployment it holds ("" for none), its hash.
_TAKE = LuaScript("""
local queues = tonumber(ARGV[1])
local wanted = tonumber(ARGV[2])
local depth = tonumber(ARGV[3])
local bulk_room = tonumber(ARGV[5])
local bulk_key, grants = KEYS[queues + 1], KEYS[queues + 2]
local taken = {}
for q = 1, queues do
  if #taken >= wanted * 5 then break end
  local ids = redis.call('lrange', KEYS[q], 0, depth - 1)
  for _, id in ipairs(ids) do
    if #taken >= wanted * 5 then break end
    local bulk = redis.call('sismember', bulk_key, id) == 1
    if not bulk or bulk_room > 0 then
      redis.call('lrem', KEYS[q], 1, id)
      if bulk then
        redis.call('srem', bulk_key, id)
        bulk_room = bulk_room - 1
      end
      local grant = redis.call('hget', grants, id) or ''
      table.insert(taken, KEYS[q])
      table.insert(taken, id)
      table.insert(taken, bulk and '1' or '0')
      table.insert(taken, grant)
      table.insert(taken, redis.call('hgetall', ARGV[4] .. id))
    end
  end
end
return taken
""")


@dataclass
class Taken:
    job: Job
    queue: Queue
    # RQ moved it to the queue's intermediate list (a worker on one queue): to be cleared there.
    intermediate: bool = False
    # Bulk work (its mark was taken off the bulk set; a put-back restores it).
    bulk: bool = False
    # The deployment that took the task ("" for none), and the task's flow there.
    deployment: str = ""
    flow: str = ""


class Intake:
    def __init__(self, *, queues: list[Queue], connection: redis.Redis) -> None:
        self.queues = queues
        self.by_key = {queue.key: queue for queue in queues}
        self.connection = connection

    def take(self, *, block_s: int, limit: int = 1, bulk_room: int = 0) -> list[Taken]:
        """Up to `limit` jobs this worker may run now (bulk jobs: up to `bulk_room`), waiting up
        to `block_s` for one; none if there are none."""
        taken = self._take_ready(limit, bulk_room)
        if taken:
            return taken
        try:
            popped = Queue.dequeue_any(self.queues, block_s, connection=self.connection)
        except DequeueTimeout:
            return []
        if popped is None:
            return []
        job, queue = popped
        # RQ pops through an intermediate list when a worker listens on a single queue.
        intermediate = len(self.queues) == 1
        bulk = bool(self.connection.srem(BULK_KEY(), job.id))
        held = grant_of(job.id)
        first = Taken(job, queue, intermediate, bulk, *(held or ("", "")))
        if bulk and bulk_room <= 0:
            # Woken by bulk work this worker keeps its room from: back to its queue, as it was.
            self.put_back(first)
            return []
        rest = self._take_ready(limit - 1, bulk_room - bulk) if limit > 1 else []
        return [first, *rest]

    def _take_ready(self, limit: int, bulk_room: int) -> list[Taken]:
        if limit <= 0:
            return []
        keys = [queue.key for queue in self.queues] + [BULK_KEY(), grants_key()]
        prefix = Job.redis_job_namespace_prefix
        args: list[Any] = [len(self.queues), limit, SCAN_DEPTH, prefix, bulk_room]
        reply = _TAKE(self.connection, keys, args)
        taken = []
        for index in range(0, len(reply), 5):
            queue_key, job_id, bulk, grant, fields = reply[index : index + 5]
            if not fields:
                continue  # its hash is gone (Redis lost it): the reconciler pushes it again
            job = Job(job_id.decode(), connection=self.connection)
            job.restore(dict(zip(fields[::2], fields[1::2], strict=True)))
            queue = self.by_key[queue_key.decode()]
            deployment, _, flow = (grant or b"").decode().partition("\t")
            taken.append(Taken(job, queue, False, bulk == b"1", deployment, flow))
        return taken

    def put_back(self, taken: Taken) -> None:
        """Return a job taken but not started to the head of its queue, as it was."""
        pipe = self.connection.pipeline()
        pipe.lpush(taken.queue.key, taken.job.id)
        if taken.intermediate:
            pipe.lrem(taken.queue.intermediate_queue_key, 1, taken.job.id)
        if taken.bulk:
            pipe.sadd(BULK_KEY(), taken.job.id)
        pipe.execute()
