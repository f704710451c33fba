"""The answer on its way to the client: pieces from the model, through output moderation when the
app has rules, into the task's event log."""

from apps.generation.events import AnswerPublisher
from apps.generation.moderation import Event, OutputFilter, Rules


class AnswerStream:
    """Publishes the model's pieces as `message` events (or, when moderation redacts something,
    `message_replace` with the whole redacted text so far) and keeps the raw and shown text."""

    def __init__(self, publisher: AnswerPublisher, rules: Rules | None, replacement: str) -> None:
        self.publisher = publisher
        self.filter = OutputFilter(rules, replacement) if rules is not None else None
        self.pieces: list[str] = []

    @property
    def raw(self) -> str:
        """Everything the model said, before moderation."""
        return "".join(self.pieces)

    def feed(self, piece: str) -> None:
        self.pieces.append(piece)
        if self.filter is None:
            self.publisher.text(piece)
            return
        self._publish(self.filter.feed(piece))

    def finish(self) -> str:
        """Send what was held back; returns the answer as the client has it (moderated)."""
        if self.filter is None:
            return self.raw
        self._publish(self.filter.finish())
        return self.filter.shown

    def _publish(self, events: list[Event]) -> None:
        for kind, text in events:
            if kind == "message":
                self.publisher.text(text)
            else:
                self.publisher.replace(text, reason="moderation")
