"""Answer text sent at most once per window: the first piece at once, then what arrives within
the window as one `message` event.

Every event costs CPU along the whole path: an XADD in the worker, Redis, a frame per follower
in the web process, a parse in each client. A small model on a small machine makes a token every
7 ms or so, and that CPU is taken from the model: measured here, 1 ms of CPU per token costs the
built-in model 12% of its speed. A 20 ms window sends about one event per three tokens at that
rate, and every token still at once when they come slower than the window. A text held in the
window goes out when the window ends, by the flusher thread if the model has gone quiet
(generation runs in llama.cpp's own thread, and the worker only hears from it with each token).
"""

import threading
import time
from collections.abc import Callable


class TextCoalescer:
    def __init__(self, send: Callable[[str], object], window_s: float) -> None:
        self._send = send
        self._window_s = window_s
        self._held: list[str] = []
        self._last_sent = float("-inf")
        # One lock for the buffer and for sending: events go out whole and in order, whichever
        # thread sends them.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._flusher: threading.Thread | None = None
        self._closed = False
        self._failure: Exception | None = None

    def add(self, piece: str) -> None:
        with self._lock:
            self._raise_failure()
            now = time.monotonic()
            if not self._held and now - self._last_sent >= self._window_s:
                self._send_now(piece, now)
                return
            self._held.append(piece)
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_when_due, name="answer-text-flusher", daemon=True
                )
                self._flusher.start()
            else:
                self._wake.notify()

    def flush(self) -> None:
        """Send what is held now (before another kind of event, or at the end)."""
        with self._lock:
            self._raise_failure()
            self._flush_held()

    def close(self) -> None:
        """Stop the flusher, then send what is held: nothing is sent after this returns."""
        with self._lock:
            self._closed = True
            self._wake.notify()
        if self._flusher is not None:
            self._flusher.join()
        with self._lock:
            self._raise_failure()
            self._flush_held()

    def _raise_failure(self) -> None:
        # A send that failed in the flusher fails the caller's next call, as it would have
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
        with self._lock:
            while not self._closed:
                if not self._held:
                    self._wake.wait()
                    continue
                due_in = self._last_sent + self._window_s - time.monotonic()
                if due_in > 0:
                    self._wake.wait(due_in)
                    continue
                try:
                    self._flush_held()
                except Exception as error:
                    self._failure = error
                    return
