"""Durable tasks and their history. PostgreSQL is the source of truth; Redis only carries them."""

import uuid
from datetime import datetime
from enum import nonmember

from django.db import models
from django.utils import timezone

from apps.applications.models import App
from apps.core.priorities import Priority


class TaskStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    RETRYING = "retrying", "Retrying"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"
    DEAD = "dead", "Dead (dead letter)"

    # The named groups (not choices themselves), as NetBox's JobStatusChoices keeps them.
    # Not finished yet.
    ACTIVE = nonmember(("pending", "queued", "running", "retrying"))
    # Waiting in a queue (or for its retry), not running.
    WAITING = nonmember(("queued", "retrying"))
    # Finished for good, one way or another.
    FINAL = nonmember(("succeeded", "failed", "cancelled", "expired", "dead"))
    # Finished without an answer: what the dead-letter views and actions work on.
    DEAD_LETTER = nonmember(("dead", "failed", "expired", "cancelled"))


class Task(models.Model):
    """A unit of work of some kind (a chat answer, a completion, ...) run by a worker.

    Every status change is a guarded UPDATE (see services) and leaves a TaskEvent.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=32, db_index=True)
    app = models.ForeignKey(
        App, on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks"
    )
    end_user = models.CharField(max_length=255, blank=True, default="", db_index=True)
    payload = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    # Bulk work (a batch's requests): held `pending` in PostgreSQL and released to its queue in
    # turn (apps.batches.progress, tasks_release_held); run only in capacity that live work does
    # not need (workers and deployments keep some back), and never aged.
    bulk = models.BooleanField(default=False)

    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    requested_priority = models.CharField(max_length=8, choices=Priority.choices)
    priority = models.CharField(
        max_length=8, choices=Priority.choices, help_text="Effective priority."
    )
    priority_reason = models.CharField(max_length=255, blank=True, default="")

    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=4)
    not_before = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # When the priority last changed while queued (aging or an operator): aging counts from here.
    promoted_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    worker_name = models.CharField(max_length=255, blank=True, default="")
    error_type = models.CharField(max_length=255, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    # NULL (not "") when absent: the unique constraint must ignore tasks without a key.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001

    class Meta:
        indexes = [
            models.Index(fields=["status", "priority", "created_at"]),
            models.Index(fields=["app", "status"]),
            # The queue dashboard reads the last minutes of finished tasks every few seconds.
            models.Index(fields=["finished_at"], name="task_finished_at_idx"),
        ]
        permissions = [
            ("operate_task", "Can retry, cancel, expire and reprioritize tasks"),
            ("purge_task", "Can purge dead-letter tasks"),
        ]
        constraints = [
            # Keys are each end user's own (one user's key cannot reach another's answer).
            models.UniqueConstraint(
                fields=["app", "end_user", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="task_idempotency_key_unique_per_user",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"

    def time_left_s(self, now: datetime | None = None) -> float | None:
        """Seconds until the deadline (negative once it passed); None without one."""
        if self.deadline_at is None:
            return None
        return (self.deadline_at - (now or timezone.now())).total_seconds()

    def deadline_passed(self, now: datetime | None = None) -> bool:
        left = self.time_left_s(now)
        return left is not None and left <= 0

    @property
    def wait_s(self) -> float | None:
        if self.started_at and self.enqueued_at:
            return (self.started_at - self.enqueued_at).total_seconds()
        return None

    @property
    def run_s(self) -> float | None:
        if self.finished_at and self.started_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class TaskEvent(models.Model):
    """One transition in a task's life: when, from which status to which, why, and where."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    from_status = models.CharField(max_length=16, blank=True, default="")
    to_status = models.CharField(max_length=16)
    reason = models.CharField(max_length=255, blank=True, default="")
    attempt = models.PositiveSmallIntegerField(default=0)
    worker_name = models.CharField(max_length=255, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '∅'} → {self.to_status}"
