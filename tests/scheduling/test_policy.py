"""Scheduling policy, in this process, on the real PostgreSQL and Redis: downgrade and deferral
under load with hysteresis, aging, deadlines of waiting tasks, cancel, operator requeue, purge."""

import json
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from apps.applications.models import ApiKey
from apps.conversations.models import Message, MessageStatus
from apps.conversations.services import Question, answer_submit
from apps.core.redis import sync_client
from apps.scheduling.coordination.load_state import load_report, load_state_read
from apps.scheduling.coordination.queues import DELAYED_KEY, queue_for
from apps.scheduling.coordination.stops import task_stop_reason
from apps.scheduling.housekeeping.load import load_evaluate
from apps.scheduling.housekeeping.recovery import (
    expire_overdue,
    promote_aged,
    push_due_delayed,
    reconcile_lost_jobs,
)
from apps.scheduling.models import Task, TaskStatus
from apps.scheduling.runtime.runner import task_execute
from apps.scheduling.tasks.services import task_cancel, task_purge, task_requeue
from apps.streams.log import stream_key
from tests.factories import make_app, make_key

pytestmark = pytest.mark.django_db(transaction=True)


def key_for(**app_fields: Any) -> ApiKey:
    app = make_app(**app_fields)
    api_key, _ = make_key(app)
    return ApiKey.objects.select_related("app").get(id=api_key.id)


def submit(priority: str = "medium", api_key: ApiKey | None = None, **app_fields: Any) -> Task:
    api_key = api_key or key_for(**app_fields)
    return answer_submit(
        question=Question(
            api_key=api_key,
            route_mode="chat",
            end_user="u1",
            query="hi",
            inputs={},
            priority=priority,
        )
    ).task


def flooding() -> ApiKey:
    """An app asking far more of its deployment (one sequence) than it can serve: the load is
    its doing."""
    api_key = key_for(name="flood", provider_config={"text": "x", "max_concurrency": 1})
    for _ in range(6):
        submit("medium", api_key)
    return api_key


def waits_at(task: Task) -> str | None:
    """The priority whose line the task waits in at its deployment, if it waits there."""
    for priority in ("high", "medium", "low"):
        if sync_client().hexists(f"dp-test:cap:waiting:{priority}", str(task.id)):
            return priority
    return None


def queued_ids(name: str) -> list[str]:
    return list(queue_for(name).get_job_ids())


def simulate_cpu(percent: float) -> None:
    load_report(host="simulated-host", cpu_percent=percent)
    load_evaluate()


def test_load_hysteresis() -> None:
    simulate_cpu(50)
    assert not load_state_read().overloaded
    simulate_cpu(85)
    assert load_state_read().overloaded
    simulate_cpu(65)  # below the high mark but above the low one: still overloaded
    assert load_state_read().overloaded
    simulate_cpu(40)
    assert not load_state_read().overloaded


def test_under_load_medium_drops_to_low_and_low_is_deferred_high_is_kept() -> None:
    flood = flooding()
    simulate_cpu(95)
    medium, low, high = (submit(priority, flood) for priority in ("medium", "low", "high"))

    assert (medium.requested_priority, medium.priority) == ("medium", "low")
    assert "downgraded from medium" in medium.priority_reason
    assert waits_at(medium) == "low"

    assert low.priority == "low"
    assert "deferred" in low.priority_reason
    assert low.not_before is not None
    assert str(low.id) not in queued_ids("low")
    assert sync_client().zscore(DELAYED_KEY(), str(low.id)) is not None

    assert high.priority == "high"
    assert high.priority_reason == ""
    assert waits_at(high) == "high"


def test_under_load_an_app_within_its_fair_share_keeps_its_priority() -> None:
    flooding()
    simulate_cpu(95)
    quiet = key_for(name="quiet")
    medium, low = submit("medium", quiet), submit("low", quiet)
    assert (medium.priority, medium.priority_reason) == ("medium", "")
    assert (low.priority, low.not_before) == ("low", None)
    assert str(medium.id) in queued_ids("medium"), "it went straight to a worker"


def test_after_recovery_new_work_keeps_its_priority() -> None:
    simulate_cpu(95)
    simulate_cpu(30)
    task = submit("medium")
    assert task.priority == "medium"
    assert task.priority_reason == ""


def test_deferred_work_is_queued_when_due_and_the_load_is_gone() -> None:
    flood = flooding()
    simulate_cpu(95)
    low = submit("low", flood)
    sync_client().zadd(DELAYED_KEY(), {str(low.id): 0})  # its deferral is over
    push_due_delayed()  # still overloaded: deferred again
    assert str(low.id) not in queued_ids("low")
    assert sync_client().zscore(DELAYED_KEY(), str(low.id)) is not None

    simulate_cpu(20)
    sync_client().zadd(DELAYED_KEY(), {str(low.id): 0})
    push_due_delayed()
    assert waits_at(low) == "low", "in its deployment's line now"


def test_aging_promotes_a_starving_task_one_class() -> None:
    low = submit("low")
    Task.objects.filter(id=low.id).update(enqueued_at=timezone.now() - timedelta(minutes=10))

    promote_aged()
    low.refresh_from_db()
    assert low.priority == "medium"
    assert low.requested_priority == "low"
    assert "aged" in low.priority_reason
    assert str(low.id) in queued_ids("medium")
    assert str(low.id) not in queued_ids("low")

    promote_aged()  # it just moved: the clock starts again in its new class
    low.refresh_from_db()
    assert low.priority == "medium"

    Task.objects.filter(id=low.id).update(promoted_at=timezone.now() - timedelta(minutes=10))
    promote_aged()
    low.refresh_from_db()
    assert low.priority == "high"
    assert str(low.id) in queued_ids("high")


def test_waiting_task_past_its_deadline_expires_and_tells_the_client() -> None:
    task = submit("low")
    Task.objects.filter(id=task.id).update(deadline_at=timezone.now() - timedelta(seconds=1))

    assert expire_overdue() == 1
    task.refresh_from_db()
    assert task.status == TaskStatus.EXPIRED
    assert str(task.id) not in queued_ids("low")
    entries: Any = sync_client().xrange(stream_key(str(task.id)))
    last = json.loads(entries[-1][1][b"d"])
    assert (last["event"], last["code"], last["status"]) == ("error", "deadline_exceeded", 504)


def test_running_task_cannot_outlive_its_deadline() -> None:
    task = submit(provider_config={"text": "word " * 50, "tokens_per_s": 20})
    Task.objects.filter(id=task.id).update(deadline_at=timezone.now() + timedelta(seconds=0.5))

    task_execute(task_id=str(task.id), worker_name="in-process")
    task.refresh_from_db()
    assert task.status == TaskStatus.EXPIRED
    # Stopped at its deadline, not run to its end: part of the answer, then the error.
    entries: Any = sync_client().xrange(stream_key(str(task.id)))
    kinds = [fields[b"k"].decode() for _, fields in entries]
    assert kinds.count("message") < 50
    assert kinds[-1] == "error"


def test_cancel_a_queued_task() -> None:
    task = submit()
    assert task_cancel(task_id=task.id, actor="ops") == "cancelled"
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELLED
    assert str(task.id) not in queued_ids("medium")
    task_execute(task_id=str(task.id), worker_name="in-process")  # a stray job does nothing
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELLED
    assert task.attempts == 0


def test_cancel_a_running_task_asks_its_worker_to_stop() -> None:
    task = submit()
    Task.objects.filter(id=task.id).update(status=TaskStatus.RUNNING)
    assert task_cancel(task_id=task.id, actor="ops") == "stopping"
    assert task_stop_reason(task_id=str(task.id)) == "cancel"


def test_dead_letter_retry_with_a_fresh_budget_on_another_queue_succeeds() -> None:
    task = submit(provider_config={"text": "finally", "fail_attempts": 2}, max_attempts=2)
    for _ in range(2):
        task_execute(task_id=str(task.id), worker_name="in-process")
    task.refresh_from_db()
    assert task.status == TaskStatus.DEAD

    requeued = task_requeue(task_id=task.id, actor="ops", priority="high")
    assert requeued is not None
    assert requeued.max_attempts == 2 + 2
    assert str(task.id) in queued_ids("high")
    assert Message.objects.get(task=task).status == MessageStatus.PENDING
    assert sync_client().exists(stream_key(str(task.id))) == 0

    task_execute(task_id=str(task.id), worker_name="in-process")
    task.refresh_from_db()
    assert task.status == TaskStatus.SUCCEEDED
    assert task.attempts == 3
    assert Message.objects.get(task=task).answer == "finally"
    statuses = list(task.events.values_list("to_status", flat=True))
    assert statuses[-3:] == ["queued", "running", "succeeded"]


def test_purge_removes_only_finished_unsuccessful_tasks() -> None:
    live = submit()
    assert task_purge(task_id=live.id, actor="ops") is False
    dead = submit(provider_config={"permanent_error": "no"})
    task_execute(task_id=str(dead.id), worker_name="in-process")
    assert task_purge(task_id=dead.id, actor="ops") is True
    assert not Task.objects.filter(id=dead.id).exists()
    assert Task.objects.filter(id=live.id).exists()


def _age(task: Task) -> None:
    grace = timedelta(seconds=settings.PLATFORM["RECONCILE_GRACE_S"] + 1)
    Task.objects.filter(id=task.id).update(enqueued_at=timezone.now() - grace)


def test_a_job_taken_by_a_worker_that_died_before_starting_it_is_pushed_again() -> None:
    # A worker popped the job id (BLPOP) and was killed before RQ marked the job started: the
    # job hash still says `queued`, but the id is in no queue.
    task = submit("high")
    client = sync_client()
    assert client.lpop(queue_for("high").key) == str(task.id).encode()
    assert client.hget(f"rq:job:{task.id}", "status") == b"queued"
    _age(task)

    assert reconcile_lost_jobs() == 1
    assert queued_ids("high") == [str(task.id)]
    assert reconcile_lost_jobs() == 0  # waiting in its queue again: left alone


def test_a_job_started_by_a_worker_that_is_gone_is_pushed_again() -> None:
    task = submit("high")
    client = sync_client()
    client.lpop(queue_for("high").key)
    client.hset(f"rq:job:{task.id}", mapping={"status": "started", "worker_name": "gone.1"})
    _age(task)

    assert reconcile_lost_jobs() == 1
    assert queued_ids("high") == [str(task.id)]
