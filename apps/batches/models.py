"""OpenAI-style batches: a JSONL file of requests answered as bulk work within a window."""

import uuid
from enum import nonmember

from django.db import models

from apps.applications.models import App


class BatchStatus(models.TextChoices):
    """OpenAI's batch statuses."""

    VALIDATING = "validating", "Validating"
    FAILED = "failed", "Failed"
    IN_PROGRESS = "in_progress", "In progress"
    FINALIZING = "finalizing", "Finalizing"
    COMPLETED = "completed", "Completed"
    EXPIRED = "expired", "Expired"
    CANCELLING = "cancelling", "Cancelling"
    CANCELLED = "cancelled", "Cancelled"

    # Not ended yet.
    OPEN = nonmember(("validating", "in_progress", "finalizing", "cancelling"))
    # Ended for good: the files are written.
    ENDED = nonmember(("failed", "completed", "expired", "cancelled"))
    # May still be cancelled.
    CANCELLABLE = nonmember(("validating", "in_progress"))


class Batch(models.Model):
    """A batch: its input file's requests, each run as a bulk task of the app (BatchLine), and
    once they have all ended (or the window closed, or the batch was cancelled), the output and
    error files. The request counts are refreshed by the scheduler's housekeeping."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="batches")
    endpoint = models.CharField(max_length=64)
    completion_window = models.CharField(max_length=8, default="24h")
    input_file = models.ForeignKey(
        "files.StoredFile", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    output_file = models.ForeignKey(
        "files.StoredFile", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    error_file = models.ForeignKey(
        "files.StoredFile", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(
        max_length=16, choices=BatchStatus.choices, default=BatchStatus.VALIDATING
    )
    # Why the batch failed as a whole (OpenAI's `errors.data`): [{"code", "message", "line"?}].
    errors = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # What the batch ends as once finalized: completed, expired or cancelled.
    ending = models.CharField(max_length=16, blank=True, default="")
    request_total = models.PositiveIntegerField(default=0)
    request_completed = models.PositiveIntegerField(default=0)
    request_failed = models.PositiveIntegerField(default=0)
    # Requests released to the queue so far: lines up to this number (apps.batches.progress).
    released_through = models.PositiveIntegerField(default=0)
    # When the housekeeping last moved the batch on: it takes the least recently moved first,
    # a bounded number a round.
    advanced_at = models.DateTimeField(null=True, blank=True)
    # The work that reads the input (validating) and the work that writes the output files.
    expand_task = models.ForeignKey(
        "scheduling.Task", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    finalize_task = models.ForeignKey(
        "scheduling.Task", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    expires_at = models.DateTimeField()
    in_progress_at = models.DateTimeField(null=True, blank=True)
    finalizing_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    cancelling_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "batches"
        indexes = [models.Index(fields=["app", "-created_at"]), models.Index(fields=["status"])]
        permissions = [("operate_batch", "Can cancel batches and retry their failed requests")]

    def __str__(self) -> str:
        return f"batch {self.id} ({self.status})"


class BatchLine(models.Model):
    """One line of a batch's input: a request (its message and task), or, when the line was not
    a valid request, why (`error`, reported in the error file)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="lines")
    number = models.PositiveIntegerField(help_text="The line's number in the input file.")
    custom_id = models.CharField(max_length=512, blank=True, default="")
    message = models.ForeignKey(
        "conversations.Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    task = models.ForeignKey(
        "scheduling.Task",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="batch_lines",
    )
    error = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "number"], name="batches_line_number")
        ]

    def __str__(self) -> str:
        return f"{self.custom_id or '(no custom_id)'} (line {self.number})"
