"""/metrics after real traffic through real processes (daphne and a worker) shows the counts."""

import re

import httpx
import pytest

from tests.factories import make_app_with_key
from tests.processes import WebServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def scrape(platform: WebServer) -> dict[str, float]:
    response = httpx.get(f"{platform.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_count_real_traffic(live_web: WebServer, live_worker: object) -> None:
    _, good_key = make_app_with_key(provider_config={"text": "one two three"})
    _, bad_key = make_app_with_key(name="Broken", provider_config={"permanent_error": "refused"})
    url = f"{live_web.url}/v1/chat-messages"
    body = {"inputs": {}, "query": "hi", "user": "u1"}
    for _ in range(3):
        ok = httpx.post(url, json=body, headers={"Authorization": f"Bearer {good_key}"}, timeout=60)
        assert ok.status_code == 200
    failed = httpx.post(url, json=body, headers={"Authorization": f"Bearer {bad_key}"}, timeout=60)
    assert failed.json()["code"] == "completion_request_error"
    invalid = httpx.post(url, json={}, headers={"Authorization": f"Bearer {good_key}"}, timeout=60)
    assert invalid.status_code == 400

    route = 'method="POST",route="v1/chat-messages"'

    # A request's own metrics are recorded just after its response is sent, and each process
    # sends what it recorded within METRICS_FLUSH_S.
    def recorded() -> dict[str, float] | None:
        samples = scrape(live_web)
        failures = samples.get('dp_tasks_finished_total{kind="chat",status="failed"}')
        refusals = samples.get(f'dp_http_requests_total{{{route},status="400"}}')
        return samples if (failures, refusals) == (1, 2) else None

    samples = wait_until(recorded, 10, "the metrics to be recorded")

    assert samples['dp_tasks_finished_total{kind="chat",status="succeeded"}'] == 3
    assert samples['dp_tasks_finished_total{kind="chat",status="failed"}'] == 1
    assert samples[f'dp_http_requests_total{{{route},status="200"}}'] == 3
    assert samples[f'dp_http_requests_total{{{route},status="400"}}'] == 2
    assert samples['dp_completion_tokens_total{provider="scripted"}'] == 9
    assert samples['dp_task_wait_seconds_count{queue="medium"}'] == 3
    assert samples['dp_task_wait_seconds_bucket{queue="medium",le="+Inf"}'] == 3
    assert samples['dp_time_to_first_token_seconds_count{provider="scripted"}'] == 3
    assert samples['dp_queue_depth{queue="high"}'] == 0
    assert samples["dp_workers"] >= 1
    assert samples["dp_active_streams"] == 0
    assert samples['dp_tasks{status="dead"}'] == 0
    # Histogram buckets are cumulative.
    buckets = [
        value
        for name, value in samples.items()
        if re.match(r'dp_task_run_seconds_bucket\{kind="chat",le=', name)
    ]
    assert buckets == sorted(buckets)
