"""What the workers report of their slots: how many tasks each runs now, of how many at once.

The load monitor, load shedding and the dashboard count busy slots, not busy processes: one worker
process runs hundreds of tasks at once.
"""

from apps.core.redis import key, sync_client


def worker_slots_key(name: str) -> str:
    """A worker's report ("busy total"); it lapses with the worker."""
    return key("worker", name, "slots")


def workers_slots() -> tuple[int, int]:
    """(busy, capacity) of every live worker's slots, cluster-wide."""
    client = sync_client()
    names = list(client.scan_iter(match=worker_slots_key("*"), count=500))
    busy = capacity = 0
    for value in client.mget(names) if names else []:
        if value:
            used, size = value.split()
            busy, capacity = busy + int(used), capacity + int(size)
    return busy, capacity
