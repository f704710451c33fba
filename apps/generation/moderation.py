"""Per-app moderation: keywords (case-insensitive, anywhere in the text) and regular expressions,
one per line, both matched against the text's comparable form (look-alikes folded, see
`Comparable`). A question that matches the input rules is answered with the app's preset reply and
never reaches the model; matches in the answer are redacted while it streams, even when a banned
word arrives split over several tokens.
"""

import bisect
import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from apps.applications.validators import rule_lines
from apps.dify.events import AnswerEvent

if TYPE_CHECKING:
    from apps.applications.models import App

# A pattern that can match text of any length (`\d+`) holds back at most this many characters
# of the stream; a longer match is caught when it completes and replaced then.
MAX_PATTERN_HOLD = 64
DEFAULT_INPUT_REPLY = "Sorry, I can't help with that."


def _fold(text: str) -> str:
    """Lower case, one character for one (as the regex engine's IGNORECASE compares)."""
    return "".join(c if len(low := c.lower()) != 1 else low for c in text)


class Comparable:
    """Text as the rules compare it, built piece by piece, with where each character came from.

    Look-alikes must not slip past a rule: each character is taken in its compatibility form
    (NFKC: a fullwidth U+FF46 is `f`, a ligature its letters), format characters (zero-width space
    and joiners, soft hyphen, bidi marks) are dropped, and every run of whitespace (a no-break
    space, a tab, a line break) is one space. The saved and shown text stays as written: matches
    are found here and mapped back through `origin` (the raw index of each comparable character).
    """

    __slots__ = ("_in_space", "_parts", "_text", "origin", "raw_length")

    def __init__(self, text: str = "") -> None:
        self._parts: list[str] = []
        self._text = ""
        self.origin: list[int] = []
        self.raw_length = 0
        self._in_space = False
        if text:
            self.extend(text)

    @property
    def text(self) -> str:
        if self._parts:
            self._text += "".join(self._parts)
            self._parts.clear()
        return self._text

    def extend(self, piece: str) -> None:
        index = self.raw_length
        parts, origin = self._parts, self.origin
        for char in piece:
            if char.isspace():
                if not self._in_space:
                    parts.append(" ")
                    origin.append(index)
                    self._in_space = True
            elif char.isascii():
                parts.append(char)
                origin.append(index)
                self._in_space = False
            elif unicodedata.category(char) != "Cf":
                for folded in unicodedata.normalize("NFKC", char):
                    parts.append(folded)
                    origin.append(index)
                self._in_space = False
            index += 1
        self.raw_length = index

    def to_raw(self, position: int) -> int:
        """The raw index where comparable `position` begins (the raw end past the last)."""
        return self.origin[position] if position < len(self.origin) else self.raw_length

    def from_raw(self, raw_position: int) -> int:
        """The first comparable position at or after raw `raw_position`."""
        return bisect.bisect_left(self.origin, raw_position)

    def raw_span(self, begin: int, end: int) -> tuple[int, int]:
        return self.origin[begin], self.origin[end - 1] + 1


def comparable_form(text: str) -> str:
    """A rule as written, in the form the text is compared in."""
    return Comparable(text).text


def _max_width(pattern: re.Pattern[str]) -> int:
    """The longest text the pattern can match, capped (from the regex parser's own analysis)."""
    try:
        from re import _parser  # type: ignore[attr-defined]

        width = int(_parser.parse(pattern.pattern, pattern.flags).getwidth()[1])
    except Exception:  # an internal API: if it moves, hold back the most
        return MAX_PATTERN_HOLD
    return min(width, MAX_PATTERN_HOLD)


@dataclass(frozen=True)
class Rules:
    """Compiled rules: keywords as one case-insensitive alternation, patterns as written, both
    matched against the comparable form of the text (see `Comparable`)."""

    keywords: re.Pattern[str] | None
    patterns: tuple[re.Pattern[str], ...]
    # Every proper prefix of a keyword (folded): text ending in one may still become a match.
    keyword_prefixes: frozenset[str]
    keyword_initials: frozenset[str]
    longest_keyword: int
    pattern_hold: int

    def _all(self) -> list[re.Pattern[str]]:
        return [p for p in (self.keywords, *self.patterns) if p is not None]

    def matches(self, text: str) -> bool:
        folded = Comparable(text).text
        return any(pattern.search(folded) for pattern in self._all())

    def spans(self, text: str, start: int = 0) -> list[tuple[int, int]]:
        """Matched (start, end) ranges of the raw text from `start` on, merged where they
        overlap or touch."""
        view = Comparable(text)
        return [view.raw_span(b, e) for b, e in self.comparable_spans(view, view.from_raw(start))]

    def comparable_spans(self, view: Comparable, start: int = 0) -> list[tuple[int, int]]:
        """Matched ranges of the comparable text from comparable `start` on, merged."""
        folded = view.text
        found = sorted(
            (m.start(), m.end())
            for pattern in self._all()
            for m in pattern.finditer(folded, start)
            if m.end() > m.start()
        )
        merged: list[tuple[int, int]] = []
        for begin, end in found:
            if merged and begin <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((begin, end))
        return merged

    def open_tail(self, view: Comparable, start: int) -> int:
        """Where the comparable text's unfinished end begins: the earliest position from which a
        match could still be completed by what comes next (its length when none could)."""
        text = view.text
        end = len(text)
        cut = end - self.pattern_hold if self.patterns else end
        if self.keywords is not None:
            for position in range(max(start, end - self.longest_keyword + 1), end):
                if (
                    _fold(text[position]) in self.keyword_initials
                    and _fold(text[position:end]) in self.keyword_prefixes
                ):
                    cut = min(cut, position)
                    break
        return max(start, cut)


@functools.lru_cache(maxsize=256)
def rules_compile(keywords_text: str, patterns_text: str) -> Rules | None:
    """The rules of an app's two text boxes, or None when both are empty."""
    keywords = sorted(
        {_fold(comparable_form(word)) for word in rule_lines(keywords_text)} - {"", " "},
        key=len,
        reverse=True,
    )
    patterns = tuple(re.compile(line) for line in rule_lines(patterns_text))
    if not keywords and not patterns:
        return None
    alternation = "|".join(re.escape(word) for word in keywords)
    return Rules(
        keywords=re.compile(alternation, re.IGNORECASE) if keywords else None,
        patterns=patterns,
        keyword_prefixes=frozenset(
            word[:size] for word in keywords for size in range(1, len(word))
        ),
        keyword_initials=frozenset(word[0] for word in keywords),
        longest_keyword=max((len(word) for word in keywords), default=0),
        # One more than the longest match: a lookahead such as \b reads the next character.
        pattern_hold=max((_max_width(pattern) + 1 for pattern in patterns), default=0),
    )


def input_refusal(
    *,
    app: "App",
    query: str,
    inputs: dict[str, Any],
    history: list[dict[str, Any]] | None = None,
) -> str | None:
    """The app's preset reply when the question, an input, or any turn the client sent (a
    stateless request's `history`: its system turns too) matches the app's input rules."""
    rules = rules_compile(app.moderation_input_keywords, app.moderation_input_patterns)
    if rules is None:
        return None
    # Each text on its own: a match never spans two inputs or two turns.
    texts = [
        query,
        *(value for value in inputs.values() if isinstance(value, str)),
        *(str(turn.get("content") or "") for turn in history or ()),
    ]
    if not any(rules.matches(text) for text in texts):
        return None
    return app.moderation_input_reply.strip() or DEFAULT_INPUT_REPLY


def output_rules(app: "App") -> Rules | None:
    return rules_compile(app.moderation_output_keywords, app.moderation_output_patterns)


def redact(text: str, spans: list[tuple[int, int]], replacement: str, offset: int = 0) -> str:
    """`text` (which starts at `offset` in the whole answer) with each span replaced."""
    parts: list[str] = []
    position = 0
    for begin, end in spans:
        parts.append(text[position : begin - offset])
        parts.append(replacement)
        position = end - offset
    parts.append(text[position:])
    return "".join(parts)


Event = tuple[Literal[AnswerEvent.MESSAGE, AnswerEvent.MESSAGE_REPLACE], str]


class OutputFilter:
    """Redacts an answer while it streams.

    Text is released as soon as no rule could still match across its end: only the tail that
    could begin a match is held back (for keywords, exactly the characters that are a keyword's
    beginning; for patterns, their longest match). A release that redacts something is sent as
    `message_replace` with the whole redacted text so far; anything else as a `message` piece.
    The comparable form of the answer is built as it streams, so each piece costs its own length.
    """

    def __init__(self, rules: Rules, replacement: str) -> None:
        self.rules = rules
        self.replacement = replacement
        self.raw = ""
        self.view = Comparable()
        self.released = 0  # characters of `raw` already shown (redacted) to the client
        self.shown = ""  # what the client shows: the redacted text of raw[:released]

    def feed(self, piece: str) -> list[Event]:
        self.raw += piece
        self.view.extend(piece)
        tail = self.rules.open_tail(self.view, self.view.from_raw(self.released))
        return self._release(self.view.to_raw(tail))

    def finish(self) -> list[Event]:
        """Release the held tail; make sure the client ends with the answer fully redacted."""
        events = self._release(len(self.raw))
        final = self.text()
        if final != self.shown:
            self.shown = final
            events.append((AnswerEvent.MESSAGE_REPLACE, final))
        return events

    def text(self) -> str:
        """The whole answer so far, redacted."""
        spans = [self.view.raw_span(b, e) for b, e in self.rules.comparable_spans(self.view)]
        return redact(self.raw, spans, self.replacement)

    def _release(self, cut: int) -> list[Event]:
        if cut <= self.released:
            return []
        view = self.view
        spans = [
            view.raw_span(b, e)
            for b, e in self.rules.comparable_spans(view, view.from_raw(self.released))
        ]
        for begin, end in spans:
            if begin < cut < end:
                cut = begin  # never release part of a match
        spans = [(begin, end) for begin, end in spans if end <= cut and begin >= self.released]
        if cut <= self.released:
            return []
        fresh = redact(self.raw[self.released : cut], spans, self.replacement, self.released)
        self.released = cut
        self.shown += fresh
        if spans:
            return [(AnswerEvent.MESSAGE_REPLACE, self.shown)]
        return [(AnswerEvent.MESSAGE, fresh)]
