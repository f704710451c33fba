"""How a worker takes jobs, on the real Redis: strictly by priority, and past the jobs of a lane
that is full in this worker (they stay queued for another)."""

import pytest
from rq import Queue

from apps.core.redis import sync_client
from apps.scheduling.intake import Intake
from apps.scheduling.lanes import LaneGate
from apps.scheduling.queues import QUEUE_ORDER, job_push, queue_for


@pytest.fixture
def queues() -> list[Queue]:
    return [queue_for(name) for name in QUEUE_ORDER]


def push(task_id: str, priority: str, lane: str = "") -> None:
    job_push(task_id=task_id, priority=priority, time_left_s=None, lane=lane)


def test_takes_strictly_by_priority(queues: list[Queue]) -> None:
    intake = Intake(queues=queues, connection=sync_client(), lanes=LaneGate({"local": 2}))
    push("low-1", "low")
    push("medium-1", "medium")
    push("high-1", "high")
    taken = [intake.take(block_s=1) for _ in range(3)]
    assert [t.job.id for t in taken if t] == ["high-1", "medium-1", "low-1"]
    assert intake.take(block_s=1) is None


def test_a_full_lane_leaves_its_jobs_queued_and_takes_the_next_job(queues: list[Queue]) -> None:
    lanes = LaneGate({"local": 1})
    intake = Intake(queues=queues, connection=sync_client(), lanes=lanes)
    push("local-1", "high", lane="local")
    push("local-2", "high", lane="local")
    push("remote-1", "high")
    push("remote-2", "low")

    first = intake.take(block_s=1)
    assert first is not None
    assert (first.job.id, first.lane) == ("local-1", "local")
    # The lane is full now: the next local job is passed over, in its queue, not taken.
    assert [t.job.id for t in (intake.take(block_s=1), intake.take(block_s=1)) if t] == [
        "remote-1",
        "remote-2",
    ]
    assert queues[0].get_job_ids() == ["local-2"]
    assert intake.take(block_s=1) is None

    lanes.release("local")
    again = intake.take(block_s=1)
    assert again is not None
    assert (again.job.id, again.lane) == ("local-2", "local")


def test_a_job_put_back_is_first_again(queues: list[Queue]) -> None:
    lanes = LaneGate({"local": 1})
    intake = Intake(queues=queues, connection=sync_client(), lanes=lanes)
    push("local-1", "medium", lane="local")
    push("other", "medium")
    taken = intake.take(block_s=1)
    assert taken is not None
    intake.put_back(taken)
    assert lanes.full() == []
    assert queues[1].get_job_ids() == ["local-1", "other"]
    again = intake.take(block_s=1)
    assert again is not None
    assert (again.job.id, again.lane) == ("local-1", "local")
