"""The cluster's load as the scheduler's policy reads it: each host's CPU (reported with the
workers' heartbeats) and the "overloaded" flag that one process decides from them
(apps.scheduling.housekeeping.load).

Enqueue-time policy reads the flag (apps.scheduling.tasks.policy): RQ cannot move a queued job
cheaply, so decisions are taken when a task is created.
"""

import json
import time
from dataclasses import dataclass

from django.conf import settings

from apps.core.redis import key, sync_client

HOSTS_KEY_PATTERN = "load:host:*"


def load_limits() -> dict[str, float]:
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
        ex=int(load_limits()["report_ttl_s"]),
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


def load_state_key() -> str:
    return key("load", "state")


def load_state_write(state: LoadState) -> None:
    sync_client().set(
        load_state_key(),
        json.dumps(
            {
                "overloaded": state.overloaded,
                "cpu": state.cpu_percent,
                "queued": state.queued,
                "since": state.since,
                "reason": state.reason,
                "slots_busy": state.slots_busy,
                "slots_total": state.slots_total,
            }
        ),
    )
    _cache.clear()


def load_state_read() -> LoadState:
    raw = sync_client().get(load_state_key())
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


_cache: dict[str, tuple[float, LoadState]] = {}
CACHE_S = 0.5


def load_state_current() -> LoadState:
    """The stored state, re-read at most every half second per process (it is on the hot path)."""
    cached = _cache.get("state")
    now = time.monotonic()
    if cached and now - cached[0] < CACHE_S:
        return cached[1]
    state = load_state_read()
    _cache["state"] = (now, state)
    return state
