"""Concurrency slots of a group (one app's model server) on the real Redis: bulk work takes no
more than it is allowed, so live work always finds the last slot free."""

from apps.scheduling.coordination.capacity import Slot, wait_score


def slot(task_id: str, limit: int = 3) -> Slot:
    return Slot(name="app:test", limit=limit, task_id=task_id, lease_s=30)


def test_bulk_work_leaves_the_last_slot_to_live_work() -> None:
    low = wait_score(priority="low", enqueued_at_s=1.0)
    assert slot("bulk-1").acquire(score=low, up_to=2)
    assert slot("bulk-2").acquire(score=low, up_to=2)
    assert not slot("bulk-3").acquire(score=low, up_to=2)  # waits in line
    assert slot("live").acquire(score=wait_score(priority="high", enqueued_at_s=2.0))
    assert not slot("live-2").acquire(score=wait_score(priority="high", enqueued_at_s=3.0))


def test_a_freed_slot_goes_to_the_best_waiter() -> None:
    first, second = slot("a", limit=1), slot("b", limit=1)
    assert first.acquire(score=wait_score(priority="medium", enqueued_at_s=1.0))
    assert not second.acquire(score=wait_score(priority="medium", enqueued_at_s=2.0))
    assert first.release() == "b"
    assert second.acquire(score=wait_score(priority="medium", enqueued_at_s=2.0))
