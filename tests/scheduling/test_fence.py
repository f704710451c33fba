"""The fence, piece by piece, on the real Redis and PostgreSQL: a task's lock (an exclusive
lease), the attempt number that guards every write to PostgreSQL, and the outbox that appends an
attempt's events only while its lock is its own (apps.scheduling.coordination.leases,
apps.scheduling.tasks.transitions, apps.scheduling.runtime.outbox)."""

import asyncio
import json
from typing import Any

import pytest

from apps.core.redis import async_client_close, sync_client
from apps.scheduling.coordination.leases import ExclusiveLease, LeaseState, task_lock
from apps.scheduling.models import TaskEvent, TaskStatus
from apps.scheduling.runtime.outbox import EventOutbox, LogAbandoned
from apps.scheduling.tasks.services import task_create, task_mark_running, task_transition
from apps.streams.log import stream_key
from tests.factories import make_app


def test_one_holder_at_a_time_and_a_lapsed_lease_is_free_again() -> None:
    first, second = task_lock("t1", ttl_s=0.2), task_lock("t1", ttl_s=5)
    assert first.acquire()
    assert not second.acquire()
    assert second.hold() is LeaseState.TAKEN
    client = sync_client()
    pipe = client.pipeline(transaction=False)
    first.renew_in(pipe)
    assert [LeaseState(int(reply)) for reply in pipe.execute()] == [LeaseState.HELD]
    client.delete(first.key)  # Redis lost it (a restart, a flush)
    pipe = client.pipeline(transaction=False)
    first.renew_in(pipe)
    assert [LeaseState(int(reply)) for reply in pipe.execute()] == [LeaseState.MISSING]
    assert second.hold() is LeaseState.HELD  # free: whoever asks first has it
    first.release()  # not its own any more: nothing happens
    assert client.get(second.key) == second.token.encode()


def test_a_holder_that_lost_its_lease_takes_it_back_only_if_it_is_free() -> None:
    mine = ExclusiveLease("dp-test:lease:x", ttl_s=5)
    assert mine.acquire()
    sync_client().delete(mine.key)

    async def retake() -> LeaseState:
        try:
            return await mine.retake()
        finally:
            await async_client_close()

    assert asyncio.run(retake()) is LeaseState.HELD
    sync_client().set(mine.key, "someone-else")
    assert asyncio.run(retake()) is LeaseState.TAKEN


@pytest.mark.django_db(transaction=True)
def test_a_replaced_attempt_writes_nothing_to_postgresql() -> None:
    app = make_app()
    task = task_create(kind="noop", app=app, requested_priority="medium")
    first = task_mark_running(task_id=str(task.id), worker_name="a")
    assert first is not None
    # The watchdog handed the task on: a second attempt runs it now.
    task_transition(
        task_id=task.id,
        from_statuses=(TaskStatus.RUNNING,),
        to_status=TaskStatus.QUEUED,
        reason="handed on",
    )
    second = task_mark_running(task_id=str(task.id), worker_name="b")
    assert second is not None
    assert second.attempts == first.attempts + 1
    late = task_transition(
        task_id=task.id,
        from_statuses=(TaskStatus.RUNNING,),
        to_status=TaskStatus.SUCCEEDED,
        reason="the first attempt's late success",
        attempt=first.attempts,
    )
    assert late is None, "fenced by its attempt number"
    assert not TaskEvent.objects.filter(task=task, to_status=TaskStatus.SUCCEEDED).exists()
    done = task_transition(
        task_id=task.id,
        from_statuses=(TaskStatus.RUNNING,),
        to_status=TaskStatus.SUCCEEDED,
        reason="succeeded",
        attempt=second.attempts,
    )
    assert done is not None


def logged(task_id: str) -> list[dict[str, Any]]:
    entries: Any = sync_client().xrange(stream_key(task_id))
    return [json.loads(fields[b"d"]) for _, fields in entries]


async def _write(lock: ExclusiveLease, events: list[dict[str, Any]], **hooks: Any) -> Any:
    outbox = EventOutbox()
    states: list[LeaseState] = []
    log = outbox.open(task_id=lock.key.split(":")[-2], fence=lock, ttl_s=60, on_fence=states.append)
    try:
        for event in events:
            log.append(event)
        await asyncio.sleep(0.05)  # the outbox writes on the loop's next turns
        if hooks.get("then") is not None:
            await hooks["then"](log, states)
        return log, states
    finally:
        await outbox.close()
        await async_client_close()


def test_the_outbox_appends_in_order_while_the_lock_is_its_own() -> None:
    lock = task_lock("t-ordered", ttl_s=5)
    assert lock.acquire()
    events = [{"event": "message", "answer": word} for word in ("one ", "two ", "three")]
    _, states = asyncio.run(_write(lock, events))
    assert [event["answer"] for event in logged("t-ordered")] == ["one ", "two ", "three"]
    assert states == []


def test_an_attempt_whose_lock_another_holds_writes_nothing_and_is_told() -> None:
    lock = task_lock("t-taken", ttl_s=5)
    assert lock.acquire()
    sync_client().set(lock.key, "the-attempt-that-replaced-it")

    async def abandon(log: Any, states: list[LeaseState]) -> None:
        assert states == [LeaseState.TAKEN]
        log.abandon()
        with pytest.raises(LogAbandoned):
            await log.drain()

    asyncio.run(_write(lock, [{"event": "message", "answer": "stale"}], then=abandon))
    assert logged("t-taken") == []


def test_events_wait_while_the_lock_is_missing_and_go_out_once_it_is_taken_back() -> None:
    lock = task_lock("t-missing", ttl_s=5)  # never acquired: as after a flush

    async def take_back(log: Any, states: list[LeaseState]) -> None:
        assert states == [LeaseState.MISSING]
        assert logged("t-missing") == [], "nothing is written without the lock"
        assert await lock.retake() is LeaseState.HELD
        log.resume()
        await log.drain()

    events = [{"event": "message", "answer": "a"}, {"event": "message", "answer": "b"}]
    asyncio.run(_write(lock, events, then=take_back))
    assert [event["answer"] for event in logged("t-missing")] == ["a", "b"]


def test_a_batch_sent_again_after_a_lost_reply_is_not_appended_twice() -> None:
    lock = task_lock("t-resent", ttl_s=5)
    assert lock.acquire()

    async def resend(log: Any, states: list[LeaseState]) -> None:
        # The same batch number again, as after a reply lost on the way back.
        log.batch_number -= 1
        log.append({"event": "message", "answer": "again"})
        await log.drain()

    asyncio.run(_write(lock, [{"event": "message", "answer": "once"}], then=resend))
    assert [event["answer"] for event in logged("t-resent")] == ["once"]
