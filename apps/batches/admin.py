"""Batches in the operator console: their progress, their requests, and the actions operators
take on them (cancel; run a completed batch's failed requests again)."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from apps.batches.ids import BATCH_PREFIX, public_id
from apps.batches.models import Batch, BatchLine, BatchStatus
from apps.batches.services import batch_cancel, batch_retry_failed

SHOWN_LINES = 100


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("openai_id", "app", "status", "progress", "created_at", "expires_at")
    list_filter = ("status", "app")
    search_fields = ("id",)
    ordering = ("-created_at",)
    readonly_fields = [
        "openai_id",
        "progress",
        *(field.name for field in Batch._meta.fields),
        "first_requests",
    ]
    actions = ["cancel_batches", "retry_failed_requests"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="id")
    def openai_id(self, batch: Batch) -> str:
        return public_id(BATCH_PREFIX, batch.id)

    @admin.display(description="progress")
    def progress(self, batch: Batch) -> str:
        ended = batch.request_completed + batch.request_failed
        return (
            f"{ended}/{batch.request_total} ended: {batch.request_completed} completed, "
            f"{batch.request_failed} failed"
        )

    @admin.display(description=f"requests (the first {SHOWN_LINES})")
    def first_requests(self, batch: Batch) -> str:
        lines = BatchLine.objects.filter(batch=batch).select_related("task")[:SHOWN_LINES]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    line.number,
                    line.custom_id or "-",
                    _task_link(line),
                    line.task.status if line.task is not None else (line.error or {}).get("code"),
                )
                for line in lines
            ),
        )
        header = "<tr><th>line</th><th>custom_id</th><th>task</th><th>status</th></tr>"
        return format_html("<table>{}{}</table>", mark_safe(header), rows)

    @admin.action(description="Cancel (keeps what finished)", permissions=["operate"])
    def cancel_batches(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        cancelled = skipped = 0
        for batch in queryset:
            if batch.status in BatchStatus.CANCELLABLE:
                batch_cancel(batch=batch)
                cancelled += 1
            else:
                skipped += 1
        self.message_user(
            request, f"{cancelled} batch(es) cancelling; {skipped} skipped (not running)."
        )

    @admin.action(
        description="Run the failed requests of completed batches again", permissions=["operate"]
    )
    def retry_failed_requests(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        actor = f"operator {request.user}"
        counts = [batch_retry_failed(batch=batch, actor=actor) for batch in queryset]
        retried = sum(1 for count in counts if count)
        level = messages.SUCCESS if retried else messages.WARNING
        self.message_user(
            request,
            f"{sum(counts)} request(s) of {retried} batch(es) run again; batches that are not "
            "completed, past their window, or without failed requests were skipped.",
            level,
        )

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("batches.operate_batch"))


def _task_link(line: BatchLine) -> str:
    if line.task_id is None:
        return "-"
    url = reverse("admin:scheduling_task_change", args=[line.task_id])
    return format_html('<a href="{}">{}</a>', url, line.task_id)
