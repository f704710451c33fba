"""The one admission pipeline for a question, whichever door it came in by (REST, WebSocket).

Each door authenticates, applies the key's and the end user's rate limits and validates in its
own shape (apps.gateway.admission), then hands an `AnswerRequest` here, which runs what must be
the same everywhere, in order: load shedding; the Idempotency-Key (the first run's submission
back, or 422 for a different request); the response cache; the app's cap on answers at once;
the record. A protection added here holds for every door.

The Idempotency-Key's fingerprint is the request as asked (the route of the app's mode and the
body, without how the answer is delivered), so a request sent over REST and retried over the
WebSocket, or the other way round, is recognised as the same request.
"""

from dataclasses import dataclass
from typing import Any

from apps.applications.models import ApiKey, AppMode
from apps.conversations.services import (
    Question,
    SubmittedAnswer,
    answer_submission_by_key,
    answer_submit,
)
from apps.core.db import db_sync_to_async
from apps.gateway import cache
from apps.gateway.admission import cap_lease, shed
from apps.gateway.caps import Lease, lease_release
from apps.gateway.idempotency import request_hash, same_request

_submit = db_sync_to_async(answer_submit)
_by_key = db_sync_to_async(answer_submission_by_key)

# The REST route of each app mode: the fingerprint's route whatever the door.
MODE_ROUTES: dict[str, str] = {
    AppMode.CHAT: "/v1/chat-messages",
    AppMode.COMPLETION: "/v1/completion-messages",
}
# Fields that say how a request travels, not what it asks.
DELIVERY_FIELDS = frozenset(
    {"response_mode", "type", "request_id", "idempotency_key", "stream", "stream_options"}
)


@dataclass(frozen=True)
class AnswerRequest:
    """A question past authentication, rate limits and validation."""

    api_key: ApiKey
    route_mode: str | None  # the route's app mode; None: any app (/api/v1/ask)
    route: str  # what the fingerprint names the route by
    body: dict[str, Any]  # as sent
    data: dict[str, Any]  # validated
    idempotency_key: str | None = None
    # The door can deliver a cached answer (a blocking completion, or a socket's events).
    cacheable: bool = False

    @property
    def fingerprint(self) -> str:
        if self.idempotency_key is None:
            return ""
        asked = {name: value for name, value in self.body.items() if name not in DELIVERY_FIELDS}
        return request_hash(self.route, asked)

    def question(self) -> Question:
        """What is asked, to record: the validated data in the one shape every door's takes."""
        data = self.data
        return Question(
            api_key=self.api_key,
            route_mode=self.route_mode,
            end_user=data["user"],
            query=data["query"],
            inputs=data.get("inputs", {}),
            conversation_id=data.get("conversation_id") or None,
            priority=data.get("priority"),
            deadline_ms=data.get("deadline_ms"),
            auto_generate_name=data.get("auto_generate_name", True),
            idempotency_key=self.idempotency_key,
            request_hash=self.fingerprint,
            files=data.get("files") or [],
            history=data.get("history"),
            generation=data.get("generation") or {},
        )


@dataclass
class Admission:
    """What the pipeline decided: a cached answer, an earlier run (replayed), or a new one."""

    request: AnswerRequest
    submitted: SubmittedAnswer | None = None
    cached: cache.CachedAnswer | None = None
    # Held by a new answer until it is delivered (apps.delivery.answers).
    lease: Lease | None = None
    # A new answer whose complete result the door should store in the cache.
    store_in_cache: bool = False

    @property
    def replayed(self) -> bool:
        return self.submitted is not None and self.submitted.replayed


def route_of(api_key: ApiKey) -> str:
    return MODE_ROUTES.get(str(api_key.app.mode), "/v1/chat-messages")


async def answer_admit(request: AnswerRequest) -> Admission:
    question = request.question()
    api_key, key = request.api_key, request.idempotency_key
    await shed(api_key, question.priority, question.deadline_ms)
    if key is not None:
        earlier = await _by_key(
            app_id=api_key.app_id, end_user=question.end_user, idempotency_key=key
        )
        if earlier is not None:
            same_request(earlier, question.request_hash, key)
            return Admission(request, submitted=earlier)
    # A keyed request promises the result of its own run, so it is never served from the cache.
    use_cache = (
        request.cacheable
        and request.route_mode == AppMode.COMPLETION
        and api_key.app.cache_enabled
        and key is None
        and not question.files  # the cache knows the query and inputs, not the files
    )
    if use_cache:
        cached = await cache.cache_get(api_key.app, question.query, question.inputs)
        if cached is not None:
            return Admission(request, cached=cached)
    lease = await cap_lease(api_key.app)
    try:
        submitted = await _submit(question=question)
    except BaseException:
        if lease is not None:
            await lease_release(lease)
        raise
    if submitted.replayed:  # a request with the same key won the race to record it
        if lease is not None:
            await lease_release(lease)
        same_request(submitted, question.request_hash, str(key))
        return Admission(request, submitted=submitted)
    return Admission(request, submitted=submitted, lease=lease, store_in_cache=use_cache)
