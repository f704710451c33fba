"""Operator actions on tasks, through the admin as an operator uses them: the confirmation page,
then the action, with its effect on the task's row, its history (naming the operator), the admin
log and Redis (queues, stop flags); bulk by selection and by filter; permissions enforced."""

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.applications.models import ApiKey
from apps.conversations.models import Message, MessageStatus
from apps.conversations.services import Question, answer_submit
from apps.core.redis import sync_client
from apps.scheduling.coordination.queues import DELAYED_KEY
from apps.scheduling.coordination.stops import task_stop_reason
from apps.scheduling.models import Task, TaskEvent, TaskStatus
from apps.scheduling.tasks.services import (
    task_create,
    task_end_unsuccessfully,
    task_mark_running,
    task_schedule_retry,
)
from apps.streams.log import stream_key
from tests.factories import make_app, make_key
from tests.processes import run_worker
from tests.waiting import wait_until

CHANGELIST = "/admin/scheduling/task/"
ADMIN = "admin"  # pytest-django's admin_user


def queue_ids(name: str) -> list[str]:
    """The job ids in RQ's list for the queue, oldest first."""
    items: Any = sync_client().lrange(f"rq:queue:{name}", 0, -1)
    return [item.decode() for item in items]


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def status_of(task: Task) -> str:
    return Task.objects.values_list("status", flat=True).get(id=task.id)


def events_by(task: Task, actor: str) -> list[TaskEvent]:
    return list(TaskEvent.objects.filter(task_id=task.id, worker_name=actor))


class Tasks:
    """Tasks in each state, made through the scheduling services."""

    def __init__(self, capture: Callable[..., AbstractContextManager[Any]]) -> None:
        self.capture = capture

    def queued(self, priority: str = "medium") -> Task:
        with self.capture(execute=True):  # the push to Redis runs on commit
            return task_create(kind="noop", app=None, end_user="u1", requested_priority=priority)

    def unpushed(self, priority: str = "medium") -> Task:
        with self.capture(execute=False):
            return task_create(kind="noop", app=None, end_user="u1", requested_priority=priority)

    def running(self, priority: str = "medium") -> Task:
        running = task_mark_running(task_id=str(self.unpushed(priority).id), worker_name="w-1")
        assert running is not None
        return running

    def ended(self, status: str = TaskStatus.DEAD, priority: str = "medium") -> Task:
        ended = task_end_unsuccessfully(
            task=self.running(priority),
            status=status,
            code="internal_server_error",
            error=RuntimeError("boom"),
            actor="w-1",
        )
        assert ended is not None
        return ended

    def retrying(self) -> Task:
        retrying = task_schedule_retry(
            task=self.running(), error=RuntimeError("x"), worker_name="w"
        )
        assert retrying is not None
        return retrying

    def succeeded(self) -> Task:
        task = self.running()
        Task.objects.filter(id=task.id).update(status=TaskStatus.SUCCEEDED)
        task.refresh_from_db()
        return task


@pytest.fixture
def tasks(django_capture_on_commit_callbacks: Callable[..., Any]) -> Tasks:
    return Tasks(django_capture_on_commit_callbacks)


@pytest.fixture
def act(
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> Callable[..., Any]:
    """POST an action on tasks to the changelist as the confirmation page does (post=yes)."""

    def post(
        client: Client, action: str, selected: list[Task], url: str = CHANGELIST, **extra: str
    ) -> Any:
        data = {"action": action, "_selected_action": [str(t.id) for t in selected], "post": "yes"}
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url, {**data, **extra}, follow=True)

    return post


def staff_client(*permissions: str, username: str = "operator") -> Client:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


# --- moving between queues ------------------------------------------------------------------------


@pytest.mark.django_db
def test_move_to_high_moves_the_job_and_records_who(
    admin_client: Client, tasks: Tasks, act: Callable[..., Any]
) -> None:
    medium, already_high, done = tasks.queued("medium"), tasks.queued("high"), tasks.succeeded()
    assert queue_ids("medium") == [str(medium.id)]

    response = act(admin_client, "move_to_high", [medium, already_high, done])

    assert messages_of(response) == [
        "Move to the high queue: 1 moved; 2 skipped (1 already on high, 1 succeeded)."
    ]
    medium.refresh_from_db()
    assert medium.priority == "high"
    assert medium.status == TaskStatus.QUEUED
    assert queue_ids("medium") == []
    assert queue_ids("high") == [str(already_high.id), str(medium.id)]
    (event,) = events_by(medium, ADMIN)
    assert event.detail == {"from": "medium", "to": "high"}
    assert event.reason == "moved from medium to high by admin"
    entry = LogEntry.objects.get(object_id=str(medium.id))
    assert (entry.user.username, entry.action_flag) == (ADMIN, CHANGE)
    assert entry.change_message == "Move to the high queue: moved (was queued)"
    assert not LogEntry.objects.filter(object_id__in=[str(already_high.id), str(done.id)])


@pytest.mark.django_db
def test_a_retrying_task_moves_without_jumping_its_backoff(
    admin_client: Client, tasks: Tasks, act: Callable[..., Any]
) -> None:
    retrying = tasks.retrying()

    response = act(admin_client, "move_to_low", [retrying])

    assert messages_of(response) == ["Move to the low queue: 1 moved."]
    retrying.refresh_from_db()
    assert (retrying.status, retrying.priority) == (TaskStatus.RETRYING, "low")
    assert sync_client().zscore(DELAYED_KEY(), str(retrying.id)) is not None
    assert queue_ids("low") == []


# --- dead letters: retry, on another queue, purge -----------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "queue", "label"),
    [
        ("retry", "medium", "Retry (fresh budget)"),
        ("retry_on_high", "high", "Retry on the high queue (fresh budget)"),
        ("retry_on_low", "low", "Retry on the low queue (fresh budget)"),
    ],
)
def test_retry_gives_a_fresh_budget_on_the_chosen_queue(
    admin_client: Client,
    tasks: Tasks,
    act: Callable[..., Any],
    action: str,
    queue: str,
    label: str,
) -> None:
    dead, expired, waiting = tasks.ended(TaskStatus.DEAD), tasks.ended("expired"), tasks.queued()

    response = act(admin_client, action, [dead, expired, waiting])

    assert messages_of(response) == [f"{label}: 2 requeued; 1 skipped (1 queued)."]
    for task in (dead, expired):
        before_attempts = task.attempts
        task.refresh_from_db()
        assert task.status == TaskStatus.QUEUED
        assert task.priority == queue
        assert task.max_attempts == before_attempts + 4
        assert task.finished_at is None
        (event,) = events_by(task, ADMIN)
        assert (event.to_status, event.reason) == (TaskStatus.QUEUED, "requeued by admin")
    assert set(queue_ids(queue)) >= {str(dead.id), str(expired.id)}
    assert status_of(waiting) == TaskStatus.QUEUED


@pytest.mark.django_db
def test_retrying_a_task_cancelled_while_running_forgets_the_stop_flag(
    admin_client: Client, tasks: Tasks, act: Callable[..., Any]
) -> None:
    running = tasks.running()
    assert act(admin_client, "cancel", [running]).status_code == 200
    assert task_stop_reason(task_id=str(running.id)) == "cancel"
    # Its worker obeys the flag and ends it.
    task_end_unsuccessfully(
        task=running, status="cancelled", code="cancelled", error=RuntimeError("c"), actor="w-1"
    )

    response = act(admin_client, "retry", [running])

    assert messages_of(response) == ["Retry (fresh budget): 1 requeued."]
    assert status_of(running) == TaskStatus.QUEUED
    assert task_stop_reason(task_id=str(running.id)) is None  # the next run is not stopped


@pytest.mark.django_db
def test_purge_deletes_dead_letters_and_their_history_only(
    admin_client: Client, tasks: Tasks, act: Callable[..., Any]
) -> None:
    dead, failed, waiting = tasks.ended(TaskStatus.DEAD), tasks.ended("failed"), tasks.queued()

    response = act(admin_client, "purge", [dead, failed, waiting])

    assert messages_of(response) == ["Purge dead letters: 2 purged; 1 skipped (1 queued)."]
    assert list(Task.objects.values_list("id", flat=True)) == [waiting.id]
    assert not TaskEvent.objects.filter(task_id__in=[dead.id, failed.id]).exists()
    entries = LogEntry.objects.filter(action_flag=DELETION, user__username=ADMIN)
    assert {entry.object_id for entry in entries} == {str(dead.id), str(failed.id)}
    assert queue_ids("medium") == [str(waiting.id)]


# --- cancel and expire --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "status", "label", "reason"),
    [
        ("cancel", TaskStatus.CANCELLED, "Cancel: 1 cancelled", "cancelled: OperatorCancelled"),
        ("expire", TaskStatus.EXPIRED, "Expire now: 1 expired", "expired: TaskExpired"),
    ],
)
def test_a_waiting_task_ends_now_and_leaves_its_queue(
    admin_client: Client,
    tasks: Tasks,
    act: Callable[..., Any],
    action: str,
    status: str,
    label: str,
    reason: str,
) -> None:
    waiting, retrying, done = tasks.queued(), tasks.retrying(), tasks.succeeded()

    response = act(admin_client, action, [waiting, retrying, done])

    assert messages_of(response) == [f"{label.replace(': 1 ', ': 2 ')}; 1 skipped (1 succeeded)."]
    for task in (waiting, retrying):
        task.refresh_from_db()
        assert task.status == status
        assert task.finished_at is not None
        (event,) = events_by(task, ADMIN)
        assert event.reason == reason
    assert queue_ids("medium") == []
    assert sync_client().zscore(DELAYED_KEY(), str(retrying.id)) is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "flag", "label", "reason"),
    [
        ("cancel", "cancel", "Cancel: 1 stopping", "cancel requested by admin"),
        ("expire", "deadline", "Expire now: 1 stopping", "expiry requested by admin"),
    ],
)
def test_a_running_task_gets_the_stop_flag_for_its_worker(
    admin_client: Client,
    tasks: Tasks,
    act: Callable[..., Any],
    action: str,
    flag: str,
    label: str,
    reason: str,
) -> None:
    running = tasks.running()

    response = act(admin_client, action, [running])

    assert messages_of(response) == [f"{label}."]
    assert task_stop_reason(task_id=str(running.id)) == flag
    running.refresh_from_db()
    assert running.status == TaskStatus.RUNNING  # its worker ends it
    if action == "expire":
        assert running.deadline_at is not None
        assert running.deadline_at <= timezone.now()
    (event,) = events_by(running, ADMIN)
    assert (event.from_status, event.to_status, event.reason) == ("running", "running", reason)


def key_for(**app_fields: Any) -> ApiKey:
    app = make_app(**app_fields)
    api_key, _ = make_key(app)
    return ApiKey.objects.select_related("app").get(id=api_key.id)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("action", "status", "error"),
    [("expire", TaskStatus.EXPIRED, "deadline"), ("cancel", TaskStatus.CANCELLED, "cancelled")],
)
def test_a_real_worker_stops_a_running_task_as_the_operator_asked(
    admin_client: Client, action: str, status: str, error: str
) -> None:
    slow = key_for(provider_config={"text": "word " * 60, "tokens_per_s": 10}, max_tokens=80)
    with run_worker("medium"):
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
        wait_until(lambda: status_of(task) == TaskStatus.RUNNING, 30, "the task to start")

        response = admin_client.post(
            CHANGELIST, {"action": action, "_selected_action": [str(task.id)], "post": "yes"}
        )
        assert response.status_code == 302

        wait_until(lambda: status_of(task) == status, 10, f"the task to end {status}")
    task.refresh_from_db()
    # Stopped where it was: the log holds part of the answer, then why it ended.
    entries: Any = sync_client().xrange(stream_key(str(task.id)))
    kinds = [fields[b"k"].decode() for _, fields in entries]
    assert kinds.count("message") < 60
    assert kinds[-1] == "error"
    assert task.attempts == 1
    assert error in task.error_message.lower()
    message = Message.objects.get(task=task)
    assert message.status == MessageStatus.ERROR
    reasons = list(TaskEvent.objects.filter(task=task).values_list("reason", flat=True))
    assert any(reason.endswith("requested by admin") for reason in reasons)


# --- the confirmation page ------------------------------------------------------------------------


@pytest.mark.django_db
def test_each_action_first_asks_for_confirmation(admin_client: Client, tasks: Tasks) -> None:
    waiting, done = tasks.queued(), tasks.succeeded()
    selection = {"_selected_action": [str(waiting.id), str(done.id)]}

    response = admin_client.post(CHANGELIST, {"action": "cancel", **selection})

    assert response.status_code == 200
    assert response.templates[0].name == "admin/scheduling/task/action_confirmation.html"
    html = " ".join(response.content.decode().split())
    assert "2 selected tasks: 1 will be acted on, 1 skipped." in html
    assert "skipped: succeeded" in html
    assert str(waiting.id) in html
    assert str(done.id) in html
    assert 'name="post" value="yes"' in html
    assert status_of(waiting) == TaskStatus.QUEUED  # nothing happened yet
    assert queue_ids("medium") == [str(waiting.id)]
    assert set(response.context["ids"]) == {str(waiting.id), str(done.id)}


@pytest.mark.django_db
def test_purge_confirmation_warns_that_it_cannot_be_undone(
    admin_client: Client, tasks: Tasks
) -> None:
    dead = tasks.ended(TaskStatus.DEAD)

    response = admin_client.post(
        CHANGELIST, {"action": "purge", "_selected_action": [str(dead.id)]}
    )

    assert response.status_code == 200
    assert "cannot be undone" in response.content.decode()
    assert Task.objects.filter(id=dead.id).exists()


# --- bulk by filter -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_select_across_acts_on_every_task_matching_the_filter(
    admin_client: Client, tasks: Tasks, act: Callable[..., Any]
) -> None:
    dead = [tasks.ended(TaskStatus.DEAD) for _ in range(3)]
    expired = tasks.ended(TaskStatus.EXPIRED)
    url = f"{CHANGELIST}?status__exact=dead"

    # The page shows one task; "select all 3" sends that one plus select_across.
    confirmation = admin_client.post(
        url,
        {"action": "retry_on_high", "_selected_action": [str(dead[0].id)], "select_across": "1"},
    )
    assert confirmation.status_code == 200
    html = " ".join(confirmation.content.decode().split())
    assert "All 3 tasks matching the current filter: 3 will be acted on, 0 skipped." in html
    assert 'name="select_across" value="1"' in html

    response = act(admin_client, "retry_on_high", [dead[0]], url=url, select_across="1")

    assert messages_of(response) == ["Retry on the high queue (fresh budget): 3 requeued."]
    assert set(queue_ids("high")) == {str(task.id) for task in dead}
    assert status_of(expired) == TaskStatus.EXPIRED  # outside the filter: untouched


@pytest.mark.django_db
def test_select_across_without_a_filter_reports_what_it_skipped(
    admin_client: Client, tasks: Tasks, act: Callable[..., Any]
) -> None:
    waiting = [tasks.queued("low") for _ in range(2)]
    tasks.succeeded()
    tasks.ended(TaskStatus.DEAD)

    response = act(admin_client, "move_to_medium", waiting[:1], select_across="1")

    assert messages_of(response) == [
        "Move to the medium queue: 2 moved; 2 skipped (1 dead, 1 succeeded)."
    ]
    assert sorted(queue_ids("medium")) == sorted(str(task.id) for task in waiting)
    assert queue_ids("low") == []


# --- permissions and bad input ------------------------------------------------------------------


@pytest.mark.django_db
def test_view_only_staff_see_no_actions_and_a_forged_post_changes_nothing(
    tasks: Tasks, act: Callable[..., Any]
) -> None:
    client = staff_client("view_task")
    waiting, dead = tasks.queued(), tasks.ended(TaskStatus.DEAD)
    listing = client.get(CHANGELIST).content.decode()
    assert str(waiting.id) in listing
    assert 'name="action"' not in listing

    for action in ("move_to_high", "cancel", "expire", "retry", "purge"):
        for post in ("yes", ""):  # the action, and its confirmation page
            response = act(client, action, [waiting, dead], post=post)
            assert response.status_code == 200
            assert response.templates[0].name == "admin/scheduling/task/change_list.html"
            assert messages_of(response) == []

    assert status_of(waiting) == TaskStatus.QUEUED
    assert status_of(dead) == TaskStatus.DEAD
    assert queue_ids("medium") == [str(waiting.id)]
    assert queue_ids("high") == []
    assert not TaskEvent.objects.filter(worker_name="operator").exists()
    assert not LogEntry.objects.exists()


@pytest.mark.django_db
def test_operators_cannot_purge_and_purgers_cannot_operate(
    tasks: Tasks, act: Callable[..., Any]
) -> None:
    operator = staff_client("view_task", "operate_task")
    waiting, dead = tasks.queued(), tasks.ended(TaskStatus.DEAD)
    listing = operator.get(CHANGELIST).content.decode()
    assert 'value="move_to_high"' in listing
    assert 'value="purge"' not in listing

    assert messages_of(act(operator, "purge", [dead])) == ["No action selected."]
    assert Task.objects.filter(id=dead.id).exists()
    moved = act(operator, "move_to_high", [waiting])
    assert messages_of(moved) == ["Move to the high queue: 1 moved."]
    (event,) = events_by(waiting, "operator")
    assert event.detail == {"from": "medium", "to": "high"}

    purger = staff_client("view_task", "purge_task", username="purger")
    assert messages_of(act(purger, "cancel", [waiting])) == ["No action selected."]
    assert status_of(waiting) == TaskStatus.QUEUED
    assert messages_of(act(purger, "purge", [dead])) == ["Purge dead letters: 1 purged."]
    assert not Task.objects.filter(id=dead.id).exists()


@pytest.mark.django_db
def test_signed_out_posts_go_to_the_login_page(tasks: Tasks, client: Client) -> None:
    waiting = tasks.queued()

    response = client.post(
        CHANGELIST, {"action": "cancel", "_selected_action": [str(waiting.id)], "post": "yes"}
    )

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert status_of(waiting) == TaskStatus.QUEUED


@pytest.mark.django_db
@pytest.mark.parametrize("selected", [["not-a-uuid"], ["1"], ["'; DROP TABLE x; --"]])
def test_a_malformed_selection_is_a_bad_request(
    admin_client: Client, tasks: Tasks, selected: list[str]
) -> None:
    waiting = tasks.queued()

    for post in ({"post": "yes"}, {}):
        response = admin_client.post(
            CHANGELIST,
            {"action": "cancel", "_selected_action": [str(waiting.id), *selected], **post},
        )
        assert response.status_code == 400

    assert status_of(waiting) == TaskStatus.QUEUED


@pytest.mark.django_db
def test_unknown_ids_and_actions_change_nothing(
    admin_client: Client, tasks: Tasks, act: Callable[..., Any]
) -> None:
    waiting = tasks.queued()
    gone = tasks.ended(TaskStatus.DEAD)
    Task.objects.filter(id=gone.id).delete()

    assert messages_of(act(admin_client, "cancel", [gone])) == ["Cancel: 0 done."]
    assert messages_of(act(admin_client, "delete_selected", [waiting])) == ["No action selected."]
    assert status_of(waiting) == TaskStatus.QUEUED
