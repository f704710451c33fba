"""Operators see each deployment live: in flight against capacity, waiting by priority and by
app, cooldown and recent failures (the admin page and /metrics); what an operator changes takes
effect at once."""

import time

import pytest
from django.test import Client

from apps.core.redis import sync_client
from apps.operations.scrape import gauges
from apps.scheduling.coordination.capacity import (
    CallOutcome,
    Route,
    Target,
    capacity_dispatch_all,
    capacity_release,
    capacity_submit,
    grant_of,
)
from apps.scheduling.coordination.queues import job_save_in
from tests.factories import make_app, make_deployment

pytestmark = pytest.mark.django_db


def fill(deployment: str, capacity: int, app_id: str, count: int) -> list[str]:
    target = Target(deployment, capacity=capacity)
    route = Route(app=app_id, share_weight=1, primaries=(target,))
    tasks = []
    for number in range(count):
        task_id = f"{app_id}-{number}"
        pipe = sync_client().pipeline()
        job_save_in(pipe, task_id=task_id, priority="medium", time_left_s=None)
        pipe.execute()
        capacity_submit(task_id=task_id, route=route, priority="medium", arrival_s=time.time())
        tasks.append(task_id)
    return tasks


def test_the_deployment_page_shows_its_load_and_its_apps(admin_client: Client) -> None:
    deployment = make_deployment(name="gpu-box", max_concurrency=2)
    app = make_app(name="Support bot", deployments=[deployment])
    tasks = fill("gpu-box", 2, str(app.id), 5)
    capacity_release(
        task_id=tasks[0], deployment="gpu-box", outcome=CallOutcome.REFUSED, reason="429 busy"
    )
    page = admin_client.get(f"/admin/deployments/deployment/{deployment.id}/change/").content
    text = page.decode()
    assert "In flight 1 of 2; waiting: high 0, medium 3, low 0" in text
    assert "cooling down" in text
    assert "429 busy" in text
    assert "Support bot" in text  # the app waiting there, by name
    listing = admin_client.get("/admin/deployments/deployment/").content.decode()
    assert "1 / 2" in listing


def test_metrics_show_each_deployment() -> None:
    fill("metrics-box", 1, "app-a", 3)
    text = "\n".join(gauges())
    assert 'dp_deployment_capacity{deployment="metrics-box"} 1' in text
    assert 'dp_deployment_in_flight{deployment="metrics-box"} 1' in text
    assert 'dp_deployment_waiting{deployment="metrics-box",priority="medium"} 2' in text
    assert 'dp_deployment_cooling_down{deployment="metrics-box"} 0' in text


@pytest.mark.django_db(transaction=True)
def test_a_deployment_an_operator_disables_takes_nothing_more_at_once() -> None:
    deployment = make_deployment(name="retiring", max_concurrency=1)
    running, *waiting = fill("retiring", 1, "app-r", 3)
    deployment.enabled = False
    deployment.save()
    taken = capacity_release(task_id=running, deployment="retiring", outcome=CallOutcome.OK)
    assert taken == [], "the waiters stay in line for the app's other deployments"
    deployment.enabled = True
    deployment.max_concurrency = 2
    deployment.save()  # back, and larger: both waiters start
    capacity_dispatch_all()
    assert all(grant_of(task) is not None for task in waiting)
