"""The scheduler's housekeeping, run by one process at a time (the holder of its lease).

Every `interval_s`: delayed tasks due, the load (overloaded or not, with hysteresis), deadlines,
aging, the reconciler and the watchdog (apps.scheduling.housekeeping.recovery), and the chores
other apps register (`housekeeping_register`: a batch's turns and its end, say).
"""

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.db import close_old_connections

from apps.core.redis import key
from apps.scheduling.coordination.leases import ExclusiveLease, LeaseState
from apps.scheduling.housekeeping.load import load_evaluate
from apps.scheduling.housekeeping.recovery import (
    dispatch_deployments,
    expire_overdue,
    promote_aged,
    push_due_delayed,
    reconcile_lost_jobs,
    recover_orphaned_running,
)

logger = logging.getLogger(__name__)


@dataclass
class Chore:
    """Housekeeping an app registers: `run` every `every_s` seconds, by the lease holder."""

    name: str
    run: Callable[[], object]
    every_s: float
    due_at: float = 0.0


_CHORES: dict[str, Chore] = {}


def housekeeping_register(*, name: str, run: Callable[[], object], every_s: float) -> None:
    _CHORES[name] = Chore(name, run, every_s)


def registered_chores_run(now: float) -> None:
    """The registered chores that are due; one failing does not keep the others from running."""
    for chore in list(_CHORES.values()):
        if now < chore.due_at:
            continue
        chore.due_at = now + chore.every_s
        try:
            chore.run()
        except Exception:
            logger.exception("housekeeping failed; retrying", extra={"chore": chore.name})


# The housekeeping lease: another process takes over this long after its holder stopped.
LEASE_TTL_S = 10.0


class Maintainer(threading.Thread):
    """Runs the housekeeping every `interval_s` while it holds the cluster-wide lease."""

    def __init__(self, interval_s: float = 0.2) -> None:
        super().__init__(name="scheduler-maintenance", daemon=True)
        self.interval_s = interval_s
        self.stopped = threading.Event()
        self.lease = ExclusiveLease(
            key("maintenance", "lease"),
            ttl_s=LEASE_TTL_S,
            token=f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}",
        )
        self._load_every = max(1, int(1.0 / interval_s))
        self._slow_every = max(1, int(2.0 / interval_s))

    def run(self) -> None:
        tick = 0
        while not self.stopped.wait(self.interval_s):
            try:
                if self.lease.hold() is not LeaseState.HELD:
                    continue
                close_old_connections()
                tick += 1
                push_due_delayed()
                dispatch_deployments()
                if tick % self._load_every == 0:
                    load_evaluate()
                if tick % self._slow_every == 0:
                    expire_overdue()
                    promote_aged()
                    reconcile_lost_jobs()
                    recover_orphaned_running()
                registered_chores_run(time.monotonic())
            except Exception:
                logger.exception("scheduler maintenance failed; retrying")

    def stop(self) -> None:
        self.stopped.set()
