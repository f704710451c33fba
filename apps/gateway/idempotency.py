"""`Idempotency-Key`: a retried request gets the first one's result instead of a second run.

The key is stored on the task (unique per app), with a hash of the request beside it. A retry
with the same key and the same request attaches to the first run (apps.gateway.pipeline): it is
delivered the same event log (so a retry during the run follows it live, and one after it gets
the same answer; once the log has lapsed, the answer is rebuilt from PostgreSQL,
apps.dify.rebuild). The same key with a different request is 422 `idempotency_key_reused`.
`response_mode` is not part of the hash: it says how the answer is delivered, not what is asked,
so a retry may switch it.
"""

import hashlib
import json
import re
from typing import Any

from django.http import HttpRequest

from apps.conversations.services import SubmittedAnswer
from apps.core.errors import ApiError, InvalidParam

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_VALID = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$")


class IdempotencyKeyReused(ApiError):
    """The key was used before with a different request: a new request needs a new key."""

    status = 422
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was already used with a different request body."


def idempotency_key(request: HttpRequest) -> str | None:
    return idempotency_key_checked(request.headers.get(HEADER))


def idempotency_key_checked(raw: Any) -> str | None:
    """A key as a client gave it (a header, a frame's `idempotency_key`), or None without one."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not _VALID.match(raw):
        raise InvalidParam(
            f"{HEADER} must be 1 to 255 printable ASCII characters, without surrounding spaces."
        )
    return raw


def request_hash(route: str, body: dict[str, Any]) -> str:
    asked = {name: value for name, value in body.items() if name != "response_mode"}
    material = json.dumps([route, asked], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(material.encode()).hexdigest()


def same_request(submitted: SubmittedAnswer, expected_hash: str, key: str) -> None:
    """Raise unless the earlier request under this key asked the same thing."""
    if submitted.task.payload.get("request_hash") != expected_hash:
        raise IdempotencyKeyReused(
            f"{HEADER} {key!r} was already used with a different request (task "
            f"{submitted.task.id}); send a new key for a new request."
        )
