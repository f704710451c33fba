"""The answer on its way to the client: pieces from the model, through output moderation when the
app has rules, into the task's event log."""

from apps.dify.events import AnswerEvent, ReplaceReason
from apps.generation.coalesce import TextCoalescer
from apps.generation.moderation import Event, OutputFilter, Rules
from apps.generation.publishing import AnswerPublisher


class AnswerStream:
    """Publishes the model's pieces as `message` events (or, when moderation redacts something,
    `message_replace` with the whole redacted text so far) and keeps the raw and shown text.

    With a window (`window_s` > 0), text that comes within it of the last `message` event is
    sent with the next one (apps.generation.coalesce). `close()` must follow, whatever happens.
    """

    def __init__(
        self,
        publisher: AnswerPublisher,
        rules: Rules | None,
        replacement: str,
        window_s: float = 0.0,
    ) -> None:
        self.publisher = publisher
        self.filter = OutputFilter(rules, replacement) if rules is not None else None
        self.pieces: list[str] = []
        self.coalescer = TextCoalescer(publisher.text, window_s) if window_s > 0 else None

    @property
    def raw(self) -> str:
        """Everything the model said, before moderation."""
        return "".join(self.pieces)

    def feed(self, piece: str) -> None:
        self.pieces.append(piece)
        if self.filter is None:
            self._text(piece)
            return
        self._publish(self.filter.feed(piece))

    def finish(self) -> str:
        """Send what was held back; returns the answer as the client has it (moderated)."""
        if self.filter is not None:
            self._publish(self.filter.finish())
        self.close()
        return self.raw if self.filter is None else self.filter.shown

    def close(self) -> None:
        """Send any text held in the window; nothing is sent after this."""
        if self.coalescer is not None:
            self.coalescer.close()

    def _text(self, text: str) -> None:
        if self.coalescer is not None:
            self.coalescer.add(text)
        else:
            self.publisher.text(text)

    def _publish(self, events: list[Event]) -> None:
        for kind, text in events:
            if kind == AnswerEvent.MESSAGE:
                self._text(text)
            else:
                if self.coalescer is not None:
                    self.coalescer.flush()
                self.publisher.replace(text, reason=ReplaceReason.MODERATION)
