"""The WebSocket chat, `ws(s)://HOST/ws/v1/chat`: the SSE stream's events over one socket.

Policy, decided here (DESIGN.md, "Streaming"):
- The caller is an app key or a chat page's end-user session; no Django session. The key comes
  in an `Authorization: Bearer app-...` header (non-browser clients) or, since browsers can set
  no headers, in a first frame `{"type": "auth", "api_key": "app-..."}` within `AUTH_TIMEOUT_S`;
  a key in the URL (`?api_key=`) is refused, as URLs land in access logs. A chat page names its
  share code in `?app_code=` and its browser sends the session cookie (apps.gateway.sessions).
  A missing or bad credential (or any other first frame) gets an `unauthorized` error frame and
  close code 4401, a disabled app `forbidden` and 4403. The caller is checked again on every
  frame, so revoking a key or disabling an app also reaches sockets that are already open.
- Origin: Channels' AllowedHostsOriginValidator refuses clients that send no Origin header, which
  are exactly the API clients, so it is not used. A handshake without Origin is accepted (the key
  decides); one with an Origin only when that origin is the host being connected to, matches
  ALLOWED_HOSTS (a bare "*" there does not count), or is listed in WEBSOCKET_ALLOWED_ORIGINS ("*"
  for any). Any other origin is refused at the handshake (HTTP 403), so a foreign page cannot
  drive the socket with a key it somehow holds.

Client frames (JSON objects):
  {"type": "auth", "api_key"}
  {"type": "query", "query", "inputs", "user", "conversation_id"?, "priority"?, "deadline_ms"?,
   "request_id"?, "idempotency_key"?}
                   validated like the REST body of the app's mode; `idempotency_key` works as
                   the REST routes' Idempotency-Key header (a request sent over REST and
                   retried here, or the other way round, is the same request)
  {"type": "stop", "task_id", "user"}   no reply of its own: the answer's stream ends with
                                        message_end, keeping the partial answer (like Dify, a
                                        stop for an unknown task changes nothing)
  {"type": "resume", "task_id", "user", "last_event_id"?, "request_id"?}
Server frames:
  {"type": "ready", "mode"}                      after authentication
  {"type": "accepted", "task_id", "message_id", "conversation_id"?, "request_id"?,
   "replayed"?, "cached"?}                       once a query is recorded (or recognised as
                                                 an earlier one, or answered from the response
                                                 cache), before its events
  the task's events exactly as the SSE stream carries them (apps.dify.events), plus "event_id"
  (what to resume after) and the query's "request_id" when it had one
  {"type": "error", "code", "message", "status", "request_id"?}
                                                 a refused frame; the socket stays open
Several queries run at once on one socket, each delivered by its own asyncio task
(apps.delivery.answers: the same delivery as the REST routes'; this door only shapes frames).

A query passes the same admission pipeline as the REST answer routes (apps.gateway.pipeline):
the key's and the user's rate limits, load shedding, the Idempotency-Key, the response cache, and
the app's cap on answers at once (its lease is held while the answer is relayed), each refusal in
an error frame with the REST status (429, 503, 422).
"""

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.http import parse_cookie
from django.http.request import split_domain_port, validate_host

from apps.api.bodies import json_text_check
from apps.applications.models import ApiKey, AppMode
from apps.conversations.selectors import task_owned_by
from apps.conversations.services import answer_stop
from apps.core.db import db_sync_to_async
from apps.core.errors import (
    ApiError,
    InternalError,
    InvalidJson,
    InvalidParam,
    NotFound,
    RequestTooLarge,
    StreamUnavailable,
    TooManyRequests,
    Unauthorized,
)
from apps.core.exception_handler import to_api_error
from apps.delivery.answers import AnswerDelivery, answer_delivery
from apps.dify.events import AnswerHeader, end_event, message_event
from apps.dify.frames import json_with
from apps.dify.requests import (
    ChatRequestSerializer,
    CompletionRequestSerializer,
    StopRequestSerializer,
    validated,
)
from apps.gateway.admission import rate_limit
from apps.gateway.authentication import api_key_from_header_async
from apps.gateway.cache import CachedAnswer, hit_body
from apps.gateway.idempotency import idempotency_key_checked
from apps.gateway.pipeline import Admission, AnswerRequest, answer_admit, route_of
from apps.gateway.sessions import web_caller_async
from apps.streams.feeds import Event
from apps.streams.log import START_ID

logger = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 10.0
# Answers relayed at once on one socket: enough for any real client, bounded against abuse.
MAX_RELAYS = 32
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
MAX_REQUEST_ID_CHARS = 128
# How often a quiet answer looks whether its log is gone (daphne's own WebSocket pings keep the
# socket itself alive).
QUIET_S = 4.0
# The consumer reads task event logs itself and joins no group: naming no configured channel layer
# spares each socket a Redis connection polling the layer (and its failures).
NO_CHANNEL_LAYER = "none"


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1").strip()
    return None


def origin_allowed(scope: dict[str, Any]) -> bool:
    """The Origin policy of the module docstring."""
    origin = _header(scope, b"origin")
    if origin is None:
        return True
    origin = origin.lower().rstrip("/")
    listed = {entry.lower().rstrip("/") for entry in settings.WEBSOCKET_ALLOWED_ORIGINS}
    if "*" in listed or origin in listed:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    if parts.netloc == (_header(scope, b"host") or "").lower():
        return True
    domain, _ = split_domain_port(parts.netloc)
    return bool(domain) and validate_host(domain, [h for h in settings.ALLOWED_HOSTS if h != "*"])


class KeyInUrl(Unauthorized):
    default_message = (
        "An API key in the URL is refused (URLs land in access logs): send it in an "
        'Authorization header, or as a first frame {"type": "auth", "api_key": "..."}.'
    )


@dataclass(frozen=True)
class KeyCredential:
    """An app key: the caller names the end user in each frame."""

    authorization: str

    async def resolve(self) -> tuple[ApiKey, str | None]:
        return await api_key_from_header_async(self.authorization), None


@dataclass(frozen=True)
class SessionCredential:
    """A chat page's end-user session: the session names the end user (apps.gateway.sessions)."""

    share_code: str
    cookies: dict[str, str]

    async def resolve(self) -> tuple[ApiKey, str | None]:
        return await web_caller_async(self.share_code, self.cookies)


Credential = KeyCredential | SessionCredential


def handshake_credential(scope: dict[str, Any]) -> Credential | None:
    """What the handshake carried: a key in an Authorization header, or `?app_code=` with the
    browser's session cookie; None when neither (an auth frame may follow). A key in the URL
    raises KeyInUrl."""
    params = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
    if "api_key" in params:
        raise KeyInUrl()
    authorization = _header(scope, b"authorization")
    if authorization is not None:
        return KeyCredential(authorization)
    if params.get("app_code"):
        cookies = parse_cookie(_header(scope, b"cookie") or "")
        return SessionCredential(params["app_code"][0], cookies)
    return None


def _as_session_user(frame: dict[str, Any], end_user: str | None) -> dict[str, Any]:
    """A session's frames act as its end user, whatever `user` they carry."""
    return frame if end_user is None else {**frame, "user": end_user}


def _accepted(admission: Admission) -> dict[str, Any]:
    submitted = admission.submitted
    assert submitted is not None
    accepted: dict[str, Any] = {
        "type": "accepted",
        "task_id": str(submitted.task.id),
        "message_id": str(submitted.message.id),
    }
    if submitted.conversation is not None:
        accepted["conversation_id"] = str(submitted.conversation.id)
    if submitted.replayed:
        accepted["replayed"] = True  # an earlier request with this idempotency_key: its answer
    return accepted


def _cached_frames(cached: CachedAnswer) -> list[dict[str, Any]]:
    """A cached answer as the frames of a stream: accepted, the whole text, the end."""
    body = hit_body(cached)
    header = AnswerHeader(
        task_id=str(body.get("task_id")),
        message_id=str(body.get("message_id")),
        conversation_id=body.get("conversation_id"),
        created_at=int(body.get("created_at") or 0),
    ).fields()
    accepted = {"task_id": header["task_id"], "message_id": header["message_id"]}
    return [
        {"type": "accepted", **accepted, "cached": True},
        message_event(header, str(body.get("answer", ""))),
        end_event(header, body.get("metadata", {})),
    ]


async def _admitted_query(credential: Credential, frame: dict[str, Any]) -> AnswerRequest:
    """A query frame, authenticated (the key is checked again: it may have been revoked since
    the handshake), within the key's and the user's rate limits, and validated: ready for the
    admission pipeline that REST requests pass too (apps.gateway.pipeline)."""
    api_key, end_user = await credential.resolve()
    frame = _as_session_user(frame, end_user)
    user = frame.get("user")
    await rate_limit(api_key, user if isinstance(user, str) else None)
    mode = api_key.app.mode
    serializer = ChatRequestSerializer if mode == AppMode.CHAT else CompletionRequestSerializer
    return AnswerRequest(
        api_key=api_key,
        route_mode=mode,
        route=route_of(api_key),
        body=frame,
        data=validated(serializer, frame),
        idempotency_key=idempotency_key_checked(frame.get("idempotency_key")),
        cacheable=True,  # a cached answer goes out as the frames of a stream
    )


async def _admitted_control(credential: Credential, frame: dict[str, Any]) -> tuple[ApiKey, str]:
    """A stop or resume frame: the caller, then the same rate limits as the REST stop and
    events routes, then its `user`."""
    api_key, end_user = await credential.resolve()
    frame = _as_session_user(frame, end_user)
    user = frame.get("user")
    await rate_limit(api_key, user if isinstance(user, str) else None)
    return api_key, _user(frame)


_answer_stop = db_sync_to_async(answer_stop)
_task_owned = db_sync_to_async(task_owned_by)


def _user(frame: dict[str, Any]) -> str:
    # The same `user` rule as the REST stop route.
    return str(validated(StopRequestSerializer, frame)["user"])


def _task_id(frame: dict[str, Any]) -> str:
    value = frame.get("task_id")
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise InvalidParam("task_id: must be a UUID")


def _request_id(frame: dict[str, Any]) -> str | int | None:
    value = frame.get("request_id")
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and len(value) <= MAX_REQUEST_ID_CHARS:
        return value
    raise InvalidParam(
        f"request_id: must be an integer or a string of at most {MAX_REQUEST_ID_CHARS} characters"
    )


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """One chat socket: authenticates, records queries, relays their event logs."""

    channel_layer_alias = NO_CHANNEL_LAYER

    async def connect(self) -> None:
        self.credential: Credential | None = None
        self.closing = False
        self.relays: dict[str, asyncio.Task[None]] = {}
        self.auth_timer: asyncio.Task[None] | None = None
        if not origin_allowed(self.scope):
            logger.info("websocket refused: origin %r", _header(self.scope, b"origin"))
            await self.close()  # before accept: daphne answers the handshake with 403
            return
        await self.accept()
        try:
            given = handshake_credential(self.scope)
        except ApiError as error:
            await self._refuse(error, None)
            return
        if given is None:
            self.auth_timer = asyncio.create_task(self._auth_deadline())
        else:
            await self._authenticate(given)

    async def disconnect(self, code: int) -> None:
        self.closing = True
        pending = list(self.relays.values())
        if self.auth_timer is not None:
            pending.append(self.auth_timer)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.relays.clear()

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if self.closing:
            return
        try:
            if text_data is None:
                raise InvalidJson("Frames must be JSON text, not binary.")
            if len(text_data) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
                raise RequestTooLarge(
                    f"Frame exceeds {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} characters."
                )
            content = await self.decode_json(text_data)
        except ApiError as error:
            await self._refuse(error, None)
            return
        await self.receive_json(content)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            content = json.loads(text_data)
        except (json.JSONDecodeError, RecursionError):
            raise InvalidJson() from None
        json_text_check(text_data, content)
        return content

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return _encoded(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        request_id = None
        try:
            if not isinstance(content, dict):
                raise InvalidJson("A frame must be a JSON object.")
            request_id = _request_id(content)
            kind = content.get("type")
            if self.credential is None:
                if kind != "auth":
                    raise Unauthorized('Authenticate first: {"type": "auth", "api_key": "..."}.')
                api_key = content.get("api_key")
                if not isinstance(api_key, str) or not api_key.strip():
                    raise Unauthorized("api_key must be provided.")
                await self._authenticate(KeyCredential(f"Bearer {api_key}"))
            elif kind == "query":
                await self._query(content, request_id)
            elif kind == "stop":
                task_id = _task_id(content)
                api_key, user = await _admitted_control(self.credential, content)
                await _answer_stop(api_key=api_key, task_id=task_id, end_user=user)
            elif kind == "resume":
                await self._resume(content, request_id)
            elif kind == "auth":
                raise InvalidParam("Already authenticated.")
            else:
                raise InvalidParam('type: must be one of "query", "stop", "resume", "auth".')
        except Exception as exc:  # every refusal answers in the envelope; the socket lives on
            await self._refuse(to_api_error(exc), request_id)

    async def _authenticate(self, credential: Credential) -> None:
        try:
            api_key, _ = await credential.resolve()
        except ApiError as error:
            await self._refuse(error, None)
            return
        self.credential = credential
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        await self.send_json({"type": "ready", "mode": api_key.app.mode})

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(AUTH_TIMEOUT_S)
        if self.credential is None and not self.closing:
            await self._refuse(Unauthorized("No api_key within the time allowed."), None)

    async def _query(self, frame: dict[str, Any], request_id: str | int | None) -> None:
        if len(self.relays) >= MAX_RELAYS:
            raise TooManyRequests(f"At most {MAX_RELAYS} answers at once on one socket.")
        assert self.credential is not None
        admission = await answer_admit(await _admitted_query(self.credential, frame))
        if admission.cached is not None:
            for cached_frame in _cached_frames(admission.cached):
                await self.send_json(_tagged(cached_frame, request_id))
            return
        await self.send_json(_tagged(_accepted(admission), request_id))
        # The app's cap on answers served at once counts socket answers too (the delivery
        # holds the new answer's slot).
        self._relay_start(answer_delivery(admission), request_id)

    async def _resume(self, frame: dict[str, Any], request_id: str | int | None) -> None:
        task_id = _task_id(frame)
        after_id = frame.get("last_event_id") or START_ID
        if not isinstance(after_id, str) or not EVENT_ID.match(after_id):
            raise InvalidParam("last_event_id: must be an event id from this stream.")
        if task_id not in self.relays and len(self.relays) >= MAX_RELAYS:
            raise TooManyRequests(f"At most {MAX_RELAYS} answers at once on one socket.")
        assert self.credential is not None
        api_key, user = await _admitted_control(self.credential, frame)
        if not await _task_owned(app_id=api_key.app_id, task_id=task_id, end_user=user):
            raise NotFound("Task Not Exists.")
        # A resumed answer's slot under the app's cap stays with the answer (held until its
        # task ends, apps.gateway.caps), not with whichever socket relays it.
        self._relay_start(AnswerDelivery(task_id=task_id, after_id=after_id), request_id)

    def _relay_start(self, delivery: AnswerDelivery, request_id: str | int | None) -> None:
        # A second relay of the same task on this socket replaces the first: no event twice.
        task_id = delivery.task_id
        previous = self.relays.pop(task_id, None)
        if previous is not None:
            previous.cancel()
        relay = asyncio.create_task(self._relay(delivery, request_id))
        self.relays[task_id] = relay

        def forget(done: asyncio.Task[None]) -> None:
            if self.relays.get(task_id) is done:
                del self.relays[task_id]

        relay.add_done_callback(forget)

    async def _relay(self, delivery: AnswerDelivery, request_id: str | int | None) -> None:
        try:
            # Closed here even when cancelled mid-send: the delivery lets go of the answer's slot
            # and its feed at once.
            async with contextlib.aclosing(delivery.stream(SocketFrames(request_id))) as frames:
                async for frame in frames:
                    if self.closing:
                        return
                    await self.send(text_data=frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("websocket relay of task %s failed", delivery.task_id)
            if not self.closing:
                error = InternalError(
                    f"The event stream of task {delivery.task_id} failed; resume it."
                )
                await self._send_error(error, request_id)

    async def _refuse(self, error: ApiError, request_id: str | int | None) -> None:
        """Answer a refused frame; a key problem also ends the connection."""
        await self._send_error(error, request_id)
        if error.status in (401, 403):
            self.closing = True
            await self.close(code=CLOSE_FORBIDDEN if error.status == 403 else CLOSE_UNAUTHORIZED)

    async def _send_error(self, error: ApiError, request_id: str | int | None) -> None:
        await self.send_json(_tagged({"type": "error", **error.envelope()}, request_id))


def _tagged(frame: dict[str, Any], request_id: str | int | None) -> dict[str, Any]:
    if request_id is not None:
        frame["request_id"] = request_id
    return frame


def _encoded(frame: Any) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


class SocketFrames:
    """An answer's events as this socket's text frames (apps.delivery.answers.Frames): each
    event's JSON as the log holds it, with its `event_id` and the query's `request_id`."""

    keepalive_s = QUIET_S

    def __init__(self, request_id: str | int | None) -> None:
        self.request_id = request_id

    def opening(self) -> Iterable[str]:
        return ()

    def keepalive(self) -> Iterable[str]:
        return ()

    def event(self, event: Event) -> Iterable[str]:
        return (json_with(event.raw, _tagged({"event_id": event.id}, self.request_id)),)

    def finished(self) -> bool:
        return False

    def unavailable(self, error: StreamUnavailable) -> Iterable[str]:
        return (_encoded(_tagged({"type": "error", **error.envelope()}, self.request_id)),)
