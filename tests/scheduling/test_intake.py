"""How a worker takes jobs, on the real Redis: strictly by priority, as many as it has room for,
and bulk work only with room to spare."""

import pytest
from rq import Queue

from apps.core.redis import sync_client
from apps.scheduling.coordination.capacity import grants_key
from apps.scheduling.coordination.queues import QUEUE_ORDER, job_push, queue_for
from apps.scheduling.runtime.intake import Intake, Taken


@pytest.fixture
def queues() -> list[Queue]:
    return [queue_for(name) for name in QUEUE_ORDER]


def push(task_id: str, priority: str) -> None:
    job_push(task_id=task_id, priority=priority, time_left_s=None)


def ids(taken: list[Taken]) -> list[str]:
    return [one.job.id for one in taken]


def test_takes_strictly_by_priority(queues: list[Queue]) -> None:
    intake = Intake(queues=queues, connection=sync_client())
    push("low-1", "low")
    push("medium-1", "medium")
    push("high-1", "high")
    taken = [intake.take(block_s=1) for _ in range(3)]
    assert [ids(one) for one in taken] == [["high-1"], ["medium-1"], ["low-1"]]
    assert intake.take(block_s=1) == []


def test_a_batch_is_taken_in_priority_order_and_no_larger_than_asked(queues: list[Queue]) -> None:
    intake = Intake(queues=queues, connection=sync_client())
    for index in range(3):
        push(f"low-{index}", "low")
        push(f"high-{index}", "high")
    first = intake.take(block_s=1, limit=4)
    assert ids(first) == ["high-0", "high-1", "high-2", "low-0"]
    assert all(one.job.func_name == "apps.scheduling.jobs.task_run_job" for one in first)
    assert ids(intake.take(block_s=1, limit=4)) == ["low-1", "low-2"]


def test_a_job_put_back_is_first_again(queues: list[Queue]) -> None:
    intake = Intake(queues=queues, connection=sync_client())
    push("first", "medium")
    push("other", "medium")
    (taken,) = intake.take(block_s=1)
    intake.put_back(taken)
    assert queues[1].get_job_ids() == ["first", "other"]
    assert ids(intake.take(block_s=1)) == ["first"]


def test_a_job_comes_with_the_deployment_that_took_it(queues: list[Queue]) -> None:
    intake = Intake(queues=queues, connection=sync_client())
    push("held", "high")
    sync_client().hset(grants_key(), "held", "vllm-a\tapp-1:flow")
    push("free", "high")
    taken = intake.take(block_s=1, limit=2)
    assert [(one.job.id, one.deployment, one.flow) for one in taken] == [
        ("held", "vllm-a", "app-1:flow"),
        ("free", "", ""),
    ]


def push_bulk(task_id: str) -> None:
    job_push(task_id=task_id, priority="low", time_left_s=None, bulk=True)


def test_bulk_work_takes_no_more_slots_than_it_is_given(queues: list[Queue]) -> None:
    intake = Intake(queues=queues, connection=sync_client())
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
