"""Tasks for the operator: what ran, on which queue, how long it waited and ran, its history;
actions that steer tasks through the scheduling services; the queue dashboard.

A task's row is never edited here: every change goes through a service, which guards the status
and records a TaskEvent naming the operator.
"""

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import BadRequest, PermissionDenied
from django.db.models import DurationField, ExpressionWrapper, F, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.cache import never_cache

from apps.core.errors import ApiError, Forbidden, MethodNotAllowed, Unauthorized
from apps.scheduling.models import ACTIVE_STATUSES, Task, TaskEvent, TaskStatus
from apps.scheduling.queues import QUEUE_ORDER
from apps.scheduling.selectors import DEAD_LETTER_STATUSES, dashboard_snapshot
from apps.scheduling.services import (
    task_cancel,
    task_expire,
    task_purge,
    task_reprioritize,
    task_requeue,
)

EMPTY = "—"


def seconds_display(seconds: float | None) -> str:
    """A duration for people: "0.123 s", or a dash when there is none."""
    return EMPTY if seconds is None else f"{seconds:.3f} s"


def moment_display(moment: datetime | None) -> str:
    """A time to the millisecond: the default admin format stops at minutes, too coarse to read a
    task's timeline."""
    if moment is None:
        return EMPTY
    local = timezone.localtime(moment)
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local:%Z}"


def moment_column(name: str) -> Callable[[Any, Any], str]:
    """A read-only admin column showing the datetime field `name` with moment_display."""

    @admin.display(description=name.replace("_", " "), ordering=name)
    def column(model_admin: Any, obj: Any) -> str:
        return moment_display(getattr(obj, name))

    return column


TASK_EVENT_FIELDS = (
    "at_display",
    "from_status",
    "to_status",
    "reason",
    "attempt",
    "worker_name",
    "detail",
)


class TaskEventInline(admin.TabularInline):
    model = TaskEvent
    fields = TASK_EVENT_FIELDS
    readonly_fields = TASK_EVENT_FIELDS
    ordering = ["at", "id"]
    extra = 0
    can_delete = False
    empty_value_display = EMPTY
    at_display = moment_column("at")

    def has_add_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        return False


# --- actions -------------------------------------------------------------------------------------

WAITING_STATUSES = (TaskStatus.QUEUED, TaskStatus.RETRYING)
# Shown on the confirmation page; the whole selection is acted on however large it is.
CONFIRMATION_PREVIEW = 100


@dataclass(frozen=True)
class TaskOperation:
    """One admin action: which tasks it applies to, what it does to one, and how to say so."""

    name: str
    label: str
    explanation: str  # what will happen, on the confirmation page
    statuses: tuple[str, ...]  # tasks in other statuses are skipped
    # (task, actor) -> what happened ("moved", "stopping", ...), or None when the task changed
    # between the page and the service's guarded update.
    perform: Callable[[Task, str], str | None]
    permission: str = "operate"
    # A reason to skip a task in the right status (e.g. already on that queue), or None.
    skip: Callable[[Task], str | None] = lambda task: None

    def skip_reason(self, task: Task) -> str | None:
        if task.status not in self.statuses:
            return str(task.status)
        return self.skip(task)


def _move(priority: str) -> Callable[[Task, str], str | None]:
    def perform(task: Task, actor: str) -> str | None:
        reason = f"moved from {task.priority} to {priority} by {actor}"
        moved = task_reprioritize(task_id=task.id, priority=priority, reason=reason, actor=actor)
        return "moved" if moved is not None and moved.priority == priority else None

    return perform


def _retry(priority: str | None) -> Callable[[Task, str], str | None]:
    def perform(task: Task, actor: str) -> str | None:
        return "requeued" if task_requeue(task_id=task.id, actor=actor, priority=priority) else None

    return perform


def _outcome(result: str) -> str | None:
    return None if result == "not active" else result


def _already_on(priority: str) -> Callable[[Task], str | None]:
    return lambda task: f"already on {priority}" if task.priority == priority else None


def _operations() -> list[TaskOperation]:
    moves = [
        TaskOperation(
            name=f"move_to_{queue}",
            label=f"Move to the {queue} queue",
            explanation=f"Waiting tasks (queued or retrying) move to the {queue} queue.",
            statuses=WAITING_STATUSES,
            perform=_move(queue),
            skip=_already_on(queue),
        )
        for queue in QUEUE_ORDER
    ]
    dead_letter_retries = [
        TaskOperation(
            name=f"retry_on_{queue}",
            label=f"Retry on the {queue} queue (fresh budget)",
            explanation=(
                f"Dead letters (dead, failed, expired or cancelled tasks) go back to the {queue}"
                " queue with a fresh budget of attempts and no deadline."
            ),
            statuses=DEAD_LETTER_STATUSES,
            perform=_retry(queue),
        )
        for queue in QUEUE_ORDER
    ]
    return [
        *moves,
        TaskOperation(
            name="retry",
            label="Retry (fresh budget)",
            explanation=(
                "Dead letters (dead, failed, expired or cancelled tasks) go back to their queue"
                " with a fresh budget of attempts and no deadline."
            ),
            statuses=DEAD_LETTER_STATUSES,
            perform=_retry(None),
        ),
        *dead_letter_retries,
        TaskOperation(
            name="cancel",
            label="Cancel",
            explanation=(
                "Waiting tasks end as cancelled now; running tasks are stopped by their worker"
                " within a token or two and end as cancelled."
            ),
            statuses=ACTIVE_STATUSES,
            perform=lambda task, actor: _outcome(task_cancel(task_id=task.id, actor=actor)),
        ),
        TaskOperation(
            name="expire",
            label="Expire now",
            explanation=(
                "Waiting tasks end as expired now; running tasks get a deadline of now and are"
                " stopped by their worker, ending as expired."
            ),
            statuses=ACTIVE_STATUSES,
            perform=lambda task, actor: _outcome(task_expire(task_id=task.id, actor=actor)),
        ),
        TaskOperation(
            name="purge",
            label="Purge dead letters",
            explanation=(
                "Dead letters (dead, failed, expired or cancelled tasks) are deleted with their"
                " whole event history. This cannot be undone."
            ),
            statuses=DEAD_LETTER_STATUSES,
            perform=lambda task, actor: (
                "purged" if task_purge(task_id=task.id, actor=actor) else None
            ),
            permission="purge",
        ),
    ]


OPERATIONS = {operation.name: operation for operation in _operations()}
TASK_ID_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


def _count_text(counts: Counter[str]) -> str:
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{count} {what}" for what, count in ordered)


def _admin_action(operation: TaskOperation) -> Callable[..., HttpResponse | None]:
    def action(
        model_admin: "TaskAdmin", request: HttpRequest, queryset: QuerySet[Task]
    ) -> HttpResponse | None:
        if request.POST.get("post") != "yes":
            return model_admin.operation_confirm(request, queryset, operation)
        model_admin.operation_perform(request, queryset, operation)
        return None

    action.__name__ = operation.name
    return admin.action(description=operation.label, permissions=[operation.permission])(action)


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "app",
        "status",
        "priority_display",
        "requested_priority",
        "attempts_display",
        "wait_display",
        "run_display",
        "worker_name",
        "created_at_display",
    ]
    list_filter = ["status", "priority", "kind", "app", "created_at"]
    search_fields = ["id", "end_user", "idempotency_key", "error_message"]
    list_select_related = ["app"]
    ordering = ["-created_at"]
    # A COUNT(*) over every task on each page load is the slow part of a big changelist.
    show_full_result_count = False
    empty_value_display = EMPTY
    inlines = [TaskEventInline]
    actions = [_admin_action(operation) for operation in OPERATIONS.values()]
    fieldsets = [
        (
            None,
            {"fields": ["id", "kind", "app", "end_user", "idempotency_key", "messages_display"]},
        ),
        (
            "Status and priority",
            {
                "fields": [
                    "status",
                    "requested_priority",
                    "priority",
                    "priority_reason",
                    "attempts",
                    "max_attempts",
                ]
            },
        ),
        (
            "Timings",
            {
                "fields": [
                    "created_at_display",
                    "enqueued_at_display",
                    "promoted_at_display",
                    "not_before_display",
                    "deadline_at_display",
                    "started_at_display",
                    "finished_at_display",
                    "wait_display",
                    "run_display",
                ]
            },
        ),
        ("Worker and error", {"fields": ["worker_name", "error_type", "error_message"]}),
        ("Payload and result", {"fields": ["payload", "result"]}),
    ]
    readonly_fields = flatten_fieldsets(fieldsets)

    created_at_display = moment_column("created_at")
    enqueued_at_display = moment_column("enqueued_at")
    promoted_at_display = moment_column("promoted_at")
    not_before_display = moment_column("not_before")
    deadline_at_display = moment_column("deadline_at")
    started_at_display = moment_column("started_at")
    finished_at_display = moment_column("finished_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        # Durations as SQL expressions, so the wait and run columns can be sorted.
        return (
            super()
            .get_queryset(request)
            .annotate(
                wait_interval=ExpressionWrapper(
                    F("started_at") - F("enqueued_at"), output_field=DurationField()
                ),
                run_interval=ExpressionWrapper(
                    F("finished_at") - F("started_at"), output_field=DurationField()
                ),
            )
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("scheduling.operate_task")

    def has_purge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("scheduling.purge_task")

    def has_change_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        return False

    @admin.display(description="priority (effective)", ordering="priority")
    def priority_display(self, task: Task) -> str:
        return task.get_priority_display()

    @admin.display(description="attempts", ordering="attempts")
    def attempts_display(self, task: Task) -> str:
        return f"{task.attempts}/{task.max_attempts}"

    @admin.display(description="wait", ordering="wait_interval")
    def wait_display(self, task: Task) -> str:
        return seconds_display(task.wait_s)

    @admin.display(description="run", ordering="run_interval")
    def run_display(self, task: Task) -> str:
        return seconds_display(task.run_s)

    @admin.display(description="messages")
    def messages_display(self, task: Task) -> SafeString | str:
        messages = task.messages.order_by("created_at")
        if not messages:
            return EMPTY
        return format_html_join(
            mark_safe("<br>"),
            '<a href="{}">{}</a> ({})',
            (
                (
                    reverse("admin:conversations_message_change", args=[message.pk]),
                    str(message),
                    message.get_status_display(),
                )
                for message in messages
            ),
        )

    # --- actions ---------------------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Django would pass a forged id to a UUID lookup and answer 500; it is a bad request.
        for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            try:
                uuid.UUID(value)
            except ValueError:
                raise BadRequest("The selection holds something that is not a task id.") from None
        return super().changelist_view(request, extra_context)

    def operation_confirm(
        self, request: HttpRequest, queryset: QuerySet[Task], operation: TaskOperation
    ) -> TemplateResponse:
        """The intermediate page: what will happen to which tasks, posting back with post=yes."""
        select_across = request.POST.get("select_across") == "1"
        total = queryset.count()
        preview = [(task, operation.skip_reason(task)) for task in queryset[:CONFIRMATION_PREVIEW]]
        # Everything matching the filter is re-read on confirmation (no list of ids to post
        # back, which could pass DATA_UPLOAD_MAX_NUMBER_FIELDS); otherwise exactly the selection.
        ids = (
            [str(task.pk) for task, _ in preview]
            if select_across
            else [str(pk) for pk in queryset.values_list("pk", flat=True)]
        )
        context = {
            **self.admin_site.each_context(request),
            "title": f"{operation.label}: are you sure?",
            "opts": self.opts,
            "operation": operation,
            "preview": preview,
            "total": total,
            "hidden": total - len(preview),
            "acting": sum(1 for _, reason in preview if reason is None),
            "skipping": sum(1 for _, reason in preview if reason is not None),
            "select_across": select_across,
            "ids": ids,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/scheduling/task/action_confirmation.html", context)

    @staticmethod
    def _user_id(request: HttpRequest) -> int:
        user_id = request.user.pk
        assert user_id is not None  # admin views are for signed-in staff only
        return int(user_id)

    def operation_perform(
        self, request: HttpRequest, queryset: QuerySet[Task], operation: TaskOperation
    ) -> None:
        actor = request.user.get_username()
        done: Counter[str] = Counter()
        skipped: Counter[str] = Counter()
        for task in list(queryset.select_related(None).only("id", "kind", "status", "priority")):
            reason = operation.skip_reason(task)
            outcome = operation.perform(task, actor) if reason is None else None
            if outcome is None:
                skipped[reason or "changed meanwhile"] += 1
                continue
            done[outcome] += 1
            message = f"{operation.label}: {outcome} (was {task.status})"
            if operation.name == "purge":
                # After the fact: the row is gone, but the entry only needs its id and name.
                LogEntry.objects.log_actions(
                    self._user_id(request), [task], DELETION, message, single_object=True
                )
            else:
                self.log_change(request, task, message)
        text = f"{operation.label}: {_count_text(done) or '0 done'}"
        if skipped:
            text += f"; {sum(skipped.values())} skipped ({_count_text(skipped)})"
        level = messages.WARNING if skipped else messages.SUCCESS
        self.message_user(request, text + ".", level)

    # --- the queue dashboard ---------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        # Before the defaults: their `<path:object_id>/` would take "dashboard/" for an id.
        return [
            path(
                "dashboard/",
                self.admin_site.admin_view(self.dashboard_view),
                name="scheduling_task_dashboard",
            ),
            path(
                "dashboard/data/",
                never_cache(self.dashboard_data_view),
                name="scheduling_task_dashboard_data",
            ),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Queue dashboard",
            "opts": self.opts,
            "snapshot": dashboard_snapshot(),
            "data_url": reverse("admin:scheduling_task_dashboard_data"),
            "changelist_url": reverse("admin:scheduling_task_changelist"),
            "task_url": reverse("admin:scheduling_task_change", args=[TASK_ID_PLACEHOLDER]),
            "task_id_placeholder": TASK_ID_PLACEHOLDER,
        }
        return TemplateResponse(request, "admin/scheduling/dashboard.html", context)

    def dashboard_data_view(self, request: HttpRequest) -> JsonResponse:
        """The dashboard's numbers, polled by its page. Errors are envelopes, not login pages:
        the page tells the operator instead of parsing HTML."""
        error: ApiError | None = None
        if request.method != "GET":
            error = MethodNotAllowed()
        elif not self.admin_site.has_permission(request):
            error = Unauthorized("Sign in to the admin to see the dashboard.")
        elif not self.has_view_permission(request):
            error = Forbidden("You may not view tasks.")
        if error is not None:
            return JsonResponse(error.envelope(), status=error.status)
        return JsonResponse(dashboard_snapshot())
