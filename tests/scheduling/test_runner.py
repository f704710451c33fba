"""One attempt at a time, in this process: retries with backoff, dead letters, permanent failures,
deadlines, and a task that can never run twice. The scripted provider plays the model."""

import json
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from apps.applications.models import ApiKey
from apps.conversations.models import Message, MessageStatus
from apps.conversations.services import Question, answer_submit
from apps.core.insert import insert_together
from apps.core.redis import sync_client
from apps.scheduling.coordination.leases import task_lock
from apps.scheduling.coordination.queues import DELAYED_KEY
from apps.scheduling.models import Task, TaskStatus
from apps.scheduling.runtime.runner import task_execute
from apps.scheduling.tasks.services import CREATION_LOCK_SQL, retry_delay_s, task_prepare
from apps.streams.log import stream_key
from tests.factories import make_app, make_key

pytestmark = pytest.mark.django_db(transaction=True)


def submit(provider_config: dict[str, Any], **app_fields: Any) -> Task:
    app = make_app(provider_config=provider_config, **app_fields)
    api_key, _ = make_key(app)
    api_key = ApiKey.objects.select_related("app").get(id=api_key.id)
    submitted = answer_submit(
        question=Question(api_key=api_key, route_mode="chat", end_user="u1", query="hi", inputs={})
    )
    return submitted.task


def events(task: Task) -> list[dict[str, Any]]:
    entries: Any = sync_client().xrange(stream_key(str(task.id)))
    return [json.loads(fields[b"d"]) for _, fields in entries]


def run(task: Task) -> Task:
    task_execute(task_id=str(task.id), worker_name="in-process")
    task.refresh_from_db()
    return task


def test_success_saves_the_answer_and_ends_the_stream() -> None:
    task = run(submit({"text": "one two three"}))

    assert task.status == TaskStatus.SUCCEEDED
    message = Message.objects.get(task=task)
    assert message.answer == "one two three"
    assert message.status == MessageStatus.NORMAL
    kinds = [event["event"] for event in events(task)]
    assert kinds == ["message", "message", "message", "message_end"]


def test_retryable_failure_retries_with_backoff_then_succeeds() -> None:
    task = submit({"text": "alpha beta gamma", "fail_attempts": 1, "fail_after_pieces": 2})

    task = run(task)
    assert task.status == TaskStatus.RETRYING
    assert task.attempts == 1
    assert "scripted failure" in task.error_message
    assert task.not_before is not None
    assert task.not_before > timezone.now() - timedelta(seconds=1)
    assert sync_client().zscore(DELAYED_KEY(), str(task.id)) is not None

    task = run(task)
    assert task.status == TaskStatus.SUCCEEDED
    assert task.attempts == 2
    kinds = [(event["event"], event.get("answer")) for event in events(task)]
    # The retry first takes back what the failed attempt had shown, then streams from the start.
    assert kinds == [
        ("message", "alpha"),
        ("message", " beta"),
        ("message_replace", ""),
        ("message", "alpha"),
        ("message", " beta"),
        ("message", " gamma"),
        ("message_end", None),
    ]
    assert Message.objects.get(task=task).answer == "alpha beta gamma"
    reasons = list(task.events.values_list("to_status", flat=True))
    assert reasons == ["queued", "running", "retrying", "running", "succeeded"]


def test_exhausted_retries_end_dead_with_an_error_event() -> None:
    task = submit({"fail_attempts": 99}, max_attempts=3)
    for _ in range(3):
        task = run(task)

    assert task.status == TaskStatus.DEAD
    assert task.attempts == 3
    assert Message.objects.get(task=task).status == MessageStatus.ERROR
    last = events(task)[-1]
    assert last["event"] == "error"
    assert "task_id" not in last
    assert last["status"] == 500
    # A dead task is not run again by a stray duplicate job.
    assert run(task).attempts == 3


def test_permanent_failure_fails_at_once() -> None:
    task = run(submit({"permanent_error": "model refused the request"}))

    assert task.status == TaskStatus.FAILED
    assert task.attempts == 1
    last = events(task)[-1]
    assert (last["event"], last["code"], last["status"]) == (
        "error",
        "completion_request_error",
        400,
    )
    assert "model refused" in last["message"]


def test_deadline_passed_before_start_expires_without_running() -> None:
    task = submit({"text": "never shown"})
    Task.objects.filter(id=task.id).update(deadline_at=timezone.now() - timedelta(seconds=1))

    task = run(task)
    assert task.status == TaskStatus.EXPIRED
    assert [event["event"] for event in events(task)] == ["error"]
    assert events(task)[0]["code"] == "deadline_exceeded"
    assert events(task)[0]["status"] == 504


def test_a_task_locked_by_another_worker_is_not_run_twice() -> None:
    task = submit({"text": "once"})
    other_worker = task_lock(str(task.id), ttl_s=30)
    assert other_worker.acquire()
    try:
        assert run(task).status == TaskStatus.QUEUED
        assert events(task) == []
    finally:
        other_worker.release()
    assert run(task).status == TaskStatus.SUCCEEDED
    assert run(task).attempts == 1


def test_retry_delays_grow_with_jitter(settings: Any) -> None:
    settings.PLATFORM = {
        **settings.PLATFORM,
        "RETRY_BACKOFF_BASE_S": 1.0,
        "RETRY_BACKOFF_MAX_S": 60.0,
    }
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (10, 60.0)]:
        delays = {retry_delay_s(attempt) for _ in range(50)}
        assert all(0.5 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1, "delays must be jittered"


def test_a_job_taken_before_its_task_is_committed_waits_for_the_commit() -> None:
    """The job is pushed before the INSERT commits (to overlap the commit's flush with the
    worker's pick-up): a worker that gets there first waits for the creating transaction on its
    advisory lock, then runs the task, instead of dropping the job."""
    created = threading.Event()
    release = threading.Event()
    holder: dict[str, str] = {}

    def create_slowly() -> None:
        # Commit only once the worker below is waiting for it.
        with transaction.atomic():
            prepared = task_prepare(kind="noop", app=None, requested_priority="high")
            insert_together(
                prepared.task,
                prepared.event,
                then=f"SELECT pg_advisory_xact_lock({CREATION_LOCK_SQL})",
                then_params=[str(prepared.task.id)],
            )
            holder["id"] = str(prepared.task.id)
            created.set()
            release.wait(10)
        connection.close()

    creator = threading.Thread(target=create_slowly)
    creator.start()
    assert created.wait(10)

    def take_the_job() -> None:
        task_execute(task_id=holder["id"], worker_name="early")
        connection.close()

    worker = threading.Thread(target=take_the_job)
    worker.start()
    worker.join(0.5)
    assert worker.is_alive()  # waiting for the creator, not dropped
    release.set()
    creator.join(10)
    worker.join(10)
    assert Task.objects.get(id=holder["id"]).status == TaskStatus.SUCCEEDED


def test_a_job_whose_task_was_never_committed_is_dropped() -> None:
    never = str(uuid.uuid4())
    task_execute(task_id=never, worker_name="w")  # returns at once: nothing to wait for
    assert not Task.objects.filter(id=never).exists()
