"""Reading a batch's input in-process (the work a worker runs while the batch is `validating`):
a line the app's inputs form refuses is reported with nothing of it recorded; the rest run."""

import json

import pytest

from apps.batches.expansion import batch_expand, file_lines
from apps.batches.models import BatchLine, BatchStatus
from apps.batches.services import batch_create, batch_file_store
from apps.conversations.models import Message
from apps.scheduling.models import Task, TaskStatus
from tests.factories import make_app

pytestmark = pytest.mark.django_db

FORM = [{"text-input": {"label": "City", "variable": "city", "required": True, "max_length": 40}}]


def line(custom_id: str, **body: object) -> bytes:
    request = {"model": "batch-model", "messages": [{"role": "user", "content": "Weather?"}]}
    return (
        json.dumps(
            {
                "custom_id": custom_id,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {**request, **body},
            }
        ).encode()
        + b"\n"
    )


def test_a_line_the_inputs_form_refuses_is_reported_and_the_rest_recorded() -> None:
    app = make_app(model_name="batch-model", user_input_form=FORM)
    content = line("no-city") + line("oslo", inputs={"city": "Oslo"})
    stored = batch_file_store(app=app, filename="in.jsonl", chunks=[content])
    batch = batch_create(
        app=app, input_file_id=stored.id, endpoint="/v1/chat/completions", completion_window="24h"
    )

    assert batch_expand(batch_id=batch.id) == BatchStatus.IN_PROGRESS

    refused, recorded = BatchLine.objects.filter(batch=batch).order_by("number")
    assert refused.task_id is None
    assert refused.error is not None
    assert (refused.error["code"], refused.error["param"], refused.error["line"]) == (
        "invalid_request",
        "body.inputs",
        1,
    )
    assert recorded.task is not None
    assert (recorded.task.status, recorded.task.bulk, recorded.task.priority) == (
        TaskStatus.PENDING,
        True,
        "low",
    )
    assert Message.objects.get(task=recorded.task).inputs == {"city": "Oslo"}
    # Only the valid line's task exists (the batch's own reading task aside).
    assert Task.objects.filter(app=app, bulk=True).count() == 1


def test_lines_split_across_chunks_and_a_line_too_long() -> None:
    chunks = [b'{"a":', b' 1}\r\n{"b"', b": 2}\n", b"x" * 50, b"y" * 50 + b"\n", b"last"]
    lines = list(file_lines(iter(chunks), max_line_bytes=64))
    assert lines[:2] == [b'{"a": 1}', b'{"b": 2}']
    assert not isinstance(lines[2], bytes)  # too long: a marker, not the line
    assert lines[3] == b"last"
