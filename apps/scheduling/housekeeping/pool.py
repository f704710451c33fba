"""A pool of worker processes on one host, restarted when they die, plus the host's built-in
model servers (`manage.py model_servers`) and the scheduler's housekeeping thread.
`manage.py run_workers` and `manage.py run_platform` use it."""

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from django.db import close_old_connections

from apps.scheduling.coordination.queues import QUEUE_ORDER
from apps.scheduling.housekeeping.maintenance import Maintainer
from apps.scheduling.housekeeping.recovery import worker_lost
from apps.scheduling.runtime.worker import worker_name_of

logger = logging.getLogger(__name__)

RESTART_BACKOFF_S = 1.0


@dataclass
class WorkerSlot:
    queues: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = field(default=0)
    # Its dead process's tasks were handed on (once per process).
    handed_over: bool = False


def worker_command(queues: list[str]) -> list[str]:
    return [sys.executable, "manage.py", "worker", *queues]


MODEL_SERVERS_COMMAND = [sys.executable, "manage.py", "model_servers"]


class WorkerPool:
    """`processes` workers on all queues (high, medium, low), of which `high_only` take only `high`,
    so interactive work always finds a free worker."""

    def __init__(
        self,
        *,
        processes: int,
        high_only: int = 0,
        maintenance: bool = True,
        model_servers: bool = True,
    ) -> None:
        self.slots = [
            WorkerSlot(queues=["high"] if index < high_only else list(QUEUE_ORDER))
            for index in range(processes)
        ]
        # First: the workers' first answers find the model loaded.
        self.servers = WorkerSlot(queues=[]) if model_servers else None
        self.maintainer = Maintainer() if maintenance else None
        self.stopping = False

    def start(self) -> None:
        if self.maintainer:
            self.maintainer.start()
        for slot in self._all():
            self._spawn(slot)

    def _all(self) -> list[WorkerSlot]:
        return ([self.servers] if self.servers else []) + self.slots

    def _spawn(self, slot: WorkerSlot) -> None:
        command = worker_command(slot.queues) if slot is not self.servers else MODEL_SERVERS_COMMAND
        slot.process = subprocess.Popen(command, env=os.environ.copy())
        slot.started_at = time.monotonic()
        slot.handed_over = False
        logger.info("worker started", extra={"pid": slot.process.pid, "queues": slot.queues})

    def supervise_once(self) -> None:
        """Restart workers that exited (crashed or were killed), with a short back-off."""
        for slot in self._all():
            if slot.process is None or slot.process.poll() is None or self.stopping:
                continue
            code = slot.process.returncode
            if slot is not self.servers and not slot.handed_over:
                # Its tasks go on elsewhere now, not once their locks lapse.
                self._hand_over(slot.process.pid)
                slot.handed_over = True
            if time.monotonic() - slot.started_at < RESTART_BACKOFF_S:
                continue
            slot.restarts += 1
            logger.warning(
                "worker exited; restarting it", extra={"exit_code": code, "queues": slot.queues}
            )
            self._spawn(slot)

    def _hand_over(self, pid: int) -> None:
        name = worker_name_of(pid)
        try:
            worker_lost(worker_name=name)
        except Exception:
            # The watchdog hands them on once their locks lapse.
            logger.exception("could not hand on a dead worker's tasks", extra={"worker": name})
        finally:
            close_old_connections()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Warm shutdown: each worker finishes its current tasks, then exits; the model servers
        stop last, once nothing is left to answer."""
        self.stopping = True
        if self.maintainer:
            self.maintainer.stop()
        give_up_at = time.monotonic() + timeout_s
        _stop_all([slot.process for slot in self.slots], give_up_at)
        if self.servers is not None:
            _stop_all([self.servers.process], give_up_at + 5.0)


def _stop_all(processes: list[subprocess.Popen[bytes] | None], give_up_at: float) -> None:
    running = [process for process in processes if process and process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    for process in running:
        try:
            process.wait(timeout=max(0.1, give_up_at - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
