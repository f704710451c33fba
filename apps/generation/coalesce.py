"""Answer text sent at most once per window: the first piece at once, then what arrives within
the window as one `message` event.

Every event costs CPU along the whole path: an append in the worker, Redis, a frame per follower
in the web process, a parse in each client. On a small machine that CPU is taken from the model
itself, which makes a token every few milliseconds (figures: docs/benchmarks.md). A 20 ms window
sends about one event per three tokens at that rate, and every token still at once when they
come slower than the window. Text held in the
window goes out when the window ends, by a timer on the event loop if the model has gone quiet.
Everything runs on the worker's event loop: no thread, no lock.
"""

import asyncio
import time
from collections.abc import Callable


class TextCoalescer:
    def __init__(self, send: Callable[[str], object], window_s: float) -> None:
        self._send = send
        self._window_s = window_s
        self._held: list[str] = []
        self._last_sent = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._failure: Exception | None = None

    def add(self, piece: str) -> None:
        self._raise_failure()
        now = time.monotonic()
        if not self._held and now - self._last_sent >= self._window_s:
            self._send_now(piece, now)
            return
        self._held.append(piece)
        if self._timer is None:
            due_in = max(0.0, self._last_sent + self._window_s - now)
            self._timer = asyncio.get_running_loop().call_later(due_in, self._flush_when_due)

    def flush(self) -> None:
        """Send what is held now (before another kind of event, or at the end)."""
        self._raise_failure()
        self._cancel_timer()
        self._flush_held()

    def close(self) -> None:
        """Send what is held: nothing is sent after this returns."""
        self._closed = True
        self._cancel_timer()
        self._raise_failure()
        self._flush_held()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _raise_failure(self) -> None:
        # A send that failed in the timer fails the caller's next call, as it would have
        # failed the caller itself without the window.
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def _send_now(self, text: str, now: float) -> None:
        self._send(text)
        self._last_sent = now

    def _flush_held(self) -> None:
        if self._held:
            text = "".join(self._held)
            self._held.clear()
            self._send_now(text, time.monotonic())

    def _flush_when_due(self) -> None:
        self._timer = None
        if self._closed:
            return
        try:
            self._flush_held()
        except Exception as error:
            self._failure = error
