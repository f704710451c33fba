"""The operator's admin: every page renders with real rows, a key's clear text is shown once and
never again, keys are added and revoked through the admin, tasks are read-only, and saving an app
bumps its settings version."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django import forms
from django.contrib.auth.models import Permission, User
from django.db.models import Model
from django.test import Client
from django.urls import reverse

from apps.applications.models import ApiKey, App
from apps.applications.selectors import api_key_get_active
from apps.applications.services import api_key_digest
from apps.conversations.models import Conversation, Feedback, Message, MessageStatus
from apps.core.admin_display import moment_display, seconds_display
from apps.scheduling.admin.task_admin import TaskAdmin
from apps.scheduling.models import Task, TaskStatus
from apps.scheduling.tasks.services import task_create, task_mark_running, task_mark_succeeded
from tests.factories import app_deployment, make_app, make_key

pytestmark = pytest.mark.django_db

CLEAR_KEY = re.compile(r"app-[A-Za-z0-9_-]{32}")


@dataclass
class Rows:
    app: App
    key: ApiKey
    clear_key: str
    conversation: Conversation
    message: Message
    task: Task


@pytest.fixture
def rows(django_capture_on_commit_callbacks: Callable[..., Any]) -> Rows:
    app = make_app(name="Support bot")
    key, clear_key = make_key(app, name="backend", max_priority="medium")
    conversation = Conversation.objects.create(app=app, end_user="user-42", name="Refund question")
    with django_capture_on_commit_callbacks(execute=False):  # no push to Redis: nothing runs it
        task = task_create(
            kind="chat",
            app=app,
            end_user="user-42",
            requested_priority="high",
            priority="medium",
            priority_reason="capped by the key",
            idempotency_key="idem-7",
        )
    running = task_mark_running(task_id=str(task.id), worker_name="worker-a")
    assert running is not None
    done = task_mark_succeeded(task=running, result={"message_id": "m"}, worker_name="worker-a")
    assert done is not None
    message = Message.objects.create(
        app=app,
        conversation=conversation,
        end_user="user-42",
        query="How do I get a refund for order 1234?",
        answer="Open Orders, pick the order and press Refund.",
        status=MessageStatus.NORMAL,
        provider="scripted",
        model_name="scripted",
        prompt_tokens=30,
        completion_tokens=12,
        latency_s=0.4567,
        first_token_s=0.0123,
        task=done,
    )
    Feedback.objects.create(message=message, end_user="user-42", rating="like", content="clear")
    return Rows(app, key, clear_key, conversation, message, done)


def change_url(obj: Any) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def changelist_url(model: type[Model]) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def page(client: Client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, url
    return response.content.decode()


def form_data(response: Any) -> dict[str, Any]:
    """The POST body a change page's form (and its inlines) would send as it stands."""
    parts = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        parts += [inline.formset.management_form, *inline.formset.forms]
    data: dict[str, Any] = {}
    for part in parts:
        for bound in part:
            value = bound.value()
            if isinstance(bound.field, forms.BooleanField):
                if value:
                    data[bound.html_name] = "on"
            elif value is not None:
                data[bound.html_name] = value
            if bound.field.show_hidden_initial:  # fields with a callable default, as JSONField's
                data[bound.html_initial_name] = value
    return data


def staff_user(*permissions: str) -> User:
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


# --- every page renders, with its rows ----------------------------------------------------------


def test_app_pages_show_the_app_and_its_keys(admin_client: Client, rows: Rows) -> None:
    listing = page(admin_client, changelist_url(App))
    assert "Support bot" in listing
    served_by = app_deployment(rows.app).name
    assert f"{served_by} (primary)" in listing

    detail = page(admin_client, change_url(rows.app))
    for title in ("Identity", "Prompt and inputs form", "Deployments serving this app"):
        assert title in detail
    assert f'value="{app_deployment(rows.app).pk}" selected' in detail
    assert "Generation parameters" in detail
    assert "Scheduling" in detail
    assert rows.key.prefix in detail  # the read-only key inline
    assert "backend" in detail


def test_api_key_pages_show_the_prefix(admin_client: Client, rows: Rows) -> None:
    listing = page(admin_client, changelist_url(ApiKey))
    assert rows.key.prefix in listing
    assert "Support bot" in listing

    detail = page(admin_client, change_url(rows.key))
    assert rows.key.prefix in detail
    assert 'name="name"' in detail
    assert 'name="max_priority"' in detail
    assert 'name="revoke"' in detail
    assert 'name="prefix"' not in detail  # shown, not editable
    assert 'name="app"' not in detail


def test_conversation_pages_show_the_messages(admin_client: Client, rows: Rows) -> None:
    listing = page(admin_client, changelist_url(Conversation))
    assert "Refund question" in listing
    assert "user-42" in listing

    detail = page(admin_client, change_url(rows.conversation))
    assert "Refund question" in detail
    assert "How do I get a refund for order 1234?" in detail
    assert "Open Orders, pick the order" in detail
    assert change_url(rows.message) in detail


def test_message_pages_show_timings_and_link_the_task(admin_client: Client, rows: Rows) -> None:
    listing = page(admin_client, changelist_url(Message))
    assert "How do I get a refund for order 1234?" in listing
    assert "0.457 s" in listing
    assert "0.012 s" in listing
    assert "Refund question" in listing

    detail = page(admin_client, change_url(rows.message))
    assert "Open Orders, pick the order and press Refund." in detail
    assert f'href="{change_url(rows.task)}"' in detail
    assert "Like: clear" in detail
    assert "<textarea" not in detail  # read-only
    assert 'name="_save"' not in detail


def test_task_pages_show_timings_events_and_messages(admin_client: Client, rows: Rows) -> None:
    task = rows.task
    listing = page(admin_client, changelist_url(Task))
    assert str(task.id) in listing
    assert "worker-a" in listing
    assert f"1/{task.max_attempts}" in listing
    assert seconds_display(task.wait_s) in listing
    assert seconds_display(task.run_s) in listing

    detail = page(admin_client, change_url(task))
    assert moment_display(task.started_at) in detail  # to the millisecond
    assert moment_display(task.finished_at) in detail
    assert "capped by the key" in detail
    assert "idem-7" in detail
    for reason in ("created", "started", "succeeded"):
        assert f"<p>{reason}" in detail  # the TaskEvent inline, one row per transition
    assert f'href="{change_url(rows.message)}"' in detail
    assert 'name="_save"' not in detail


@pytest.mark.parametrize(
    ("query", "finds"),
    [("user-42", True), ("idem-7", True), ("nobody", False), ("", True)],
)
def test_task_search(admin_client: Client, rows: Rows, query: str, finds: bool) -> None:
    listing = page(admin_client, f"{changelist_url(Task)}?q={query}")
    assert (str(rows.task.id) in listing) is finds


def test_searching_by_a_full_or_partial_id_finds_the_row(admin_client: Client, rows: Rows) -> None:
    for model, obj in (
        (Task, rows.task),
        (Message, rows.message),
        (Conversation, rows.conversation),
    ):
        for query in (str(obj.pk), str(obj.pk)[:8]):
            assert change_url(obj) in page(admin_client, f"{changelist_url(model)}?q={query}")


def test_task_list_sorts_by_wait_and_run(admin_client: Client, rows: Rows) -> None:
    """Every column sorts; the wait and run columns by the durations they show."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    durations = {"short wait, long run": (1, 30), "long wait, short run": (20, 2)}
    named = {}
    for name, (wait_s, run_s) in durations.items():
        task = task_create(kind="chat", app=rows.app, end_user=name, requested_priority="low")
        Task.objects.filter(id=task.id).update(
            status=TaskStatus.SUCCEEDED,
            enqueued_at=start,
            started_at=start + timedelta(seconds=wait_s),
            finished_at=start + timedelta(seconds=wait_s + run_s),
        )
        named[task.id] = name

    def order(column: int) -> list[str]:
        response = admin_client.get(f"{changelist_url(Task)}?o={column}")
        assert response.status_code == 200
        return [named[task.id] for task in response.context["cl"].result_list if task.id in named]

    columns = TaskAdmin.list_display
    wait, run = columns.index("wait_display") + 1, columns.index("run_display") + 1
    assert order(wait) == ["short wait, long run", "long wait, short run"]
    assert order(-wait) == ["long wait, short run", "short wait, long run"]
    assert order(run) == ["long wait, short run", "short wait, long run"]
    assert order(-run) == ["short wait, long run", "long wait, short run"]
    for column in range(1, len(columns) + 1):
        page(admin_client, f"{changelist_url(Task)}?o={column}")


def test_filters_render(admin_client: Client, rows: Rows) -> None:
    assert "How do I get" in page(admin_client, f"{changelist_url(Message)}?provider=scripted")
    assert "How do I get" not in page(admin_client, f"{changelist_url(Message)}?provider=local")
    assert str(rows.task.id) in page(admin_client, f"{changelist_url(Task)}?status=succeeded")
    assert str(rows.task.id) not in page(admin_client, f"{changelist_url(Task)}?status=queued")
    assert rows.key.prefix in page(admin_client, f"{changelist_url(ApiKey)}?state=active")
    assert rows.key.prefix not in page(admin_client, f"{changelist_url(ApiKey)}?state=revoked")


# --- API keys: the clear key is shown once, the digest never --------------------------------------


def test_the_clear_key_and_digest_never_appear(admin_client: Client, rows: Rows) -> None:
    urls = [
        changelist_url(App),
        change_url(rows.app),
        changelist_url(ApiKey),
        f"{changelist_url(ApiKey)}?q={rows.key.prefix}",
        change_url(rows.key),
        reverse("admin:applications_apikey_add"),
        reverse("admin:applications_apikey_history", args=[rows.key.pk]),
        changelist_url(Task),
        change_url(rows.task),
        changelist_url(Message),
        change_url(rows.message),
        change_url(rows.conversation),
    ]
    for url in urls:
        html = page(admin_client, url)
        assert rows.clear_key not in html, url
        assert rows.key.digest not in html, url
    for url in (change_url(rows.app), changelist_url(ApiKey), change_url(rows.key)):
        assert rows.key.prefix in page(admin_client, url)


def test_adding_a_key_shows_the_clear_key_once(admin_client: Client, rows: Rows) -> None:
    add_url = reverse("admin:applications_apikey_add")
    form = page(admin_client, add_url)
    assert 'name="app"' in form
    assert 'name="prefix"' not in form
    assert 'name="digest"' not in form

    response = admin_client.post(
        add_url, {"app": str(rows.app.pk), "name": "ops", "max_priority": "low"}, follow=True
    )

    assert response.status_code == 200
    shown = [str(message) for message in response.context["messages"]]
    clear_keys = [key for text in shown for key in CLEAR_KEY.findall(text)]
    assert len(clear_keys) == 1
    clear_key = clear_keys[0]
    assert response.content.decode().count(clear_key) == 1
    created = ApiKey.objects.get(digest=api_key_digest(clear_key))
    assert (created.app, created.name, created.max_priority) == (rows.app, "ops", "low")
    assert created.prefix == clear_key[:12]
    active = api_key_get_active(clear_key=clear_key)
    assert active is not None
    assert active.id == created.id
    # Never again: not on the next page, nor on the key's own page.
    for url in (changelist_url(ApiKey), change_url(created), change_url(rows.app)):
        html = page(admin_client, url)
        assert clear_key not in html
        assert created.prefix in html


def test_a_key_cannot_be_added_without_an_app(admin_client: Client, rows: Rows) -> None:
    response = admin_client.post(
        reverse("admin:applications_apikey_add"), {"name": "ops", "max_priority": "low"}
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["app"]
    assert ApiKey.objects.count() == 1
    assert not CLEAR_KEY.search(response.content.decode())


def test_editing_a_key_changes_only_name_and_priority(admin_client: Client, rows: Rows) -> None:
    url = change_url(rows.key)
    data = form_data(admin_client.get(url))
    data.update(name="renamed", max_priority="low", prefix="app-hacked", digest="0" * 64)

    response = admin_client.post(url, data)

    assert response.status_code == 302
    key = ApiKey.objects.get(pk=rows.key.pk)
    assert (key.name, key.max_priority) == ("renamed", "low")
    assert (key.prefix, key.digest) == (rows.key.prefix, rows.key.digest)
    assert key.revoked_at is None
    assert api_key_get_active(clear_key=rows.clear_key) is not None


def test_revoking_a_key_from_its_page(admin_client: Client, rows: Rows) -> None:
    url = change_url(rows.key)
    data = form_data(admin_client.get(url))
    data["revoke"] = "on"

    assert admin_client.post(url, data).status_code == 302

    key = ApiKey.objects.get(pk=rows.key.pk)
    assert key.revoked_at is not None
    assert api_key_get_active(clear_key=rows.clear_key) is None
    # Permanent: the box is disabled, and saving again keeps the first revocation time.
    detail = admin_client.get(url)
    assert detail.context["adminform"].form.fields["revoke"].disabled
    admin_client.post(url, {"name": "after", "max_priority": "low"})
    assert ApiKey.objects.get(pk=key.pk).revoked_at == key.revoked_at


def test_revoke_action(admin_client: Client, rows: Rows) -> None:
    other, other_clear = make_key(rows.app, name="other")
    _spare, spare_clear = make_key(rows.app, name="spare")
    action = {"action": "revoke_selected", "_selected_action": [str(rows.key.pk), str(other.pk)]}

    response = admin_client.post(changelist_url(ApiKey), action, follow=True)

    assert response.status_code == 200
    assert "Revoked 2 keys." in [str(message) for message in response.context["messages"]]
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 2
    assert api_key_get_active(clear_key=rows.clear_key) is None
    assert api_key_get_active(clear_key=other_clear) is None
    assert api_key_get_active(clear_key=spare_clear) is not None

    again = admin_client.post(changelist_url(ApiKey), action, follow=True)
    assert "Revoked 0 keys (2 already revoked)." in [
        str(message) for message in again.context["messages"]
    ]


def test_revoke_action_needs_the_change_permission(client: Client, rows: Rows) -> None:
    client.force_login(staff_user("view_apikey"))
    listing = page(client, changelist_url(ApiKey))
    assert "revoke_selected" not in listing

    action = {"action": "revoke_selected", "_selected_action": [str(rows.key.pk)]}
    client.post(changelist_url(ApiKey), action)

    assert ApiKey.objects.get(pk=rows.key.pk).revoked_at is None


# --- tasks are read-only; permissions ------------------------------------------------------------


def test_staff_without_permissions_cannot_see_tasks(client: Client, rows: Rows) -> None:
    client.force_login(staff_user())
    page(client, changelist_url(Task), status=403)
    page(client, change_url(rows.task), status=403)
    page(client, changelist_url(Message), status=403)


def test_staff_with_the_view_permission_sees_tasks(client: Client, rows: Rows) -> None:
    client.force_login(staff_user("view_task"))
    assert str(rows.task.id) in page(client, changelist_url(Task))
    assert "idem-7" in page(client, change_url(rows.task))


def test_nobody_adds_edits_or_deletes_tasks(admin_client: Client, rows: Rows) -> None:
    page(admin_client, reverse("admin:scheduling_task_add"), status=403)
    page(admin_client, reverse("admin:scheduling_task_delete", args=[rows.task.pk]), status=403)
    assert "delete_selected" not in page(admin_client, changelist_url(Task))

    response = admin_client.post(change_url(rows.task), {"status": TaskStatus.QUEUED})

    assert response.status_code == 403
    assert Task.objects.get(pk=rows.task.pk).status == TaskStatus.SUCCEEDED


def test_messages_are_read_only(admin_client: Client, rows: Rows) -> None:
    page(admin_client, reverse("admin:conversations_message_add"), status=403)
    response = admin_client.post(change_url(rows.message), {"answer": "rewritten"})
    assert response.status_code == 403
    assert Message.objects.get(pk=rows.message.pk).answer.startswith("Open Orders")


# --- apps: saving bumps the settings version ------------------------------------------------------


def test_saving_a_changed_app_bumps_its_settings_version(admin_client: Client, rows: Rows) -> None:
    url = change_url(rows.app)
    data = form_data(admin_client.get(url))
    data["temperature"] = "0.2"

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context and response.context["errors"]
    app = App.objects.get(pk=rows.app.pk)
    assert app.temperature == 0.2
    assert app.settings_version == rows.app.settings_version + 1


def test_saving_an_unchanged_app_keeps_its_settings_version(
    admin_client: Client, rows: Rows
) -> None:
    url = change_url(rows.app)

    assert admin_client.post(url, form_data(admin_client.get(url))).status_code == 302

    assert App.objects.get(pk=rows.app.pk).settings_version == rows.app.settings_version


def test_an_emptied_json_box_saves_its_default(admin_client: Client, rows: Rows) -> None:
    App.objects.filter(pk=rows.app.pk).update(stop=["\n\n"])
    url = change_url(rows.app)
    data = form_data(admin_client.get(url))
    data.update(stop="", suggested_questions="")

    assert admin_client.post(url, data).status_code == 302

    app = App.objects.get(pk=rows.app.pk)
    assert (app.stop, app.suggested_questions) == ([], [])
    assert app.settings_version == rows.app.settings_version + 1


def test_an_app_added_in_the_admin_starts_at_version_one(admin_client: Client) -> None:
    add_url = reverse("admin:applications_app_add")
    data = form_data(admin_client.get(add_url))
    data["name"] = "From the admin"

    response = admin_client.post(add_url, data)

    assert response.status_code == 302
    assert App.objects.get(name="From the admin").settings_version == 1


def test_seconds_and_moment_display() -> None:
    assert seconds_display(None) == "—"
    assert seconds_display(0.1234) == "0.123 s"
    assert seconds_display(12) == "12.000 s"
    assert moment_display(None) == "—"
    moment = datetime(2026, 1, 2, 3, 4, 5, 678900, tzinfo=UTC)
    assert moment_display(moment).startswith("2026-01-02 03:04:05.678 ")
