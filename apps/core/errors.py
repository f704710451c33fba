"""Application errors: each maps to one `{"code", "message", "status"}` envelope.

Each error class declares its code and HTTP status once, and is found by its code
(`error_class_of`): a code that travelled without its class (a worker's failure in an answer's
event log, a task's recorded result) gets its status here and nowhere else."""

from typing import Any

# Code: the first error class that declared it (a subclass that only rewords the message keeps
# its parent's code and is not listed).
_BY_CODE: dict[str, type["ApiError"]] = {}


class ApiError(Exception):
    """An error the API answers with, in Dify's envelope."""

    status = 500
    code = "internal_server_error"
    default_message = "Internal Server Error."

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            _BY_CODE.setdefault(cls.code, cls)

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None):
        self.message = message or self.default_message
        self.headers = headers or {}
        super().__init__(self.message)

    def envelope(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "status": self.status}


class InvalidParam(ApiError):
    status = 400
    code = "invalid_param"
    default_message = "Invalid parameter."


class InvalidJson(InvalidParam):
    default_message = "Invalid JSON payload received or JSON payload is empty."


class BadRequest(ApiError):
    """A request Dify refuses as a whole (`bad_request`): a feature the app has turned off."""

    status = 400
    code = "bad_request"
    default_message = "Bad request."


class NotChatApp(ApiError):
    status = 400
    code = "not_chat_app"
    default_message = "Please check if your app mode matches the right API route."


class AppUnavailable(ApiError):
    status = 400
    code = "app_unavailable"
    default_message = "App unavailable, please check your app configurations."


class CompletionRequestError(ApiError):
    status = 400
    code = "completion_request_error"
    default_message = "The model provider failed to answer."


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"
    default_message = "Access token is invalid."


class Forbidden(ApiError):
    status = 403
    code = "forbidden"
    default_message = "The app is disabled."


class NotFound(ApiError):
    status = 404
    code = "not_found"
    default_message = "Not Found."


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"
    default_message = "Method not allowed."


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"
    default_message = "Content-Type must be application/json."


class RequestTooLarge(ApiError):
    status = 413
    code = "request_too_large"
    default_message = "Request body is too large."


class TooManyRequests(ApiError):
    status = 429
    code = "too_many_requests"
    default_message = "Too many concurrent requests for this app."


class RateLimitError(ApiError):
    status = 429
    code = "rate_limit_error"
    default_message = "Rate limit exceeded."


class Overloaded(ApiError):
    status = 503
    code = "overloaded"
    default_message = "The platform is overloaded; retry later."


class DeadlineExceeded(ApiError):
    status = 504
    code = "deadline_exceeded"
    default_message = "The answer was not ready within its deadline."


class StreamUnavailable(ApiError):
    status = 503
    code = "stream_unavailable"
    default_message = "The answer's event log is unreachable for now; retry later."


class Cancelled(ApiError):
    """The answer was cancelled (its conversation deleted, or by an operator) before it ended."""

    status = 499  # as nginx logs a request its client gave up on
    code = "cancelled"
    default_message = "The answer was cancelled."


class InternalError(ApiError):
    pass


def error_class_of(code: str) -> type[ApiError]:
    """The error class of `code`; ApiError (500) for a code no class declares."""
    return _BY_CODE.get(code, ApiError)


def status_of(code: str) -> int:
    return error_class_of(code).status


def error_of(code: str, message: str | None = None, status: int | None = None) -> ApiError:
    """The error `code` names, as it travelled (an event, a recorded result): its own `status`
    when it carried one."""
    error = error_class_of(code)(message or None)
    error.code = code or error.code
    if status is not None:
        error.status = status
    return error


class IdempotencyKeyGone(ApiError):
    """The request an Idempotency-Key recorded was deleted (with its conversation)."""

    status = 409
    code = "idempotency_key_gone"
    default_message = "The request recorded with this Idempotency-Key no longer exists."
