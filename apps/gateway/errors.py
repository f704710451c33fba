"""Errors of the input layer that the core error set does not have (all in the envelope)."""

from apps.core.errors import ApiError


class NotAcceptable(ApiError):
    status = 406
    code = "not_acceptable"
    default_message = "Accept allows none of the types this route sends."


class IdempotencyKeyReused(ApiError):
    """The key was used before with a different request: a new request needs a new key."""

    status = 422
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was already used with a different request body."
