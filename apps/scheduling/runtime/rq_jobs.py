"""RQ's bookkeeping for jobs that run side by side in one worker.

RQ keeps one execution per worker (`worker.execution`, `current_job`): its own methods assume a
worker runs one job at a time. The same records are kept here per job, with RQ's own classes, so
that RQ's registries, executions, results and heartbeats, and the django-rq admin that reads them,
see every running job: StartedJobRegistry holds each job's execution while it runs, the job hash
says `started` then `finished` (or `failed`), and heartbeats keep both alive.

If Redis lost a job's hash while it ran (a restart, a flush), nothing is written back for it:
RQ's methods would recreate a hash holding only a few fields, which RQ could not read. Nor when
the same id was pushed again meanwhile (a task sent back to its queue): that job is another
run's now. The task itself lives in PostgreSQL, which is what counts.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from rq import Queue
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.utils import now, utcformat
from rq.worker import SimpleWorker

from apps.core.redis import LuaScript

logger = logging.getLogger(__name__)


@dataclass
class RunningJob:
    job: Job
    queue: Queue
    execution: Execution


@runtime_checkable
class SlotsReporter(Protocol):
    def slots_record(self, pipeline: Any, *, busy: int, current_job_id: str | None) -> None: ...


def jobs_started(
    worker: SimpleWorker, started: list[tuple[Job, Queue, bool]], *, busy: int
) -> list[RunningJob]:
    """Record jobs as started by this worker, in one round trip (RQ's prepare_execution and
    prepare_job_execution, for several jobs at once). Each: (job, queue, taken through RQ's
    intermediate list)."""
    running = []
    with worker.connection.pipeline(transaction=False) as pipeline:
        for job, queue, intermediate in started:
            ttl = worker.get_heartbeat_ttl(job)
            execution = Execution.create(job, ttl, pipeline=pipeline, worker_name=worker.name)
            job.prepare_for_execution(worker.name, pipeline=pipeline)
            job.heartbeat(now(), ttl, pipeline=pipeline)
            if intermediate:
                pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
            running.append(RunningJob(job=job, queue=queue, execution=execution))
        _slots(worker, pipeline, busy=busy, current_job_id=running[-1].job.id if running else None)
        pipeline.execute()
    return running


# The job's heartbeat only while its hash exists: RQ's Job.heartbeat writes it unconditionally,
# which after a flush would recreate a partial hash RQ cannot read.
_JOB_HEARTBEAT = LuaScript("""
if redis.call('exists', KEYS[1]) == 1 then
  redis.call('hset', KEYS[1], 'last_heartbeat', ARGV[1])
end
return 0
""")
# Record a job's end only if it is still this execution's: the same id may have been pushed
# again (a task sent back to its queue) and be queued or running elsewhere by now.
_STILL_OURS = LuaScript("""
local fields = redis.call('hmget', KEYS[1], 'status', 'worker_name', 'started_at')
local status, worker, started = fields[1], fields[2], fields[3]
if status == 'started' and worker == ARGV[1] and started == ARGV[2] then return 1 end
return 0
""")


def jobs_heartbeat(worker: SimpleWorker, running: list[RunningJob]) -> None:
    """One heartbeat for the worker and every job it runs (RQ's maintain_heartbeats, for all)."""
    with worker.connection.pipeline() as pipeline:
        worker.heartbeat(worker.worker_ttl + 60, pipeline=pipeline)
        stamp = utcformat(now())
        for item in running:
            ttl = int(worker.get_heartbeat_ttl(item.job))
            item.execution.heartbeat(item.job.started_job_registry, ttl, pipeline=pipeline)
            _JOB_HEARTBEAT.queue(pipeline, [item.job.key], [stamp])
        pipeline.execute()


def _slots(worker: Any, pipeline: Any, *, busy: int, current_job_id: str | None) -> None:
    if isinstance(worker, SlotsReporter):
        worker.slots_record(pipeline, busy=busy, current_job_id=current_job_id)
    else:
        worker.set_current_job_id(current_job_id, pipeline=pipeline)


def job_ended(
    worker: SimpleWorker,
    item: RunningJob,
    *,
    failure: str | None = None,
    busy: int = 0,
    current_job_id: str | None = None,
) -> None:
    """Record the job as finished (or failed, with RQ's exception text), and forget its
    execution (RQ's handle_job_success / handle_job_failure, for one job among several)."""
    job = item.job
    job.ended_at = now()
    started = utcformat(job.started_at) if job.started_at else ""
    ours = bool(_STILL_OURS(worker.connection, [job.key], [worker.name, started]))
    with worker.connection.pipeline() as pipeline:
        item.execution.delete(job=job, pipeline=pipeline)
        if ours:
            _record_end(worker, item, failure, pipeline)
        if job.started_at:
            worker.increment_total_working_time(job.ended_at - job.started_at, pipeline)
        else:
            worker.increment_total_working_time(timedelta(0), pipeline)
        _slots(worker, pipeline, busy=busy, current_job_id=current_job_id)
        pipeline.execute()


def _record_end(worker: SimpleWorker, item: RunningJob, failure: str | None, pipeline: Any) -> None:
    job = item.job
    execution = item.execution
    if failure is None:
        job._status = JobStatus.FINISHED
        result_ttl = job.get_result_ttl(worker.default_result_ttl)
        worker.increment_successful_job_count(pipeline=pipeline)
        if result_ttl != 0:
            job._handle_success(
                result_ttl,
                pipeline=pipeline,
                worker_name=worker.name,
                execution_id=execution.id,
                execution_started_at=execution.created_at,
                execution_ended_at=job.ended_at,
            )
        job.cleanup(result_ttl, pipeline=pipeline, remove_from_queue=False)
    else:
        job._status = JobStatus.FAILED
        job.set_status(JobStatus.FAILED, pipeline=pipeline)
        worker.increment_failed_job_count(pipeline)
        job._handle_failure(
            failure,
            pipeline=pipeline,
            worker_name=worker.name,
            execution_id=execution.id,
            execution_started_at=execution.created_at,
            execution_ended_at=job.ended_at,
        )
