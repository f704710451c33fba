"""How a worker takes its next job: only with a free slot, strictly `high`, then `medium`, then
`low`, and never a job whose lane is full here (apps.scheduling.lanes).

With room in every lane this is RQ's own blocking pop over the queues in priority order (BLPOP
serves the first non-empty list named), so an idle worker starts a new job the moment it is
pushed. With a lane full, a script takes the first job, in priority order, that does not need that
lane: the lane's jobs stay queued for workers with room, and work behind them is not held up.
"""

from dataclasses import dataclass

import redis
from rq import Queue
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.job import Job

from apps.scheduling.lanes import LaneGate
from apps.scheduling.queues import lane_key

# How far into each queue a worker with a full lane looks for a job it can run.
FIRST_FIT_DEPTH = 200
# With a lane full and nothing else to take, how long a worker waits for room (a unit freed
# here wakes it sooner) before it looks again: new work that needs no lane waits this long at
# most for a worker whose lane is full.
FIRST_FIT_WAIT_S = 0.05

# KEYS: the queues in priority order, then the sets of the full lanes. ARGV: queue count, depth.
_FIRST_FIT = """
local queues = tonumber(ARGV[1])
local depth = tonumber(ARGV[2])
for q = 1, queues do
  local ids = redis.call('lrange', KEYS[q], 0, depth - 1)
  for _, id in ipairs(ids) do
    local blocked = false
    for l = queues + 1, #KEYS do
      if redis.call('sismember', KEYS[l], id) == 1 then blocked = true break end
    end
    if not blocked then
      redis.call('lrem', KEYS[q], 1, id)
      return {KEYS[q], id}
    end
  end
end
return false
"""


@dataclass
class Taken:
    job: Job
    queue: Queue
    # The lane unit taken for it in this worker ("" for none).
    lane: str
    # RQ moved it to the queue's intermediate list (a worker on one queue): to be cleared there.
    intermediate: bool = False


class Intake:
    def __init__(self, *, queues: list[Queue], connection: redis.Redis, lanes: LaneGate) -> None:
        self.queues = queues
        self.connection = connection
        self.lanes = lanes
        self._first_fit = connection.register_script(_FIRST_FIT)

    def take(self, *, block_s: int) -> Taken | None:
        """The next job this worker may run now, waiting up to `block_s` for one (or briefly,
        when a lane is full); None if there is none."""
        full = self.lanes.full()
        if full:
            return self._take_first_fit(full)
        try:
            popped = Queue.dequeue_any(self.queues, block_s, connection=self.connection)
        except DequeueTimeout:
            return None
        if popped is None:
            return None
        job, queue = popped
        # RQ pops through an intermediate list when a worker listens on a single queue.
        intermediate = len(self.queues) == 1
        return Taken(job, queue, self._claim_lane(job.id), intermediate)

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
            pipe.execute()
        finally:
            if taken.lane:
                self.lanes.release(taken.lane)

    def _take_first_fit(self, full: list[str]) -> Taken | None:
        keys = [queue.key for queue in self.queues] + [lane_key(lane) for lane in full]
        self.lanes.released.clear()
        found = self._first_fit(keys=keys, args=[len(self.queues), FIRST_FIT_DEPTH])
        if not found:
            self.lanes.released.wait(FIRST_FIT_WAIT_S)
            return None
        queue_key, job_id = (part.decode() for part in found)
        queue = next(queue for queue in self.queues if queue.key == queue_key)
        try:
            job = Job.fetch(job_id, connection=self.connection)
        except NoSuchJobError:
            return None  # its hash is gone: the reconciler pushes the task again
        return Taken(job=job, queue=queue, lane=self._claim_lane(job.id))

    def _claim_lane(self, job_id: str) -> str:
        """The job's lane, if it needs one this worker limits: its mark is taken off the queue
        (the job is out of the queue now) and one unit of the lane taken here."""
        lanes = list(self.lanes.capacity)
        if not lanes:
            return ""
        pipe = self.connection.pipeline(transaction=False)
        for lane in lanes:
            pipe.srem(lane_key(lane), job_id)
        for lane, removed in zip(lanes, pipe.execute(), strict=True):
            if removed and self.lanes.take(lane):
                return lane
        return ""
