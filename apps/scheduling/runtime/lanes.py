"""Lanes: worker capacity that some tasks need besides a slot.

A worker process runs up to WORKER_CONCURRENCY tasks at once, but the built-in model it holds
generates only LOCAL_MODEL_PARALLEL sequences at once. A task that needs the model (lane `local`)
must not be taken by a worker whose model is busy: it would sit in that worker's hands while
another worker could run it, and work behind it would be served first. So a worker whose lane is
full passes over the lane's tasks when it takes work (apps.scheduling.runtime.intake), and they stay
queued, in order, for any worker with room.
"""

import threading


class LaneGate:
    """One worker's capacity per lane and what it uses now. The intake thread takes, the event
    loop releases: thread-safe."""

    def __init__(self, capacity: dict[str, int], kept_from_bulk: int = 1) -> None:
        self.capacity = {lane: max(1, int(size)) for lane, size in capacity.items()}
        # Units of each lane that bulk work never takes (live work's), when the lane has more.
        self._kept = {
            lane: min(max(0, kept_from_bulk), size - 1) for lane, size in self.capacity.items()
        }
        self.used = dict.fromkeys(self.capacity, 0)
        self._lock = threading.Lock()
        # Set whenever a unit is released: a worker waiting for room in a full lane wakes.
        self.released = threading.Event()

    def full(self) -> list[str]:
        with self._lock:
            return [lane for lane, size in self.capacity.items() if self.used[lane] >= size]

    def room(self) -> dict[str, int]:
        """Units free now, per lane."""
        with self._lock:
            return {lane: size - self.used[lane] for lane, size in self.capacity.items()}

    def kept_from_bulk(self, lane: str) -> int:
        return self._kept.get(lane, 0)

    def spared_for_bulk(self, lane: str) -> bool:
        """Whether a bulk task may hold the unit of `lane` it has just taken here: the units
        kept from bulk work are still free."""
        if lane not in self.capacity:
            return True
        with self._lock:
            return self.capacity[lane] - self.used[lane] >= self._kept[lane]

    def take(self, lane: str) -> bool:
        """Use one unit of `lane` if it has room (a lane this worker does not limit always has)."""
        if lane not in self.capacity:
            return True
        with self._lock:
            if self.used[lane] >= self.capacity[lane]:
                return False
            self.used[lane] += 1
            return True

    def release(self, lane: str) -> None:
        if lane not in self.capacity:
            return
        with self._lock:
            self.used[lane] = max(0, self.used[lane] - 1)
        self.released.set()
