"""What a well-behaved client does during a failure: follow an answer's stream, and when the
connection breaks, resume it from the last event id it saw, through the load balancer, so it
reaches whichever web process is alive."""

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

# A client keeps trying for this long, not for a number of tries: on a loaded machine a web
# process restarting (or nginx still trying the dead one) can refuse many quick tries in a row.
RETRY_BUDGET_S = 45.0
RESUME_PAUSE_S = 0.25
SILENCE_S = 15.0


def _retrying(budget_s: float = RETRY_BUDGET_S) -> Any:
    """Yields until the budget is spent, pausing between tries."""
    give_up_at = time.monotonic() + budget_s
    first = True
    while time.monotonic() < give_up_at:
        if not first:
            time.sleep(RESUME_PAUSE_S)
        first = False
        yield


@dataclass
class StreamResult:
    """What one client saw of one answer."""

    task_id: str = ""
    text: str = ""
    event_ids: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    breaks: int = 0
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def ended(self) -> str | None:
        """The final event (`message_end` or `error`), if it arrived."""
        final = [kind for kind in self.kinds if kind in ("message_end", "error")]
        return final[-1] if final else None


def _events(response: httpx.Response) -> Any:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))


def _take(result: StreamResult, event: dict[str, Any]) -> bool:
    """Record one event; True when it was the last one."""
    result.task_id = result.task_id or str(event.get("task_id", ""))
    result.event_ids.append(str(event["event_id"]))
    kind = str(event["event"])
    result.kinds.append(kind)
    if kind == "message":
        result.text += event.get("answer", "")
    elif kind == "message_replace":
        result.text = event.get("answer", "")
    return kind in ("message_end", "error")


def stream_answer(
    base_url: str,
    key: str,
    query: str,
    *,
    priority: str = "medium",
    user: str = "u1",
    result: StreamResult | None = None,
) -> StreamResult:
    """POST a streaming chat request and follow it to its end. A request that failed before its
    first event is sent again with the same Idempotency-Key (so it is never run twice); a stream
    that broke later is resumed from its last event id."""
    result = result if result is not None else StreamResult()
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
    body = {
        "inputs": {},
        "query": query,
        "user": user,
        "response_mode": "streaming",
        "priority": priority,
        # No title task beside each answer: the drills count the answers' tasks only.
        "auto_generate_name": False,
    }
    try:
        for _ in _retrying():
            if _follow(result, "POST", f"{base_url}/v1/chat-messages", headers, json=body):
                return result
            result.breaks += 1
            if result.task_id:
                _resume(base_url, headers, user, result)
                return result
        result.error = result.error or f"no stream within {RETRY_BUDGET_S:g} s"
        return result
    finally:
        result.done.set()


def _follow(
    result: StreamResult, method: str, url: str, headers: dict[str, str], **kw: Any
) -> bool:
    """Read one response's events into `result`; True once the final event arrived. A stream
    that stays silent past two keep-alive periods (a ping every 10 s) is taken as dead."""
    try:
        with httpx.stream(method, url, headers=headers, timeout=SILENCE_S, **kw) as response:
            if response.status_code != 200:
                response.read()
                result.error = f"{response.status_code} {response.text[:200]}"
                return False
            result.error = ""
            return any(_take(result, event) for event in _events(response))
    except httpx.HTTPError as error:
        result.error = type(error).__name__
        return False


def _resume(base_url: str, headers: dict[str, str], user: str, result: StreamResult) -> None:
    url = f"{base_url}/v1/chat-messages/{result.task_id}/events"
    for _ in _retrying():
        after = result.event_ids[-1] if result.event_ids else "0-0"
        resume_headers = {"Authorization": headers["Authorization"], "Last-Event-ID": after}
        if _follow(result, "GET", url, resume_headers, params={"user": user}):
            return
        result.breaks += 1
    result.error = f"gave up resuming after {RETRY_BUDGET_S:g} s: {result.error}"


def stream_in_background(base_url: str, key: str, query: str, **options: Any) -> StreamResult:
    """Start `stream_answer` in a thread; the returned result fills in as events arrive."""
    result = StreamResult()
    threading.Thread(
        target=stream_answer,
        args=(base_url, key, query),
        kwargs={**options, "result": result},
        daemon=True,
    ).start()
    return result


def blocking_answer(
    base_url: str,
    key: str,
    query: str,
    *,
    idempotency_key: str | None = None,
    deadline_ms: int | None = None,
    timeout_s: float = 60,
) -> httpx.Response:
    body: dict[str, Any] = {
        "inputs": {},
        "query": query,
        "user": "u1",
        "auto_generate_name": False,
    }
    if deadline_ms is not None:
        body["deadline_ms"] = deadline_ms
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return httpx.post(f"{base_url}/v1/chat-messages", json=body, headers=headers, timeout=timeout_s)


@dataclass
class BlockingResult:
    response: httpx.Response | None = None
    failures: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


def blocking_with_retries(
    base_url: str,
    key: str,
    query: str,
    *,
    budget_s: float = RETRY_BUDGET_S,
    result: BlockingResult | None = None,
) -> BlockingResult:
    """A blocking request retried with the same Idempotency-Key until it gets an answer: a
    retry gets the first run's result, never a second run. Records each failed try."""
    result = result if result is not None else BlockingResult()
    idempotency_key = uuid.uuid4().hex
    try:
        for _ in _retrying(budget_s):
            try:
                response = blocking_answer(base_url, key, query, idempotency_key=idempotency_key)
            except httpx.HTTPError as error:
                result.failures.append(type(error).__name__)
            else:
                if response.status_code < 500:
                    result.response = response
                    return result
                result.failures.append(str(response.status_code))
        return result
    finally:
        result.done.set()


def blocking_in_background(base_url: str, key: str, query: str) -> BlockingResult:
    result = BlockingResult()
    threading.Thread(
        target=blocking_with_retries,
        args=(base_url, key, query),
        kwargs={"result": result},
        daemon=True,
    ).start()
    return result
