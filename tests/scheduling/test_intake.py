"""How a worker takes jobs, on the real Redis: strictly by priority, as many as it has room for,
and past the jobs of a lane that is full in this worker (they stay queued for another)."""

import pytest
from rq import Queue

from apps.core.redis import sync_client
from apps.scheduling.coordination.queues import QUEUE_ORDER, job_push, queue_for
from apps.scheduling.runtime.intake import Intake, Taken
from apps.scheduling.runtime.lanes import LaneGate


@pytest.fixture
def queues() -> list[Queue]:
    return [queue_for(name) for name in QUEUE_ORDER]


def push(task_id: str, priority: str, lane: str = "") -> None:
    job_push(task_id=task_id, priority=priority, time_left_s=None, lane=lane)


def ids(taken: list[Taken]) -> list[str]:
    return [one.job.id for one in taken]


def test_takes_strictly_by_priority(queues: list[Queue]) -> None:
    intake = Intake(queues=queues, connection=sync_client(), lanes=LaneGate({"local": 2}))
    push("low-1", "low")
    push("medium-1", "medium")
    push("high-1", "high")
    taken = [intake.take(block_s=1) for _ in range(3)]
    assert [ids(one) for one in taken] == [["high-1"], ["medium-1"], ["low-1"]]
    assert intake.take(block_s=1) == []


def test_a_batch_is_taken_in_priority_order_and_no_larger_than_asked(queues: list[Queue]) -> None:
    intake = Intake(queues=queues, connection=sync_client(), lanes=LaneGate({"local": 2}))
    for index in range(3):
        push(f"low-{index}", "low")
        push(f"high-{index}", "high")
    first = intake.take(block_s=1, limit=4)
    assert ids(first) == ["high-0", "high-1", "high-2", "low-0"]
    assert all(one.job.func_name == "apps.scheduling.jobs.task_run_job" for one in first)
    assert ids(intake.take(block_s=1, limit=4)) == ["low-1", "low-2"]


def test_a_full_lane_leaves_its_jobs_queued_and_takes_the_next_job(queues: list[Queue]) -> None:
    lanes = LaneGate({"local": 1})
    intake = Intake(queues=queues, connection=sync_client(), lanes=lanes)
    push("local-1", "high", lane="local")
    push("local-2", "high", lane="local")
    push("remote-1", "high")
    push("remote-2", "low")

    # Room for one local answer: the second stays queued, and work behind it is taken.
    taken = intake.take(block_s=1, limit=10)
    assert ids(taken) == ["local-1", "remote-1", "remote-2"]
    assert [one.lane for one in taken] == ["local", "", ""]
    assert queues[0].get_job_ids() == ["local-2"]
    assert intake.take(block_s=1, limit=10) == []

    lanes.release("local")
    again = intake.take(block_s=1)
    assert [(one.job.id, one.lane) for one in again] == [("local-2", "local")]


def test_a_job_put_back_is_first_again(queues: list[Queue]) -> None:
    lanes = LaneGate({"local": 1})
    intake = Intake(queues=queues, connection=sync_client(), lanes=lanes)
    push("local-1", "medium", lane="local")
    push("other", "medium")
    (taken,) = intake.take(block_s=1)
    intake.put_back(taken)
    assert lanes.full() == []
    assert queues[1].get_job_ids() == ["local-1", "other"]
    again = intake.take(block_s=1)
    assert [(one.job.id, one.lane) for one in again] == [("local-1", "local")]


def push_bulk(task_id: str, lane: str = "") -> None:
    job_push(task_id=task_id, priority="low", time_left_s=None, lane=lane, bulk=True)


def test_bulk_work_never_takes_the_room_kept_for_live_work(queues: list[Queue]) -> None:
    lanes = LaneGate({"local": 3}, kept_from_bulk=1)
    intake = Intake(queues=queues, connection=sync_client(), lanes=lanes)
    for index in range(4):
        push_bulk(f"bulk-local-{index}", lane="local")
    push("live-low", "low")

    # Two of the three sequences go to bulk work; the live job behind the bulk ones is taken.
    taken = intake.take(block_s=1, limit=10, bulk_room=10)
    assert ids(taken) == ["bulk-local-0", "bulk-local-1", "live-low"]
    assert queues[2].get_job_ids() == ["bulk-local-2", "bulk-local-3"]
    # The kept sequence is live work's: a live job for the model takes it, bulk work does not.
    assert intake.take(block_s=1, limit=10, bulk_room=10) == []
    push("live-local", "high", lane="local")
    assert ids(intake.take(block_s=1, limit=10, bulk_room=10)) == ["live-local"]


def test_bulk_work_takes_no_more_slots_than_it_is_given(queues: list[Queue]) -> None:
    intake = Intake(queues=queues, connection=sync_client(), lanes=LaneGate({}))
    for index in range(5):
        push_bulk(f"bulk-{index}")
    push("live", "low")
    assert ids(intake.take(block_s=1, limit=10, bulk_room=2)) == ["bulk-0", "bulk-1", "live"]
    assert intake.take(block_s=1, limit=10, bulk_room=0) == []
    assert queues[2].get_job_ids() == ["bulk-2", "bulk-3", "bulk-4"]
    # Put back as it was: still bulk work.
    (one,) = intake.take(block_s=1, limit=1, bulk_room=1)
    intake.put_back(one)
    assert intake.take(block_s=1, limit=10, bulk_room=0) == []
