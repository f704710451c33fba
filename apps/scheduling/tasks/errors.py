"""Errors a task kind raises to tell the scheduler what to do with a failed attempt."""


class TaskError(Exception):
    """A failed attempt. `code` is the API error code the client will see if it is the last."""

    retryable = True
    code = "internal_server_error"


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


class TaskCancelled(Exception):
    """Raised inside a run when an operator cancelled the task."""
