"""OpenAI's front door (issue 15): the request path of /v1/chat/completions side by side with
Dify's /v1/chat-messages (same instant provider, same processes), and a 10,000-request batch on
the default workers while interactive `high` chat arrives."""

import json
import time
from typing import Any

import httpx

from bench.harness import median, percentile

# Without the conversation's title (low work beside each answer): the request paths alone.
DIFY = (
    "/v1/chat-messages",
    {"inputs": {}, "query": "hello", "user": "bench", "auto_generate_name": False},
)


def openai_route(model: str) -> tuple[str, dict[str, Any]]:
    return (
        "/v1/chat/completions",
        {"model": model, "messages": [{"role": "user", "content": "hello"}], "user": "bench"},
    )


def idle_latency(url: str, key: str, route: tuple[str, dict[str, Any]], samples: int) -> float:
    """Median of blocking requests one after another on an idle system (ms)."""
    path, body = route
    taken = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        for _ in range(samples):
            started = time.monotonic()
            response = c.post(path, json=body)
            assert response.status_code == 200, response.text
            taken.append(time.monotonic() - started)
    return median(taken) * 1000


def batch_lines(model: str, count: int) -> bytes:
    line = {
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": "summarize"}]},
    }
    return b"".join(
        json.dumps({**line, "custom_id": f"line-{number}"}).encode() + b"\n"
        for number in range(count)
    )


def batch_submit(url: str, key: str, content: bytes) -> str:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        uploaded = client.post(
            "/v1/files",
            files={"file": ("lines.jsonl", content, "application/jsonl")},
            data={"purpose": "batch"},
        )
        assert uploaded.status_code == 200, uploaded.text
        created = client.post(
            "/v1/batches",
            json={
                "input_file_id": uploaded.json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
        assert created.status_code == 200, created.text
        return str(created.json()["id"])


def batch_status(url: str, key: str, batch_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{url}/v1/batches/{batch_id}", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    return dict(response.json())


def isolation_beside_a_batch(
    url: str, batch_key: str, batch_model: str, live_key: str, lines: int, highs: int
) -> dict[str, float]:
    """A batch of `lines` requests runs; `highs` interactive chat requests at `high` arrive one
    every 150 ms meanwhile. Their wait for a worker (the task's start minus its enqueue), the
    batch's own runs and its throughput, from the tasks' timestamps."""
    from apps.batches.models import Batch, BatchLine
    from apps.scheduling.models import Task

    batch_id = batch_submit(url, batch_key, batch_lines(batch_model, lines))
    give_up_at = time.monotonic() + 600
    while batch_status(url, batch_key, batch_id)["status"] == "validating":
        assert time.monotonic() < give_up_at, "the batch was never read"
        time.sleep(0.5)
    time.sleep(2.0)  # the batch's requests fill the workers' bulk capacity
    high_ids = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {live_key}"}) as client:
        for _ in range(highs):
            body = {"inputs": {}, "query": "now?", "user": "live", "priority": "high"}
            response = client.post("/v1/chat-messages", json=body, timeout=60)
            assert response.status_code == 200, response.text
            high_ids.append(response.json()["task_id"])
            time.sleep(0.15)
    while (status := batch_status(url, batch_key, batch_id))["status"] not in (
        "completed",
        "failed",
        "expired",
        "cancelled",
    ):
        assert time.monotonic() < give_up_at, f"the batch is still {status['status']}"
        time.sleep(1.0)
    batch = Batch.objects.get(id=batch_id.removeprefix("batch_"))
    line_tasks = Task.objects.filter(
        id__in=BatchLine.objects.filter(batch=batch).values("task_id")
    ).only("started_at", "finished_at", "enqueued_at")
    runs = [task.run_s for task in line_tasks if task.run_s is not None]
    first_start = min(task.started_at for task in line_tasks if task.started_at)
    last_end = max(task.finished_at for task in line_tasks if task.finished_at)
    waits = [
        task.wait_s for task in Task.objects.filter(id__in=high_ids) if task.wait_s is not None
    ]
    return {
        "high_wait_p50_ms": percentile(waits, 50) * 1000,
        "high_wait_p99_ms": percentile(waits, 99) * 1000,
        "batch_run_median_ms": median(runs) * 1000,
        "batch_requests_per_s": len(runs) / (last_end - first_start).total_seconds(),
        "batch_completed": float(status["request_counts"]["completed"]),
        "batch_total": float(status["request_counts"]["total"]),
    }
