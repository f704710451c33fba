"""Our RQ worker: many tasks at once in one process, the model loaded once, quick to notice crashes.

RQ's workers run one job at a time (rq#45, open since 2013; the ThreadPoolWorker of rq#1804 and
the draft rq#1803 failed on timeouts, which RQ enforces with SIGALRM in the main thread only, and
on the failed registry, which assumes one execution per worker). This worker keeps RQ's queues,
job hashes, registries, executions, worker registration and heartbeats, and runs its own loop:

- up to WORKER_CONCURRENCY attempts at once, as coroutines on one event loop (a remote model
  server waits on sockets, not the CPU: a thousand waiting answers cost a thousand small
  coroutines, about 50 KB each, not a thousand threads), with database work in a small pool of
  threads;
- a job is taken only when a slot is free, strictly by priority (apps.scheduling.runtime.intake);
  the queues hold only work that can start (a model deployment took it first), so a worker
  never holds queued jobs it is not running;
- time limits per attempt with `asyncio.timeout`, not SIGALRM;
- SIGTERM: nothing new is taken, running attempts get WORKER_SHUTDOWN_GRACE_S to finish, and the
  rest go back to their queues without spending their retry budget. A second signal skips the
  grace. A SIGKILL leaves the attempts to the watchdog, which hands each to another worker once
  its lock lapses.

Jobs are run in-process, never forked: a model loaded before fork() hangs in the child, and
loading it per job costs ~0.7 s.
"""

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from django.conf import settings
from django.db import connections
from rq import SimpleWorker
from rq.command import parse_payload
from rq.suspension import is_suspended
from rq.worker import WorkerStatus

from apps.core.redis import OPTIONS as REDIS_OPTIONS
from apps.core.redis import async_client_close
from apps.scheduling.coordination.queues import JOB_FUNC, QUEUE_ORDER, queue_for
from apps.scheduling.coordination.reports import worker_slots_key
from apps.scheduling.coordination.stops import StopReason, task_request_stop
from apps.scheduling.runtime.attempts import AttemptRuntime, Held
from apps.scheduling.runtime.intake import Intake, Taken
from apps.scheduling.runtime.rq_jobs import RunningJob, job_ended, jobs_heartbeat, jobs_started
from apps.scheduling.runtime.runner import task_run

logger = logging.getLogger(__name__)

# After the grace period, attempts told to go back to their queues get this long to do it.
RETURN_TIMEOUT_S = 10.0
HEARTBEAT_S = 5.0
# Jobs taken in one round trip at most (the worker's free slots, up to this).
TAKE_BATCH_MAX = 64


class PlatformWorker(SimpleWorker):
    """Runs up to `concurrency` jobs at once (see the module's docstring)."""

    def __init__(self, *args: Any, concurrency: int, **kwargs: Any) -> None:
        kwargs.setdefault("worker_ttl", settings.PLATFORM["WORKER_TTL_S"])
        kwargs.setdefault(
            "maintenance_interval", settings.PLATFORM["WORKER_MAINTENANCE_INTERVAL_S"]
        )
        super().__init__(*args, **kwargs)
        self.concurrency = max(1, concurrency)
        # Slots bulk work never takes: live work always finds some free (at least one is left
        # to bulk work, or it could never run here).
        self.kept_from_bulk = min(
            max(0, int(settings.PLATFORM["BULK_RESERVED_SLOTS"])), self.concurrency - 1
        )
        # Bulk tasks run at once at most: enough to keep remote model servers busy, few enough
        # that the loop stays quick for live work beside them (hundreds of streaming coroutines
        # delay every other task's steps; see bench `openai`).
        self.bulk_max = max(1, int(settings.PLATFORM["BULK_MAX_RUNNING"]))
        self._bulk_active = 0
        self.running: dict[str, RunningJob] = {}
        self.free_slots = threading.Semaphore(self.concurrency)
        self.stop_taking = threading.Event()
        self.shutdown_grace_s = float(settings.PLATFORM["WORKER_SHUTDOWN_GRACE_S"])
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._forced = False
        self._jobs: set[asyncio.Task[None]] = set()
        self._burst = False
        self._burst_done = False
        # Jobs taken and not yet ended (the intake thread counts up, the loop down).
        self._active = 0
        self._active_lock = threading.Lock()

    # --- the loop -----------------------------------------------------------------------------

    def work(  # type: ignore[override]
        self, burst: bool = False, logging_level: str | None = "WARNING", **_: Any
    ) -> bool:
        """RQ's `work`, with our loop: RQ's options for its own loop (max_jobs, dequeue
        strategies, its scheduler) do not apply."""
        self.bootstrap(logging_level)
        try:
            asyncio.run(self._serve(burst))
        finally:
            self.teardown()
        return True

    async def _serve(self, burst: bool) -> None:
        self._burst = burst
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self._on_signal)
        self._db_threads = ThreadPoolExecutor(
            max_workers=settings.PLATFORM["WORKER_DB_THREADS"], thread_name_prefix="worker-db"
        )
        self.runtime = AttemptRuntime(worker_name=self.name, db_executor=self._db_threads)
        self.runtime.start()
        intake = threading.Thread(
            target=self._intake_forever, args=(burst,), name="worker-intake", daemon=True
        )
        intake.start()
        try:
            await self._stopping.wait()
            self.stop_taking.set()
            # No job taken but not yet launched may be left behind: the intake thread ends
            # first, then the launches it scheduled run, then the running jobs are finished.
            await asyncio.to_thread(intake.join, 5.0)
            await asyncio.sleep(0)
            await self._finish_running()
        finally:
            self.stop_taking.set()
            await self.runtime.close()
            await async_client_close()
            self._db_threads.shutdown(wait=True)

    def _on_signal(self) -> None:
        assert self._stopping is not None
        if self._stopping.is_set():
            logger.warning("second stop signal: running attempts go back to their queues now")
            self._forced = True
        self._stopping.set()

    def request_stop(self, signum: Any = None, frame: Any = None) -> None:
        """Also reached by RQ's `shutdown` command (it sends SIGINT)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_signal)

    async def _finish_running(self) -> None:
        if self._jobs:
            logger.warning(
                "worker stopping: finishing running attempts",
                extra={"running": len(self._jobs), "grace_s": self.shutdown_grace_s},
            )
            # A burst run ends when its work is done, however long that takes.
            grace_s = float("inf") if self._burst else self.shutdown_grace_s
            deadline = time.monotonic() + (0 if self._forced else grace_s)
            while self._jobs and not self._forced and time.monotonic() < deadline:
                await asyncio.wait(set(self._jobs), timeout=0.2)
        if self._jobs:
            self.runtime.stopping = True  # attempts still starting go back as soon as they run
            for attempt in list(self.runtime.attempts.values()):
                attempt.context.stop(StopReason.SHUTDOWN)
            await asyncio.wait(set(self._jobs), timeout=RETURN_TIMEOUT_S)

    def _launch(self, taken: Taken, running: RunningJob) -> None:
        assert self._loop is not None
        self.running[running.job.id] = running
        job = self._loop.create_task(self._run_job(taken, running), name=f"job-{running.job.id}")
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _run_job(self, taken: Taken, running: RunningJob) -> None:
        failure: str | None = None
        try:
            job = running.job
            if job.func_name == JOB_FUNC:
                held = Held(taken.deployment, taken.flow)
                await task_run(self.runtime, task_id=str(job.args[0]), held=held)
            else:  # a plain RQ job on our queues: run it as RQ would, off the loop
                await self.runtime.db(job.perform)
        except Exception:
            logger.exception("job failed", extra={"job_id": running.job.id})
            failure = traceback.format_exc()
        finally:
            self.running.pop(running.job.id, None)
            others = list(self.running.copy())
            try:
                await self.runtime.db(
                    job_ended,
                    self,
                    running,
                    failure=failure,
                    busy=len(others),
                    current_job_id=others[-1] if others else None,
                )
            except Exception:
                logger.exception("could not record the job's end in RQ")
            with self._active_lock:
                self._active -= 1
                self._bulk_active -= taken.bulk
            self.free_slots.release()

    # --- taking jobs (a thread: RQ's calls block) ---------------------------------------------

    def _intake_forever(self, burst: bool) -> None:
        intake = Intake(queues=self._ordered_queues, connection=self.connection)
        next_heartbeat = 0.0
        pause_s = 1.0
        while not self.stop_taking.is_set():
            try:
                if time.monotonic() >= next_heartbeat:
                    self._housekeep()
                    next_heartbeat = time.monotonic() + HEARTBEAT_S
                if not self.free_slots.acquire(timeout=0.5):
                    continue
                free = 1
                while free < TAKE_BATCH_MAX and self.free_slots.acquire(blocking=False):
                    free += 1
                took = 0
                try:
                    took = self._take_some(intake, burst, free)
                finally:
                    for _ in range(free - took):
                        self.free_slots.release()
                pause_s = 1.0
            except redis.exceptions.ConnectionError as error:
                logger.error("Redis unreachable; retrying", extra={"error": repr(error)})
                time.sleep(pause_s)
                pause_s = min(pause_s * 2, 10.0)
            except Exception:
                logger.exception("could not take a job; retrying")
                time.sleep(1.0)

    def _take_some(self, intake: Intake, burst: bool, free: int) -> int:
        """Take up to `free` jobs and hand them to the loop; returns how many were taken."""
        if self.stop_taking.is_set():
            return 0
        if is_suspended(self.connection, self):
            time.sleep(1.0)
            return 0
        # The slots free now (those just acquired included), less those kept from bulk work,
        # within the most bulk tasks a worker runs at once.
        bulk_room = min(
            self.concurrency - self._active - self.kept_from_bulk,
            self.bulk_max - self._bulk_active,
        )
        taken = intake.take(block_s=1, limit=free, bulk_room=bulk_room)
        if not taken:
            if burst and self._active == 0:
                self._burst_finished()
            return 0
        if self.stop_taking.is_set():
            for one in taken:
                intake.put_back(one)  # stopping while they were being taken
            return 0
        try:
            started = [(one.job, one.queue, one.intermediate) for one in taken]
            running = jobs_started(self, started, busy=self._active + len(taken))
        except Exception:
            for one in taken:
                with contextlib.suppress(Exception):
                    intake.put_back(one)  # taken but not started: back to the queue as it was
            raise
        with self._active_lock:
            self._active += len(taken)
            self._bulk_active += sum(one.bulk for one in taken)
        assert self._loop is not None
        for one, job in zip(taken, running, strict=True):
            self._loop.call_soon_threadsafe(self._launch, one, job)
        return len(taken)

    def _burst_finished(self) -> None:
        if not self._burst_done and self._loop is not None:
            self._burst_done = True
            self._loop.call_soon_threadsafe(self._on_signal)

    def _housekeep(self) -> None:
        """Heartbeats (worker, jobs), the slots report, RQ's registry cleaning; registration
        again if Redis lost it."""
        if not self.connection.exists(self.key):
            logger.warning("worker registration was lost (Redis restarted?); registering again")
            self.register_birth()
        running = list(self.running.copy().values())  # the loop changes it meanwhile
        jobs_heartbeat(self, running)
        with self.connection.pipeline() as pipeline:
            current = running[-1].job.id if running else None
            self.slots_record(pipeline, busy=len(running), current_job_id=current)
            pipeline.execute()
        if self.should_run_maintenance_tasks:
            self.run_maintenance_tasks()

    def slots_record(self, pipeline: Any, *, busy: int, current_job_id: str | None) -> None:
        """Busy slots, state and current job (the latest started, for RQ's one-job view)."""
        self.set_state(WorkerStatus.BUSY if busy else WorkerStatus.IDLE, pipeline=pipeline)
        self.set_current_job_id(current_job_id, pipeline=pipeline)
        pipeline.set(
            worker_slots_key(self.name), f"{busy} {self.concurrency}", ex=int(self.worker_ttl + 60)
        )

    def register_death(self) -> None:
        super().register_death()
        self.connection.delete(worker_slots_key(self.name))

    def handle_payload(self, message: Any) -> None:
        """RQ's commands: `shutdown` stops the worker warmly; `stop-job` cancels that task."""
        payload = parse_payload(message)
        command = payload.get("command")
        if command == "shutdown":
            self.request_stop()
        elif command == "stop-job" and payload.get("job_id") in self.running:
            task_request_stop(task_id=str(payload["job_id"]), reason=StopReason.CANCEL)
        elif command == "kill-horse":
            logger.warning("kill-horse ignored: this worker runs jobs in-process")


def worker_connections_configure() -> None:
    """Worker database connections use WORKER_SYNCHRONOUS_COMMIT (see settings), set once per
    connection as a libpq option, before the first connection (and the pool) is made."""
    mode = settings.PLATFORM["WORKER_SYNCHRONOUS_COMMIT"]
    database = connections["default"]
    if database.vendor != "postgresql" or mode not in ("on", "off", "local", "remote_write"):
        return
    options = database.settings_dict.setdefault("OPTIONS", {})
    options["options"] = f"{options.get('options', '')} -c synchronous_commit={mode}".strip()


def worker_name_of(pid: int) -> str:
    """The name a worker process registers under unless told another (its pool knows it)."""
    return f"{socket.gethostname()}.{pid}"


def worker_build(
    *,
    queue_names: list[str] | None = None,
    name: str | None = None,
    concurrency: int | None = None,
) -> PlatformWorker:
    names = queue_names or list(QUEUE_ORDER)
    # A client of its own: RQ raises its socket timeout above the blocking dequeue's, which must
    # not change the process's shared client.
    connection = redis.Redis.from_url(settings.REDIS_URL, **REDIS_OPTIONS)
    queues = [queue_for(queue_name, connection) for queue_name in names]
    worker_name = name or worker_name_of(os.getpid())
    return PlatformWorker(
        queues,
        connection=queues[0].connection,
        name=worker_name,
        concurrency=concurrency or settings.PLATFORM["WORKER_CONCURRENCY"],
    )
