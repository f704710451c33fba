"""The load monitor: hosts report their CPU with their heartbeats; one process turns the reports
and the queue depth into a cluster-wide "overloaded" flag, with hysteresis so it does not flap.

Enqueue-time policy reads the flag (see apps.scheduling.policy): RQ cannot move a queued job
cheaply, so decisions are taken when a task is created.
"""

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass

import psutil
from django.conf import settings

from apps.core.redis import key, sync_client
from apps.scheduling.capacity import workers_slots
from apps.scheduling.queues import QUEUE_ORDER, queue_for

logger = logging.getLogger(__name__)

HOSTS_KEY_PATTERN = "load:host:*"


def _limits() -> dict[str, float]:
    return dict(settings.PLATFORM["LOAD"])


@dataclass(frozen=True)
class LoadState:
    overloaded: bool
    cpu_percent: float
    queued: int
    since: float
    reason: str
    # Tasks running now, of how many the live workers can run at once.
    slots_busy: int = 0
    slots_total: int = 0

    @property
    def summary(self) -> str:
        return (
            f"cpu {self.cpu_percent:.0f}%, {self.queued} queued, "
            f"{self.slots_busy}/{self.slots_total} slots busy"
        )


def load_report(*, host: str, cpu_percent: float) -> None:
    """Record one host's CPU; reports older than LOAD.report_ttl_s are ignored (host gone)."""
    sync_client().set(
        key("load", "host", host),
        json.dumps({"cpu": cpu_percent, "at": time.time()}),
        ex=int(_limits()["report_ttl_s"]),
    )


def hosts_cpu() -> dict[str, float]:
    client = sync_client()
    names = list(client.scan_iter(match=key(HOSTS_KEY_PATTERN), count=500))
    values = client.mget(names) if names else []
    prefix = len(key("load", "host", ""))
    return {
        name.decode()[prefix:]: float(json.loads(value)["cpu"])
        for name, value in zip(names, values, strict=True)
        if value
    }


def queued_total() -> int:
    return sum(queue_for(name).count for name in QUEUE_ORDER)


def load_evaluate() -> LoadState:
    """Decide the overloaded flag from fresh reports (the mean CPU of the worker hosts) and the
    queue depth, and store it. Enter above the high marks, leave only below the low marks."""
    limits = _limits()
    cpus = hosts_cpu()
    cpu = sum(cpus.values()) / len(cpus) if cpus else 0.0
    queued = queued_total()
    busy, capacity = workers_slots()
    previous = load_state_read()
    if previous.overloaded:
        stays = cpu >= limits["cpu_low"] or queued >= limits["queued_low"]
        overloaded = stays
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
    sync_client().set(
        key("load", "state"),
        json.dumps(
            {
                "overloaded": overloaded,
                "cpu": cpu,
                "queued": queued,
                "since": since,
                "reason": reason,
                "slots_busy": busy,
                "slots_total": capacity,
            }
        ),
    )
    _cache.clear()
    return state


_cache: dict[str, tuple[float, LoadState]] = {}
CACHE_S = 0.5


def load_state_read() -> LoadState:
    raw = sync_client().get(key("load", "state"))
    if not raw:
        return LoadState(False, 0.0, 0, time.time(), "")
    data = json.loads(raw)
    return LoadState(
        bool(data["overloaded"]),
        float(data["cpu"]),
        int(data["queued"]),
        float(data["since"]),
        str(data.get("reason", "")),
        int(data.get("slots_busy", 0)),
        int(data.get("slots_total", 0)),
    )


def load_state_current() -> LoadState:
    """The stored state, re-read at most every half second per process (it is on the hot path)."""
    cached = _cache.get("state")
    now = time.monotonic()
    if cached and now - cached[0] < CACHE_S:
        return cached[1]
    state = load_state_read()
    _cache["state"] = (now, state)
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
