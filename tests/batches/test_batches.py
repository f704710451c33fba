"""OpenAI's Batch API through the official `openai` SDK, against live processes (daphne, a
worker, the scheduler's housekeeping): a whole batch checked line by line against its input's
custom_ids, malformed lines reported in the error file, a batch too large, a file too large,
cancelling mid-batch and the window expiring (each returns what finished)."""

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import openai
import pytest
from django.utils import timezone

from apps.applications.models import App
from apps.batches.models import Batch, BatchStatus
from apps.conversations.models import Message
from apps.scheduling.models import Task
from tests.factories import make_app_with_key, model_of
from tests.gateway.live import extra_web
from tests.processes import WebServer, run_scheduler, run_worker
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ANSWER = "A scripted answer for the batch."
ENDED = ("completed", "failed", "expired", "cancelled")
HOUSEKEEPING = {"BATCH_HOUSEKEEPING_S": "0.2"}
# The worker's 8 slots: one kept from bulk work, for live work.
WORKER = {**HOUSEKEEPING, "BULK_RESERVED_SLOTS": "1"}


@pytest.fixture(scope="module")
def processes(live_web: WebServer) -> Iterator[WebServer]:
    with run_scheduler(env=HOUSEKEEPING), run_worker(concurrency=8, env=WORKER):
        yield live_web


def sdk(platform: WebServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{platform.url}/v1", api_key=key, max_retries=0)


def request_line(custom_id: str, model: str, question: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": question}], **body},
    }


def jsonl(lines: list[Any]) -> bytes:
    return b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )


def submit(client: openai.OpenAI, content: bytes) -> Any:
    uploaded = client.files.create(file=("requests.jsonl", content), purpose="batch")
    assert uploaded.purpose == "batch"
    assert uploaded.bytes == len(content)
    return client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )


def batch_wait(client: openai.OpenAI, batch_id: str, statuses: tuple[str, ...]) -> Any:
    """The batch once it is in one of `statuses`."""

    def reached() -> Any:
        batch = client.batches.retrieve(batch_id)
        return batch if batch.status in statuses else None

    return wait_until(reached, 90, f"batch {batch_id} to be {' or '.join(statuses)}")


def wait_for_tasks(app: App, count: int, *, status: str) -> None:
    """Until `count` of the app's batch requests are in `status`."""
    wait_until(
        lambda: Task.objects.filter(app=app, bulk=True, status=status).count() >= count,
        60,
        f"{count} requests {status}",
    )


def read_jsonl(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_a_whole_batch_line_by_line(processes: WebServer) -> None:
    app, key = make_app_with_key(provider_config={"text": ANSWER}, model_name="batch-model")
    client = sdk(processes, key)
    ids = [f"request-{number}" for number in range(25)]
    batch = submit(
        client,
        jsonl([request_line(custom_id, model_of(app), f"Q {custom_id}") for custom_id in ids]),
    )
    assert batch.status == "validating"
    assert batch.endpoint == "/v1/chat/completions"
    assert batch.expires_at - batch.created_at == 24 * 3600

    done = batch_wait(client, batch.id, ENDED)
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (25, 25)
    assert done.request_counts.failed == 0
    assert done.error_file_id is None
    output = read_jsonl(client, done.output_file_id)
    assert [line["custom_id"] for line in output] == ids  # in the input's order, each once
    for line in output:
        assert line["id"].startswith("batch_req_")
        assert line["error"] is None
        assert line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == ANSWER
        assert body["usage"]["completion_tokens"] > 0

    # The requests ran as the app's bulk work, recorded like any answer.
    tasks = Task.objects.filter(app=app, kind="chat")
    assert tasks.count() == 25
    assert set(tasks.values_list("priority", "bulk", "status").distinct()) == {
        ("low", True, "succeeded")
    }
    assert Message.objects.filter(app=app, query="Q request-3").get().answer == ANSWER
    listed = client.batches.list()
    assert [one.id for one in listed] == [batch.id]
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"


def test_malformed_lines_go_to_the_error_file(processes: WebServer) -> None:
    app, key = make_app_with_key(provider_config={"text": ANSWER}, model_name="batch-model")
    client = sdk(processes, key)
    lines: list[Any] = [
        request_line("good-1", model_of(app), "One?"),
        b'{"custom_id": "broken", "method": "POST", "url": ',
        request_line("wrong-model", "gpt-4o", "Two?"),
        request_line("good-1", model_of(app), "Again?"),
        request_line("too-hot", model_of(app), "Three?", temperature=9),
        b"",
        request_line("good-2", model_of(app), "Four?"),
    ]
    done = batch_wait(client, submit(client, jsonl(lines)).id, ENDED)
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (6, 2)
    assert done.request_counts.failed == 4
    assert [line["custom_id"] for line in read_jsonl(client, done.output_file_id)] == [
        "good-1",
        "good-2",
    ]
    errors = {
        (line["custom_id"], line["error"]["code"], line["error"]["line"])
        for line in read_jsonl(client, done.error_file_id)
    }
    assert errors == {
        (None, "invalid_json_line", 2),
        ("wrong-model", "model_not_found", 3),
        ("good-1", "duplicate_custom_id", 4),
        ("too-hot", "invalid_value", 5),
    }


def test_a_batch_with_no_valid_request_fails(processes: WebServer) -> None:
    _, key = make_app_with_key(model_name="batch-model")
    client = sdk(processes, key)
    done = batch_wait(client, submit(client, b"not json\n[]\n").id, ENDED)
    assert done.status == "failed"
    assert done.errors is not None
    assert [error.code for error in done.errors.data or []] == [
        "invalid_json_line",
        "invalid_json_line",
    ]


def test_a_batch_too_large_fails_and_records_nothing(processes: WebServer) -> None:
    app, key = make_app_with_key(model_name="batch-model")
    client = sdk(processes, key)
    line = json.dumps(request_line("r", model_of(app), "Hi?")).encode() + b"\n"
    done = batch_wait(client, submit(client, line * 50_001).id, ENDED)
    assert done.status == "failed"
    assert done.errors is not None
    [error] = done.errors.data or []
    assert error.code == "too_many_requests"
    assert "50001" in (error.message or "")
    assert not Task.objects.filter(app=app, kind="chat").exists()


def test_a_file_too_large_is_refused(live_web: WebServer) -> None:
    _, key = make_app_with_key(model_name="batch-model")
    with extra_web(BATCH_MAX_FILE_MB="1") as web:
        client = sdk(web, key)
        with pytest.raises(openai.APIStatusError) as refused:
            client.files.create(file=("big.jsonl", b"x" * (2 * 1024 * 1024)), purpose="batch")
        assert refused.value.status_code == 413
        with pytest.raises(openai.BadRequestError) as wrong_purpose:
            client.files.create(file=("small.jsonl", b"{}\n"), purpose="fine-tune")
        assert wrong_purpose.value.param == "purpose"


def test_cancel_mid_batch_returns_what_finished(processes: WebServer) -> None:
    app, key = make_app_with_key(
        provider_config={"pieces": ["slow ", "answer"], "tokens_per_s": 4},
        model_name="batch-model",
    )
    client = sdk(processes, key)
    lines = [request_line(f"r{number}", model_of(app), "Hi?") for number in range(40)]
    batch = submit(client, jsonl(lines))
    wait_for_tasks(app, 2, status="succeeded")
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = batch_wait(client, batch.id, ENDED)
    assert done.status == "cancelled"
    assert done.cancelled_at is not None
    finished = read_jsonl(client, done.output_file_id)
    unfinished = read_jsonl(client, done.error_file_id)
    assert done.request_counts is not None
    assert done.request_counts.completed == len(finished) >= 2
    assert len(finished) + len(unfinished) == 40 == done.request_counts.total
    assert {line["custom_id"] for line in finished + unfinished} == {f"r{n}" for n in range(40)}
    assert any(
        line["error"] == {"code": "batch_cancelled", "message": line["error"]["message"]}
        for line in unfinished
        if line["error"]
    )
    # Nothing of the batch is left to run.
    assert not Task.objects.filter(app=app, status__in=("pending", "queued", "running")).exists()


def test_the_window_expiring_returns_what_finished(processes: WebServer) -> None:
    app, key = make_app_with_key(
        provider_config={"pieces": ["slow ", "answer"], "tokens_per_s": 4},
        model_name="batch-model",
    )
    client = sdk(processes, key)
    batch = submit(client, jsonl([request_line(f"r{n}", model_of(app), "Hi?") for n in range(30)]))
    wait_for_tasks(app, 1, status="succeeded")
    # A day goes by: the window closes now.
    Batch.objects.filter(app=app).update(expires_at=timezone.now() - timedelta(seconds=1))
    done = batch_wait(client, batch.id, ENDED)
    assert done.status == "expired"
    assert done.expired_at is not None
    finished = read_jsonl(client, done.output_file_id)
    expired = [line for line in read_jsonl(client, done.error_file_id) if line["error"]]
    assert finished
    assert {line["error"]["code"] for line in expired} == {"batch_expired"}
    assert done.request_counts is not None
    assert done.request_counts.completed == len(finished)
    assert done.request_counts.total == 30


def test_live_chat_runs_while_a_batch_holds_the_worker(processes: WebServer) -> None:
    """The worker's slots are 8, one kept from bulk work: a live request starts at once."""
    app, key = make_app_with_key(
        provider_config={"pieces": ["slow ", "answer"], "tokens_per_s": 1},
        model_name="batch-model",
    )
    client = sdk(processes, key)
    batch = submit(client, jsonl([request_line(f"r{n}", model_of(app), "Hi?") for n in range(30)]))
    wait_for_tasks(app, 7, status="running")
    live_app, live_key = make_app_with_key(provider_config={"text": "Live."}, model_name="live")
    answer = sdk(processes, live_key).chat.completions.create(
        model="live",
        messages=[{"role": "user", "content": "Now?"}],
        extra_body={"priority": "high"},
    )
    assert answer.choices[0].message.content == "Live."
    assert Task.objects.filter(app=app, bulk=True, status="running").count() <= 7
    client.batches.cancel(batch.id)
    batch_wait(client, batch.id, ENDED)
    del live_app


def test_other_apps_see_nothing_of_a_batch(processes: WebServer) -> None:
    app, key = make_app_with_key(provider_config={"text": ANSWER}, model_name="batch-model")
    _, stranger_key = make_app_with_key(model_name="batch-model")
    client, stranger = sdk(processes, key), sdk(processes, stranger_key)
    batch = submit(client, jsonl([request_line("only", model_of(app), "Mine?")]))
    done = batch_wait(client, batch.id, ENDED)
    with pytest.raises(openai.NotFoundError):
        stranger.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        stranger.files.content(done.output_file_id or "")
    with pytest.raises(openai.NotFoundError):
        stranger.batches.cancel(batch.id)
    assert list(stranger.batches.list()) == []
    assert Batch.objects.get(app=app).status == BatchStatus.COMPLETED


def test_operators_see_batches_and_cancel_them(processes: WebServer, admin_client: Any) -> None:
    app, key = make_app_with_key(
        provider_config={"pieces": ["slow ", "answer"], "tokens_per_s": 2},
        model_name="batch-model",
    )
    client = sdk(processes, key)
    batch = submit(client, jsonl([request_line(f"r{n}", model_of(app), "Hi?") for n in range(20)]))
    batch_wait(client, batch.id, ("in_progress",))
    row = Batch.objects.get(app=app)

    listing = admin_client.get("/admin/batches/batch/")
    assert listing.status_code == 200
    assert batch.id in listing.content.decode()
    page = admin_client.get(f"/admin/batches/batch/{row.id}/change/")
    assert page.status_code == 200
    assert "r0" in page.content.decode()  # its requests, with their tasks

    done = admin_client.post(
        "/admin/batches/batch/", {"action": "cancel_batches", "_selected_action": [str(row.id)]}
    )
    assert done.status_code == 302
    assert batch_wait(client, batch.id, ENDED).status == "cancelled"

    metrics = httpx.get(f"{processes.url}/metrics").text
    assert 'dp_batches{status="cancelled"} 1' in metrics
    assert 'dp_batch_requests{status="pending"} 0' in metrics
