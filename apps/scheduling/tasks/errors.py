"""Errors a task kind raises to tell the scheduler what to do with a failed attempt."""

from typing import Any

from apps.scheduling.coordination.capacity import CallOutcome


class TaskError(Exception):
    """A failed attempt. `code` is the API error code the client will see if it is the last.

    `deployment_outcome` is what the failure says of the deployment the attempt held (its
    health learns it: FAILED and REFUSED cool it down); None when it says nothing of it (the
    request was bad, or the platform failed). `retry_after_s`: how long the server asked to be
    left alone (a 429's Retry-After)."""

    retryable = True
    code = "internal_server_error"
    deployment_outcome: CallOutcome | None = None
    retry_after_s: float | None = None
    # Whether the model had begun to answer (a refusal or an unreachable server before that
    # costs the task no attempt: nothing of it ran).
    output_started = False


class RetryableTaskError(TaskError):
    """Worth another attempt: a timeout, a provider's 429 or 5xx, a lost connection."""


class WorkerLost(RetryableTaskError):
    """The worker running the task stopped renewing its lock (killed, crashed, lost its host)."""


class PermanentTaskError(TaskError):
    """Retrying cannot help: bad input, content refused, a 4xx from the provider."""

    retryable = False

    def __init__(self, message: str, *, code: str = "completion_request_error") -> None:
        super().__init__(message)
        self.code = code


class Reroute(TaskError):
    """The attempt needs another of its route's deployments (its prompt is larger than this
    one's context window): the task waits again, with `payload` (which its route reads), and
    the attempt is not counted."""

    def __init__(self, message: str, *, payload: dict[str, Any]) -> None:
        super().__init__(message)
        self.payload = payload


class TaskCancelled(Exception):
    """Raised inside a run when an operator cancelled the task."""
