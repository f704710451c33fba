"""Application errors: each maps to one `{"code", "message", "status"}` envelope."""

from typing import Any


class ApiError(Exception):
    """An error the API answers with, in Dify's envelope."""

    status = 500
    code = "internal_server_error"
    default_message = "Internal Server Error."

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


class InternalError(ApiError):
    pass


ERRORS_BY_CODE: dict[str, type[ApiError]] = {
    cls.code: cls
    for cls in (
        InvalidParam,
        NotChatApp,
        AppUnavailable,
        CompletionRequestError,
        Unauthorized,
        Forbidden,
        NotFound,
        RequestTooLarge,
        TooManyRequests,
        RateLimitError,
        Overloaded,
        DeadlineExceeded,
        StreamUnavailable,
        InternalError,
    )
}


class IdempotencyKeyGone(ApiError):
    """The request an Idempotency-Key recorded was deleted (with its conversation)."""

    status = 409
    code = "idempotency_key_gone"
    default_message = "The request recorded with this Idempotency-Key no longer exists."
