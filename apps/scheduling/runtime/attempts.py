"""Attempts running on one event loop, and what they share.

A worker process runs hundreds of attempts at once. Per attempt there is no thread: what each
one needs from the scheduler while it runs is done for all of them together, by the runtime:
- its lock (and the hold on its model deployment) renewed, for every attempt in one pipelined
  round trip;
- its fencing checked: the lock still ours, PostgreSQL still at this attempt. An attempt whose
  lock vanished takes it back if nobody holds it and PostgreSQL agrees; one that lost its task
  to another attempt is abandoned: it stops calling the model and writes nothing more;
- stop requests seen within milliseconds (one counter read per tick, the flags only when it
  moved), deadlines noticed even while the provider is quiet;
- its events sent through the loop's outbox (apps.scheduling.runtime.outbox);
- its database work done in a small pool of threads, each giving its pooled connection back
  after every call.
"""

import asyncio
import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from apps.core.redis import async_client
from apps.scheduling.coordination.capacity import capacity_renew_in
from apps.scheduling.coordination.leases import ExclusiveLease, LeaseState
from apps.scheduling.coordination.stops import StopReason, stop_flag_key, stop_version_key
from apps.scheduling.models import Task, TaskStatus
from apps.scheduling.runtime.outbox import AttemptLog, EventOutbox

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# How often stop requests are looked for: "within a token or two" at the built-in model's pace.
STOP_POLL_S = 0.01
# Flags of every attempt are re-read this often even if the counter did not move (a stop
# written while Redis was away, or by something that did not bump the counter).
STOP_BACKSTOP_S = 1.0


def _releasing(function: Callable[..., R]) -> Callable[..., R]:
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> R:
        try:
            return function(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:
                connection.close()  # back to the pool

    return call


@dataclass(frozen=True)
class Held:
    """The model deployment an attempt holds ("" for none) and its task's flow there
    (apps.scheduling.coordination.capacity)."""

    deployment: str = ""
    flow: str = ""


def _attempts_current(attempts: dict[str, int]) -> set[str]:
    """Which of these task ids are still running at the given attempt."""
    rows = Task.objects.filter(id__in=list(attempts), status=TaskStatus.RUNNING).values_list(
        "id", "attempts"
    )
    return {str(task_id) for task_id, number in rows if attempts.get(str(task_id)) == number}


class AttemptContext:
    """The RunContext of one attempt (see apps.scheduling.tasks.kinds)."""

    def __init__(self, attempt: "Attempt", runtime: "AttemptRuntime") -> None:
        self._attempt = attempt
        self._runtime = runtime
        self.task = attempt.task
        self.attempt = attempt.task.attempts
        self.worker_name = runtime.worker_name
        self.deployment = attempt.held.deployment
        self.stopped = asyncio.Event()
        self.writes: list[Callable[[], None]] = []
        self._stop_reason: StopReason | None = None

    def stop(self, reason: StopReason) -> None:
        # The first reason wins, except that losing the task overrides everything: an abandoned
        # attempt must write nothing, whatever it was about to do. Once the run is over and its
        # outcome being recorded, nothing else changes it (a deadline passing meanwhile, a
        # shutdown).
        if reason == StopReason.ABANDONED or (
            self._stop_reason is None and not self._attempt.finishing
        ):
            self._stop_reason = reason
            self.stopped.set()

    def should_stop(self) -> bool:
        if self._stop_reason is None and not self._attempt.finishing:
            left = self.time_left_s()
            if left is not None and left <= 0:
                self.stop(StopReason.DEADLINE)
        return self._stop_reason is not None

    @property
    def stop_reason(self) -> StopReason | None:
        return self._stop_reason

    def time_left_s(self) -> float | None:
        return self.task.time_left_s()

    async def until_stopped(self, work: Awaitable[R]) -> R | None:
        job: asyncio.Future[R] = asyncio.ensure_future(work)
        stop_waiter = asyncio.ensure_future(self.stopped.wait())
        racing: set[asyncio.Future[Any]] = {job, stop_waiter}
        try:
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_waiter.cancel()
            if not job.done():
                job.cancel()
                # Let it finish cancelling (its connection to the model closes) before going on.
                await asyncio.wait({job})
        if job.cancelled():
            return None
        return job.result()

    async def db(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._runtime.db(function, *args, **kwargs)

    def write_on_success(self, write: Callable[[], None]) -> None:
        self.writes.append(write)

    def log(self) -> AttemptLog:
        return self._attempt.open_log(self._runtime.outbox)


class Attempt:
    """One attempt that holds its task's lock, and maybe a model deployment."""

    def __init__(
        self, task: Task, lock: ExclusiveLease, held: Held, runtime: "AttemptRuntime"
    ) -> None:
        self.task = task
        self.task_id = str(task.id)
        self.lock = lock
        self.held = held
        self.runtime = runtime
        self.context = AttemptContext(self, runtime)
        self.finishing = False
        self._log: AttemptLog | None = None
        self._recovery: asyncio.Task[None] | None = None

    def open_log(self, outbox: EventOutbox) -> AttemptLog:
        if self._log is None:
            self._log = outbox.open(
                task_id=self.task_id,
                fence=self.lock,
                ttl_s=settings.PLATFORM["EVENT_LOG_TTL_S"],
                on_fence=self.on_fence,
            )
            if self.context.stop_reason == StopReason.ABANDONED:
                self._log.abandon()
        return self._log

    async def drain(self) -> None:
        if self._log is not None:
            await self._log.drain()

    def on_fence(self, state: LeaseState) -> None:
        if state is LeaseState.TAKEN:
            self.abandon("another worker holds the task's lock")
        else:
            self.recover()

    def recover(self) -> None:
        """The lock is gone (Redis lost it): take it back, once at a time. Not once the attempt
        is finishing: it lets go of its lock then itself."""
        if self.finishing:
            return
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        if self._log is not None:
            self._log.paused = True  # nothing is appended until PostgreSQL agrees
        try:
            if await self.lock.retake() is not LeaseState.HELD:
                self.abandon("the task's lock was taken by another worker")
                return
            current = await self.runtime.db(_attempts_current, {self.task_id: self.task.attempts})
            if self.task_id not in current:
                await self.lock.arelease()
                self.abandon("the task moved on without this attempt")
                return
            logger.warning("task lock was lost (Redis restarted?) and taken back")
            if self._log is not None:
                self._log.resume(log_lost=True)
        except Exception:
            logger.exception("could not take the task's lock back; trying again")
            await asyncio.sleep(0.5)
            self._recovery = None
            self.recover()

    def abandon(self, why: str) -> None:
        if self.context.stop_reason != StopReason.ABANDONED:
            logger.warning("attempt abandoned: %s", why, extra={"task_id": self.task_id})
        self.context.stop(StopReason.ABANDONED)
        if self._log is not None:
            self._log.abandon()


class AttemptRuntime:
    """What the attempts of one event loop share (see the module's docstring). Without a
    `db_executor`, database work runs in the calling thread of the loop's creator (asgiref's
    thread-sensitive mode): one attempt run from synchronous code, as tests do."""

    def __init__(self, *, worker_name: str, db_executor: Executor | None = None) -> None:
        self.worker_name = worker_name
        self.db_executor = db_executor
        self.outbox = EventOutbox()
        self.attempts: dict[str, Attempt] = {}
        # The worker is stopping: attempts that start now go straight back to their queues.
        self.stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: asyncio.Event | None = None
        self.lock_ttl_s = float(settings.PLATFORM["TASK_LOCK_TTL_S"])

    async def db(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        call = functools.partial(_releasing(function), *args, **kwargs)
        if self.db_executor is None:
            return await sync_to_async(call, thread_sensitive=True)()
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.db_executor, context.run, call)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        self._tasks = [
            loop.create_task(self._keep_leases(), name="attempt-leases"),
            loop.create_task(self._watch_stops(), name="attempt-stops"),
        ]

    async def close(self) -> None:
        # Asked to end rather than cancelled: a cancellation that lands inside a Redis call can
        # be swallowed by the client, leaving the task running.
        if self._closing is not None:
            self._closing.set()
        _, late = await asyncio.wait(self._tasks, timeout=5.0) if self._tasks else (set(), set())
        for task in late:
            task.cancel()
        await self.outbox.close()

    async def _pause(self, seconds: float) -> bool:
        """Sleep; True when the runtime is closing (stop looping)."""
        assert self._closing is not None
        if self._closing.is_set():
            return True
        try:
            async with asyncio.timeout(seconds):
                await self._closing.wait()
        except TimeoutError:
            return False
        return True

    def add(self, attempt: Attempt) -> None:
        self.attempts[attempt.task_id] = attempt

    def discard(self, attempt: Attempt) -> None:
        if self.attempts.get(attempt.task_id) is attempt:
            del self.attempts[attempt.task_id]

    # --- leases -------------------------------------------------------------------------------

    async def _keep_leases(self) -> None:
        """Renew every lock and deployment hold on a fixed schedule, and check the fence beside
        it: the check waits on PostgreSQL, the renewal must not (a slow database would let every
        lock lapse)."""
        interval = self.lock_ttl_s / 3
        fence_check: asyncio.Task[None] | None = None
        while not await self._pause(interval):
            try:
                await self.renew_once()
            except Exception:
                logger.exception("could not renew the attempts' leases; trying again")
            if fence_check is None or fence_check.done():
                fence_check = asyncio.get_running_loop().create_task(self._check_fences())
        if fence_check is not None:
            fence_check.cancel()

    async def renew_once(self) -> None:
        attempts = list(self.attempts.values())
        if not attempts:
            return
        pipe = async_client().pipeline(transaction=False)
        for attempt in attempts:
            attempt.lock.renew_in(pipe)
        for attempt in attempts:
            if attempt.held.deployment:
                capacity_renew_in(
                    pipe,
                    task_id=attempt.task_id,
                    deployment=attempt.held.deployment,
                    flow=attempt.held.flow,
                    ttl_s=self.lock_ttl_s,
                )
        replies = await pipe.execute()
        for attempt, reply in zip(attempts, replies, strict=False):
            state = LeaseState(int(reply))
            if state is LeaseState.TAKEN:
                attempt.abandon("another worker holds the task's lock")
            elif state is LeaseState.MISSING:
                attempt.recover()

    async def _check_fences(self) -> None:
        """The other half of the fence: PostgreSQL still at each attempt (the watchdog, an
        operator or another worker may have moved the task on)."""
        attempts = list(self.attempts.values())
        checked = {
            attempt.task_id: attempt.task.attempts
            for attempt in attempts
            if not attempt.finishing and attempt.context.stop_reason != StopReason.ABANDONED
        }
        if not checked:
            return
        try:
            async with asyncio.timeout(self.lock_ttl_s):
                current = await self.db(_attempts_current, checked)
        except Exception:
            logger.warning("could not check the attempts' fences; trying again", exc_info=True)
            return
        for task_id in checked.keys() - current:
            attempt = self.attempts.get(task_id)
            if attempt is not None and not attempt.finishing:
                attempt.abandon("the task moved on without this attempt")

    # --- stops --------------------------------------------------------------------------------

    async def _watch_stops(self) -> None:
        seen: Any = object()
        loop = asyncio.get_running_loop()
        last_full_read = loop.time()
        while not await self._pause(STOP_POLL_S):
            if not self.attempts:
                continue
            try:
                version = await async_client().get(stop_version_key())
                now = loop.time()
                if version != seen or now - last_full_read >= STOP_BACKSTOP_S:
                    seen, last_full_read = version, now
                    await self._read_stop_flags()
                for attempt in list(self.attempts.values()):
                    if not attempt.finishing:
                        attempt.context.should_stop()  # deadlines, even while a provider is quiet
            except Exception:
                logger.warning("could not read stop requests; trying again", exc_info=True)
                await self._pause(0.5)

    async def _read_stop_flags(self) -> None:
        attempts = list(self.attempts.values())
        flags = await async_client().mget([stop_flag_key(a.task_id) for a in attempts])
        for attempt, flag in zip(attempts, flags, strict=True):
            if flag is not None:
                attempt.context.stop(StopReason(flag.decode() if isinstance(flag, bytes) else flag))
