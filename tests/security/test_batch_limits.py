"""Batches cannot crowd the platform: an app has at most BATCHES["MAX_OPEN_PER_APP"] batches open
(one input file cannot be reused without end); the housekeeping's work per round is bounded
whatever the number of open batches (batches_advance takes a bounded number, the least recently
looked at first; batches_release a bounded number of apps, in turn), and the queue's room is
shared between apps before batches, so one app's many batches do not starve another's; a line
with text PostgreSQL cannot store (a lone surrogate, NUL) fails that line alone."""

import json
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from apps.batches.expansion import batch_expand
from apps.batches.models import Batch, BatchLine, BatchStatus
from apps.batches.progress import batches_advance, batches_release
from apps.batches.services import batch_create, batch_file_store
from apps.scheduling.models import Task, TaskStatus
from tests.factories import make_app, make_key

pytestmark = pytest.mark.django_db

ENDPOINT = "/v1/chat/completions"


def batches(**values: Any) -> Any:
    return override_settings(BATCHES={**settings.BATCHES, **values})


def line(custom_id: str, content: str = "Weather?") -> bytes:
    body = {"model": "batch-model", "messages": [{"role": "user", "content": content}]}
    request = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(request).encode() + b"\n"


def started(app: Any, requests: int = 3) -> Batch:
    """A batch of the app in progress, its requests held back (pending)."""
    content = b"".join(line(f"r{index}") for index in range(requests))
    stored = batch_file_store(app=app, filename="in.jsonl", chunks=[content])
    batch = batch_create(
        app=app, input_file_id=stored.id, endpoint=ENDPOINT, completion_window="24h"
    )
    assert batch_expand(batch_id=batch.id) == BatchStatus.IN_PROGRESS
    return batch


@batches(MAX_OPEN_PER_APP=2)
def test_an_app_has_a_bounded_number_of_open_batches(client: Client) -> None:
    app = make_app(model_name="batch-model")
    _, key = make_key(app)
    stored = batch_file_store(app=app, filename="in.jsonl", chunks=[line("a")])
    body = {"input_file_id": f"file-{stored.id.hex}", "endpoint": ENDPOINT}
    headers = {"Authorization": f"Bearer {key}"}

    def create() -> Any:
        return client.post(
            "/v1/batches",
            data=json.dumps({**body, "completion_window": "24h"}),
            content_type="application/json",
            headers=headers,
        )

    assert [create().status_code for _ in range(2)] == [200, 200]
    refused = create()
    assert refused.status_code == 429, refused.content
    error = refused.json()["error"]
    assert error["code"] == "too_many_open_batches"
    assert "at most 2" in error["message"]
    # Another app is not held back by this one's.
    other = make_app(model_name="batch-model")
    other_file = batch_file_store(app=other, filename="in.jsonl", chunks=[line("a")])
    batch_create(app=other, input_file_id=other_file.id, endpoint=ENDPOINT, completion_window="24h")
    # Once one has ended, there is room again.
    Batch.objects.filter(app=app).update(status=BatchStatus.COMPLETED)
    assert create().status_code == 200


def queries_of(run: Any) -> int:
    with CaptureQueriesContext(connection) as captured:
        run()
    return len(captured.captured_queries)


@batches(MAX_OPEN_PER_APP=100, ADVANCE_PER_ROUND=4)
def test_advancing_batches_is_bounded_per_round_and_reaches_every_batch_in_turn() -> None:
    app = make_app(model_name="batch-model")
    few = [started(app, requests=1) for _ in range(4)]
    with_few = queries_of(batches_advance)
    many = few + [started(app, requests=1) for _ in range(16)]
    with_many = queries_of(batches_advance)
    assert with_many <= with_few, (with_few, with_many)
    # Every batch is looked at within a few rounds, the least recently looked at first.
    for _ in range(5):
        batches_advance()
    looked_at = Batch.objects.filter(id__in=[batch.id for batch in many])
    assert not looked_at.filter(advanced_at__isnull=True).exists()


@batches(MAX_OPEN_PER_APP=100, QUEUED_MAX=4)
def test_the_queues_room_is_shared_between_apps_first() -> None:
    crowded = make_app(model_name="batch-model")
    for _ in range(10):
        started(crowded)
    other = make_app(model_name="batch-model")
    lone = started(other)
    assert batches_release() == 4
    queued = Task.objects.filter(bulk=True, status=TaskStatus.QUEUED)
    assert queued.filter(batch_lines__batch=lone).count() == 2
    assert queued.filter(app=crowded).count() == 2


@batches(MAX_OPEN_PER_APP=100, QUEUED_MAX=4, RELEASE_APPS_PER_ROUND=2)
def test_releasing_is_bounded_per_round_whatever_the_number_of_batches() -> None:
    # Batches of more requests than an app's share of a round: each app visited releases from
    # its oldest batch alone, so every round costs the same when nothing grows with the batches.
    apps = [make_app(model_name="batch-model") for _ in range(2)]
    for app in apps:
        for _ in range(2):
            started(app, requests=10)
    with_few = queries_of(batches_release)
    apps += [make_app(model_name="batch-model") for _ in range(12)]
    for app in apps[2:]:
        for _ in range(2):
            started(app, requests=10)
    # Two rounds later (the queue emptied meanwhile): still two apps a round, in turn.
    served: set[str] = set()
    for _ in range(3):
        Task.objects.filter(bulk=True, status=TaskStatus.QUEUED).update(status=TaskStatus.SUCCEEDED)
        with_many = queries_of(batches_release)
        assert with_many <= with_few, (with_few, with_many)
        served |= {
            str(app_id)
            for app_id in Task.objects.filter(bulk=True, status=TaskStatus.QUEUED).values_list(
                "app_id", flat=True
            )
        }
    assert len(served) == 6  # two other apps each round


@pytest.mark.parametrize(
    "bad",
    [
        b'{"custom_id": "r\\ud800", "method": "POST", "url": "/v1/chat/completions", "body": '
        b'{"model": "batch-model", "messages": [{"role": "user", "content": "Hi"}]}}\n',
        b'{"custom_id": "r2", "method": "POST", "url": "/v1/chat/completions", "body": '
        b'{"model": "batch-model", "user": "u\\u0000", "messages": [{"role": "user", "content": '
        b'"Hi"}]}}\n',
        b'{"custom_id": "r2", "method": "POST", "url": "/v1/chat/completions", "body": '
        b'{"model": "batch-model", "messages": [{"role": "user", "content": "x\xed\xa0\x80"}]}}\n',
    ],
)
def test_a_line_with_text_postgresql_cannot_store_fails_alone(bad: bytes) -> None:
    app = make_app(model_name="batch-model")
    content = line("r1") + bad + line("r3") + line("r4")
    stored = batch_file_store(app=app, filename="in.jsonl", chunks=[content])
    batch = batch_create(
        app=app, input_file_id=stored.id, endpoint=ENDPOINT, completion_window="24h"
    )
    assert batch_expand(batch_id=batch.id) == BatchStatus.IN_PROGRESS
    lines = {found.number: found for found in BatchLine.objects.filter(batch=batch)}
    assert sorted(lines) == [1, 2, 3, 4]
    assert [lines[number].task_id is not None for number in (1, 3, 4)] == [True, True, True]
    refused = lines[2]
    assert refused.task_id is None
    assert refused.error is not None
    assert refused.error["code"] == "invalid_text"
    assert "surrogate" in refused.error["message"]
    assert "codec" not in refused.error["message"]
