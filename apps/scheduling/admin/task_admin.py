"""Tasks for the operator: what ran, on which queue, how long it waited and ran, its history;
actions that steer tasks through the scheduling services; the queue dashboard.

A task's row is never edited here: every change goes through a service, which guards the status
and records a TaskEvent naming the operator.
"""

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import DurationField, ExpressionWrapper, F, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.safestring import SafeString, mark_safe

from apps.core.admin_display import EMPTY, moment_column, seconds_display
from apps.scheduling.admin.dashboard import TaskDashboardMixin
from apps.scheduling.admin.operations import OPERATIONS, TaskOperationsMixin, _admin_action
from apps.scheduling.models import Task, TaskEvent

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


@admin.register(Task)
class TaskAdmin(TaskOperationsMixin, TaskDashboardMixin, admin.ModelAdmin):
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
