"""The load monitor: hosts report their CPU (`LoadReporter`, one per worker process); the
housekeeping turns the reports and the queue depth into the cluster-wide "overloaded" flag, with
hysteresis so it does not flap (apps.scheduling.coordination.load_state holds it)."""

import logging
import socket
import threading
import time

import psutil

from apps.scheduling.coordination.capacity import waiting_counts
from apps.scheduling.coordination.load_state import (
    LoadState,
    hosts_cpu,
    load_limits,
    load_report,
    load_state_read,
    load_state_write,
)
from apps.scheduling.coordination.queues import queued_total
from apps.scheduling.coordination.reports import workers_slots

logger = logging.getLogger(__name__)


def load_evaluate() -> LoadState:
    """Decide the overloaded flag from fresh reports (the mean CPU of the worker hosts) and the
    queue depth, and store it. Enter above the high marks, leave only below the low marks."""
    limits = load_limits()
    cpus = hosts_cpu()
    cpu = sum(cpus.values()) / len(cpus) if cpus else 0.0
    # Work waiting for a worker, and answers waiting for their model deployments.
    queued = queued_total() + sum(waiting_counts().values())
    busy, capacity = workers_slots()
    previous = load_state_read()
    if previous.overloaded:
        overloaded = cpu >= limits["cpu_low"] or queued >= limits["queued_low"]
    else:
        overloaded = cpu > limits["cpu_high"] or queued > limits["queued_high"]
    since = previous.since if overloaded == previous.overloaded else time.time()
    if cpu > limits["cpu_high"] or (overloaded and cpu >= limits["cpu_low"]):
        reason = f"cpu {cpu:.0f}% over {limits['cpu_high']:.0f}%"
    elif overloaded:
        reason = f"{queued} queued over {limits['queued_high']:.0f}"
    else:
        reason = ""
    state = LoadState(overloaded, cpu, queued, since, reason, busy, capacity)
    if overloaded != previous.overloaded:
        logger.warning(
            "load state changed", extra={"overloaded": overloaded, "cpu": cpu, "queued": queued}
        )
    load_state_write(state)
    return state


class LoadReporter(threading.Thread):
    """Reports this host's CPU every `interval_s` (one per worker process; same host, same key)."""

    def __init__(self, interval_s: float = 1.0) -> None:
        super().__init__(name="load-reporter", daemon=True)
        self.interval_s = interval_s
        self.host = socket.gethostname()
        self.stopped = threading.Event()

    def run(self) -> None:
        psutil.cpu_percent(interval=None)  # the first reading is meaningless; prime it
        while not self.stopped.wait(self.interval_s):
            try:
                load_report(host=self.host, cpu_percent=psutil.cpu_percent(interval=None))
            except Exception:
                logger.exception("could not report load")

    def stop(self) -> None:
        self.stopped.set()
