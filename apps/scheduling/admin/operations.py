"""Operator actions on tasks: each calls a scheduling service, after a confirmation page, and
reports what it did and skipped."""

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import DELETION, LogEntry
from django.core.exceptions import BadRequest
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from apps.scheduling.coordination.queues import QUEUE_ORDER
from apps.scheduling.models import Task, TaskStatus
from apps.scheduling.tasks.services import (
    EndResult,
    task_cancel,
    task_expire,
    task_purge,
    task_reprioritize,
    task_requeue,
)

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


def _outcome(result: EndResult) -> str | None:
    return None if result is EndResult.NOT_ACTIVE else str(result)


def _already_on(priority: str) -> Callable[[Task], str | None]:
    return lambda task: f"already on {priority}" if task.priority == priority else None


def _operations() -> list[TaskOperation]:
    moves = [
        TaskOperation(
            name=f"move_to_{queue}",
            label=f"Move to the {queue} queue",
            explanation=f"Waiting tasks (queued or retrying) move to the {queue} queue.",
            statuses=TaskStatus.WAITING,
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
            statuses=TaskStatus.DEAD_LETTER,
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
            statuses=TaskStatus.DEAD_LETTER,
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
            statuses=TaskStatus.ACTIVE,
            perform=lambda task, actor: _outcome(task_cancel(task_id=task.id, actor=actor)),
        ),
        TaskOperation(
            name="expire",
            label="Expire now",
            explanation=(
                "Waiting tasks end as expired now; running tasks get a deadline of now and are"
                " stopped by their worker, ending as expired."
            ),
            statuses=TaskStatus.ACTIVE,
            perform=lambda task, actor: _outcome(task_expire(task_id=task.id, actor=actor)),
        ),
        TaskOperation(
            name="purge",
            label="Purge dead letters",
            explanation=(
                "Dead letters (dead, failed, expired or cancelled tasks) are deleted with their"
                " whole event history. This cannot be undone."
            ),
            statuses=TaskStatus.DEAD_LETTER,
            perform=lambda task, actor: (
                "purged" if task_purge(task_id=task.id, actor=actor) else None
            ),
            permission="purge",
        ),
    ]


OPERATIONS = {operation.name: operation for operation in _operations()}


def _count_text(counts: Counter[str]) -> str:
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{count} {what}" for what, count in ordered)


def _admin_action(operation: TaskOperation) -> Callable[..., HttpResponse | None]:
    def action(
        model_admin: "TaskOperationsMixin", request: HttpRequest, queryset: QuerySet[Task]
    ) -> HttpResponse | None:
        if request.POST.get("post") != "yes":
            return model_admin.operation_confirm(request, queryset, operation)
        model_admin.operation_perform(request, queryset, operation)
        return None

    action.__name__ = operation.name
    return admin.action(description=operation.label, permissions=[operation.permission])(action)


class TaskOperationsMixin(admin.ModelAdmin):
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
