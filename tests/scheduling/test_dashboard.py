"""The queue dashboard in the admin: who may see it, and its numbers from live PostgreSQL and Redis
(queues, recent throughput and latency percentiles, load, priority changes, dead letters, and a
real worker process)."""

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.applications.models import ApiKey, App
from apps.conversations.services import Question, answer_submit
from apps.scheduling.coordination.load_state import load_report
from apps.scheduling.housekeeping.load import load_evaluate
from apps.scheduling.models import Task, TaskStatus
from apps.scheduling.tasks.services import task_create, task_reprioritize
from tests.factories import make_app, make_key
from tests.processes import run_worker
from tests.waiting import wait_until

PAGE = "/admin/scheduling/task/dashboard/"
DATA = "/admin/scheduling/task/dashboard/data/"


def staff_client(*permissions: str) -> Client:
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


def data(client: Client) -> dict[str, Any]:
    response = client.get(DATA)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    body: dict[str, Any] = response.json()
    return body


def queue(snapshot: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [row for row in snapshot["queues"] if row["name"] == name]
    return found


@pytest.fixture
def queued(django_capture_on_commit_callbacks: Callable[..., Any]) -> Callable[..., Task]:
    def make(priority: str = "medium", app: App | None = None) -> Task:
        with django_capture_on_commit_callbacks(execute=True):
            kind = "chat" if app is not None else "noop"
            return task_create(kind=kind, app=app, requested_priority=priority)

    return make


def finished(
    priority: str, *, wait_s: float, run_s: float, ago_s: float, status: str = "succeeded"
) -> Task:
    """A task that waited and ran for the given times and finished `ago_s` seconds ago."""
    done = timezone.now() - timedelta(seconds=ago_s)
    started = done - timedelta(seconds=run_s)
    return Task.objects.create(
        kind="noop",
        requested_priority=priority,
        priority=priority,
        status=status,
        enqueued_at=started - timedelta(seconds=wait_s),
        started_at=started,
        finished_at=done,
    )


# --- who may see it -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_page_renders_with_the_first_numbers_and_is_linked(admin_client: Client) -> None:
    response = admin_client.get(PAGE)

    assert response.status_code == 200
    assert response.templates[0].name == "admin/scheduling/dashboard.html"
    html = response.content.decode()
    assert "Queue dashboard" in html
    initial = json.loads(
        html.split('id="dashboard-initial" type="application/json">')[1].split("<")[0]
    )
    assert [row["name"] for row in initial["queues"]] == ["high", "medium", "low"]
    assert f'data-url="{DATA}"' in html
    assert "setTimeout(refresh, REFRESH_MS)" in html  # it refreshes itself
    assert f'href="{reverse("admin:scheduling_task_changelist")}?status__exact=dead"' in html
    for linked_from in ("/admin/", "/admin/scheduling/task/"):
        assert f'href="{PAGE}"' in admin_client.get(linked_from).content.decode()


@pytest.mark.django_db
def test_staff_need_the_view_permission(client: Client) -> None:
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))

    blind = staff_client()
    assert blind.get(PAGE).status_code == 403
    assert f'href="{PAGE}"' not in blind.get("/admin/").content.decode()

    User.objects.get(username="operator").user_permissions.add(
        Permission.objects.get(codename="view_task")
    )
    assert blind.get(PAGE).status_code == 200
    assert f'href="{PAGE}"' in blind.get("/admin/").content.decode()


@pytest.mark.django_db
def test_the_data_endpoint_answers_errors_as_envelopes(client: Client) -> None:
    signed_out = client.get(DATA)
    assert signed_out.status_code == 401
    assert signed_out.json()["code"] == "unauthorized"

    blind = staff_client()
    forbidden = blind.get(DATA)
    assert forbidden.status_code == 403
    assert forbidden.json() == {
        "code": "forbidden",
        "message": "You may not view tasks.",
        "status": 403,
    }

    User.objects.get(username="operator").user_permissions.add(
        Permission.objects.get(codename="view_task")
    )
    posted = blind.post(DATA)
    assert posted.status_code == 405
    assert posted.json()["code"] == "method_not_allowed"
    assert data(blind)["dead_letters"] == 0


# --- the numbers --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_queue_depth_and_oldest_age(admin_client: Client, queued: Callable[..., Task]) -> None:
    empty = data(admin_client)
    assert [(row["name"], row["depth"], row["oldest_age_s"]) for row in empty["queues"]] == [
        ("high", 0, None),
        ("medium", 0, None),
        ("low", 0, None),
    ]

    queued("medium")
    time.sleep(0.2)
    queued("medium")
    queued("high")

    snapshot = data(admin_client)
    assert queue(snapshot, "medium")["depth"] == 2
    assert queue(snapshot, "high")["depth"] == 1
    assert queue(snapshot, "low")["depth"] == 0
    assert 0.2 <= queue(snapshot, "medium")["oldest_age_s"] < 5
    assert queue(snapshot, "high")["oldest_age_s"] < queue(snapshot, "medium")["oldest_age_s"]


@pytest.mark.django_db
def test_throughput_and_latency_percentiles_of_the_last_minutes(admin_client: Client) -> None:
    for wait_s, run_s in ((1, 10), (2, 20), (3, 30), (4, 40)):
        finished("medium", wait_s=wait_s, run_s=run_s, ago_s=60)
    finished("medium", wait_s=100, run_s=100, ago_s=600)  # 10 min ago: in the 15-minute rate only
    finished("medium", wait_s=1, run_s=1, ago_s=30, status="dead")
    finished("high", wait_s=0.5, run_s=2, ago_s=10)
    finished("low", wait_s=1, run_s=1, ago_s=3600)  # an hour ago: not counted
    Task.objects.create(
        kind="noop", requested_priority="low", priority="low", status=TaskStatus.RUNNING
    )

    snapshot = data(admin_client)

    medium = queue(snapshot, "medium")
    assert medium["finished_per_min_5m"] == 1.0  # 5 tasks in 5 minutes
    assert medium["finished_per_min_15m"] == 0.4  # 6 in 15
    assert medium["unsuccessful_5m"] == 1
    # percentile_cont over waits 1, 1, 2, 3, 4 and runs 1, 10, 20, 30, 40
    assert medium["wait_p50_s"] == 2.0
    assert medium["wait_p95_s"] == pytest.approx(3.8)
    assert medium["run_p50_s"] == 20.0
    assert medium["run_p95_s"] == pytest.approx(38.0)
    high = queue(snapshot, "high")
    assert (high["finished_per_min_5m"], high["wait_p50_s"], high["run_p95_s"]) == (0.2, 0.5, 2.0)
    low = queue(snapshot, "low")
    assert (low["finished_per_min_15m"], low["wait_p50_s"], low["running"]) == (0.0, None, 1)


@pytest.mark.django_db
def test_load_priority_changes_and_dead_letters(
    admin_client: Client, queued: Callable[..., Task]
) -> None:
    before = data(admin_client)
    assert (before["load"]["overloaded"], before["load"]["evaluated"]) == (False, False)
    assert before["priority_changes"] == {}

    # An app asking far more of its model (one sequence) than it can serve: the load is its.
    flood = make_app(provider_config={"text": "x", "max_concurrency": 1})
    for _ in range(6):
        queued("medium", flood)
    load_report(host="busy-host", cpu_percent=95)
    load_evaluate()
    downgraded = queued("medium", flood)  # medium drops to low under load
    queued("low", flood)  # low is deferred
    task_reprioritize(task_id=downgraded.id, priority="high", reason="ops", actor="ops")
    finished("medium", wait_s=1, run_s=1, ago_s=5, status="dead")

    snapshot = data(admin_client)

    load = snapshot["load"]
    assert (load["overloaded"], load["evaluated"]) == (True, True)
    assert load["cpu_percent"] == 95.0
    assert "cpu 95%" in load["reason"]
    assert 0 <= load["since_age_s"] < 10
    assert snapshot["hosts_cpu"] == {"busy-host": 95.0}
    assert snapshot["priority_changes"] == {"downgraded": 1, "deferred": 1, "operator": 1}
    assert snapshot["delayed"] == 1
    assert snapshot["dead_letters"] == 1

    # Back to normal: this process caches the load state, and the next test must not see it.
    load_report(host="busy-host", cpu_percent=0)
    load_evaluate()
    assert data(admin_client)["load"]["overloaded"] is False


def key_for(**app_fields: Any) -> ApiKey:
    app = make_app(**app_fields)
    api_key, _ = make_key(app)
    return ApiKey.objects.select_related("app").get(id=api_key.id)


def wait_for(fetch: Callable[[], dict[str, Any]], test: Callable[[dict[str, Any]], bool]) -> Any:
    """The dashboard's first snapshot that passes `test`."""

    def shown() -> dict[str, Any] | None:
        snapshot = fetch()
        return snapshot if test(snapshot) else None

    return wait_until(shown, 30, "the dashboard to show it")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_shows_with_its_task_heartbeat_and_cpu(admin_client: Client) -> None:
    slow = key_for(provider_config={"text": "word " * 40, "tokens_per_s": 20}, max_tokens=60)
    with run_worker("high", "medium", name="dashboard-worker"):
        task = answer_submit(
            question=Question(
                api_key=slow,
                route_mode="chat",
                end_user="u1",
                query="hi",
                inputs={},
                priority="medium",
                auto_generate_name=False,
            )
        ).task

        def busy(snapshot: dict[str, Any]) -> bool:
            workers = [w for w in snapshot["workers"] if w["name"] == "dashboard-worker"]
            running = queue(snapshot, "medium")["running"] == 1  # its row, a moment later
            return bool(workers) and workers[0]["current_task"] == str(task.id) and running

        snapshot = wait_for(lambda: data(admin_client), busy)
        (worker,) = snapshot["workers"]
        assert worker["queues"] == ["high", "medium"]
        assert worker["state"] == "busy"
        assert worker["hostname"]
        assert 0 <= worker["heartbeat_age_s"] < snapshot["worker_ttl_s"]

        # The worker reports its host's CPU every second.
        snapshot = wait_for(
            lambda: data(admin_client), lambda s: s["workers"][0]["cpu_percent"] is not None
        )
        assert 0 <= snapshot["workers"][0]["cpu_percent"] <= 100

        # RQ clears the worker's current job a moment after the task itself has finished.
        done = wait_for(
            lambda: data(admin_client),
            lambda s: (
                queue(s, "medium")["finished_per_min_5m"] > 0
                and s["workers"][0]["current_task"] is None
            ),
        )
        assert queue(done, "medium")["run_p50_s"] > 1.0  # 40 words at 20 a second
    assert data(admin_client)["workers"] == []
