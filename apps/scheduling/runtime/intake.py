"""How a worker takes its next jobs: only as many as it has free slots, strictly `high`, then
`medium`, then `low`, and never more of a lane's jobs than the lane has room for here
(apps.scheduling.runtime.lanes); a lane's jobs it cannot run stay queued, in order, for workers with
room.

Bulk work (Task.bulk: a batch's requests) is taken only with room to spare: never into the last
BULK_RESERVED_SLOTS free slots of a worker, nor the last unit of a lane, which stay for live
work; a bulk job that cannot be taken is passed over like a job of a full lane.

One script takes up to as many jobs as the worker has free slots, in priority order, claims
their lanes and returns their hashes: a busy worker pays one round trip for a batch of jobs, not
several per job (taking one job at a time with RQ's calls capped a worker at about 40 jobs a
second under load: each reply waited for the GIL behind the event loop). When nothing can be
taken, an idle worker blocks in RQ's BLPOP over its queues in priority order, so a new job
starts the moment it is pushed.
"""

from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue
from rq.exceptions import DequeueTimeout
from rq.job import Job

from apps.scheduling.coordination.queues import BULK_KEY, lane_key
from apps.scheduling.runtime.lanes import LaneGate

# How far into each queue a worker looks for jobs it can run (past jobs of full lanes).
SCAN_DEPTH = 200
# With a lane full and nothing else to take, how long a worker waits for room (a unit freed
# here wakes it sooner) before it looks again: new work that needs no lane waits this long at
# most for a worker whose lane is full.
LANE_WAIT_S = 0.05

# KEYS: the queues in priority order, then this worker's lanes' sets, then the bulk set. ARGV:
# the number of queues, how many jobs to take, the scan depth, RQ's job key prefix, the slots
# bulk work may take, then each lane's room here and the units of it bulk work leaves (in KEYS'
# order).
# Returns, per job taken: the queue key, the job id, the lane claimed ("" for none), whether it
# is bulk work ("1"/"0"), its hash.
_TAKE = """
local queues = tonumber(ARGV[1])
local wanted = tonumber(ARGV[2])
local depth = tonumber(ARGV[3])
local bulk_room = tonumber(ARGV[5])
local bulk_key = KEYS[#KEYS]
local room, kept = {}, {}
for l = queues + 1, #KEYS - 1 do
  room[l] = tonumber(ARGV[6 + 2 * (l - queues - 1)])
  kept[l] = tonumber(ARGV[7 + 2 * (l - queues - 1)])
end
local taken = {}
for q = 1, queues do
  if #taken >= wanted * 5 then break end
  local ids = redis.call('lrange', KEYS[q], 0, depth - 1)
  for _, id in ipairs(ids) do
    if #taken >= wanted * 5 then break end
    local bulk = redis.call('sismember', bulk_key, id) == 1
    local blocked = bulk and bulk_room <= 0
    local lane = nil
    for l = queues + 1, #KEYS - 1 do
      if not blocked and redis.call('sismember', KEYS[l], id) == 1 then
        local spare = room[l]
        if bulk then spare = spare - kept[l] end
        if spare > 0 then lane = l else blocked = true end
        break
      end
    end
    if not blocked then
      redis.call('lrem', KEYS[q], 1, id)
      local name = ''
      if lane then
        redis.call('srem', KEYS[lane], id)
        room[lane] = room[lane] - 1
        name = KEYS[lane]
      end
      if bulk then
        redis.call('srem', bulk_key, id)
        bulk_room = bulk_room - 1
      end
      table.insert(taken, KEYS[q])
      table.insert(taken, id)
      table.insert(taken, name)
      table.insert(taken, bulk and '1' or '0')
      table.insert(taken, redis.call('hgetall', ARGV[4] .. id))
    end
  end
end
return taken
"""


@dataclass
class Taken:
    job: Job
    queue: Queue
    # The lane unit taken for it in this worker ("" for none).
    lane: str
    # RQ moved it to the queue's intermediate list (a worker on one queue): to be cleared there.
    intermediate: bool = False
    # Bulk work (its mark was taken off the bulk set; a put-back restores it).
    bulk: bool = False


class Intake:
    def __init__(self, *, queues: list[Queue], connection: redis.Redis, lanes: LaneGate) -> None:
        self.queues = queues
        self.by_key = {queue.key: queue for queue in queues}
        self.connection = connection
        self.lanes = lanes
        self.lane_names = list(lanes.capacity)
        self.lane_by_key = {lane_key(lane): lane for lane in self.lane_names}
        self._take = connection.register_script(_TAKE)

    def take(self, *, block_s: int, limit: int = 1, bulk_room: int = 0) -> list[Taken]:
        """Up to `limit` jobs this worker may run now (bulk jobs: up to `bulk_room`), waiting up
        to `block_s` for one (or briefly, when a lane is full); none if there are none."""
        self.lanes.released.clear()
        taken = self._take_ready(limit, bulk_room)
        if taken:
            return taken
        if self.lanes.full():
            self.lanes.released.wait(LANE_WAIT_S)
            return []
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
        first = Taken(job, queue, self._claim_lane(job.id), intermediate, bulk)
        if bulk and (bulk_room <= 0 or not self.lanes.spared_for_bulk(first.lane)):
            # Woken by bulk work this worker keeps its room from: back to its queue, as it was.
            self.put_back(first)
            self.lanes.released.wait(LANE_WAIT_S)
            return []
        rest = self._take_ready(limit - 1, bulk_room - bulk) if limit > 1 else []
        return [first, *rest]

    def _take_ready(self, limit: int, bulk_room: int) -> list[Taken]:
        if limit <= 0:
            return []
        room = self.lanes.room()
        keys = [queue.key for queue in self.queues] + [lane_key(lane) for lane in room]
        prefix = Job.redis_job_namespace_prefix
        lanes: list[Any] = []
        for lane, free in room.items():
            lanes += [free, self.lanes.kept_from_bulk(lane)]
        args: list[Any] = [len(self.queues), limit, SCAN_DEPTH, prefix, bulk_room, *lanes]
        reply = self._take(keys=[*keys, BULK_KEY()], args=args)
        taken = []
        for index in range(0, len(reply), 5):
            queue_key, job_id, lane_set, bulk, fields = reply[index : index + 5]
            lane = self.lane_by_key.get(lane_set.decode(), "") if lane_set else ""
            if lane and not self.lanes.take(lane):
                lane = ""  # (cannot happen: the script counted this worker's room)
            if not fields:
                # Its hash is gone (Redis lost it): the reconciler pushes the task again.
                if lane:
                    self.lanes.release(lane)
                continue
            job = Job(job_id.decode(), connection=self.connection)
            job.restore(dict(zip(fields[::2], fields[1::2], strict=True)))
            queue = self.by_key[queue_key.decode()]
            taken.append(Taken(job, queue, lane, bulk=bulk == b"1"))
        return taken

    def put_back(self, taken: Taken) -> None:
        """Return a job taken but not started to the head of its queue, as it was. Its lane
        unit is let go even if Redis cannot be reached (the reconciler pushes the job again)."""
        try:
            pipe = self.connection.pipeline()
            pipe.lpush(taken.queue.key, taken.job.id)
            if taken.intermediate:
                pipe.lrem(taken.queue.intermediate_queue_key, 1, taken.job.id)
            if taken.lane:
                pipe.sadd(lane_key(taken.lane), taken.job.id)
            if taken.bulk:
                pipe.sadd(BULK_KEY(), taken.job.id)
            pipe.execute()
        finally:
            if taken.lane:
                self.lanes.release(taken.lane)

    def _claim_lane(self, job_id: str) -> str:
        """The job's lane, if it needs one this worker limits: its mark is taken off (the job
        is out of the queue now) and one unit of the lane taken here."""
        if not self.lane_names:
            return ""
        pipe = self.connection.pipeline(transaction=False)
        for lane in self.lane_names:
            pipe.srem(lane_key(lane), job_id)
        for lane, removed in zip(self.lane_names, pipe.execute(), strict=True):
            if removed and self.lanes.take(lane):
                return lane
        return ""
