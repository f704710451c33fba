"""Per-app moderation: keywords (case-insensitive, anywhere in the text) and regular expressions,
one per line. A question that matches the input rules is answered with the app's preset reply and
never reaches the model; matches in the answer are redacted while it streams, even when a banned
word arrives split over several tokens.
"""

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from django.core.exceptions import ValidationError

if TYPE_CHECKING:  # the App model's fields use this module's validators
    from apps.applications.models import App

MAX_RULES = 200
MAX_RULE_CHARS = 500
# Keywords are held back while the stream could still be spelling one: keep them short.
MAX_KEYWORD_CHARS = 100
# A pattern that can match text of any length (`\d+`) holds back at most this many characters
# of the stream; a longer match is caught when it completes and replaced then.
MAX_PATTERN_HOLD = 64
DEFAULT_INPUT_REPLY = "Sorry, I can't help with that."


def rule_lines(value: str) -> list[str]:
    """The rules in a text box: one per line, blank lines ignored."""
    return [line.strip() for line in (value or "").splitlines() if line.strip()]


def _check_count(lines: list[str], max_chars: int) -> None:
    if len(lines) > MAX_RULES:
        raise ValidationError(f"At most {MAX_RULES} rules (one per line); got {len(lines)}.")
    for number, line in enumerate(lines, start=1):
        if len(line) > max_chars:
            raise ValidationError(f"Rule {number} is longer than {max_chars} characters.")


def keywords_validate(value: str) -> None:
    """Model field validator for keyword lists."""
    _check_count(rule_lines(value), MAX_KEYWORD_CHARS)


def patterns_validate(value: str) -> None:
    """Model field validator for pattern lists: each line must be a valid regular expression
    that cannot match empty text (which would flag or redact everything)."""
    lines = rule_lines(value)
    _check_count(lines, MAX_RULE_CHARS)
    for number, line in enumerate(lines, start=1):
        try:
            pattern = re.compile(line)
        except re.error as error:
            raise ValidationError(
                f"Pattern {number} ({line!r}) is not a valid regular expression: {error}."
            ) from None
        if pattern.search("") is not None:
            raise ValidationError(f"Pattern {number} ({line!r}) matches empty text.")


def _fold(text: str) -> str:
    """Lower case, one character for one (as the regex engine's IGNORECASE compares)."""
    return "".join(c if len(low := c.lower()) != 1 else low for c in text)


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
    """Compiled rules: keywords as one case-insensitive alternation, patterns as written."""

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
        return any(pattern.search(text) for pattern in self._all())

    def spans(self, text: str, start: int = 0) -> list[tuple[int, int]]:
        """Matched (start, end) ranges from `start` on, merged where they overlap or touch."""
        found = sorted(
            (m.start(), m.end())
            for pattern in self._all()
            for m in pattern.finditer(text, start)
            if m.end() > m.start()
        )
        merged: list[tuple[int, int]] = []
        for begin, end in found:
            if merged and begin <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((begin, end))
        return merged

    def open_tail(self, text: str, start: int) -> int:
        """Where the text's unfinished end begins: the earliest position from which a match
        could still be completed by what comes next (len(text) when none could)."""
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
    keywords = sorted({_fold(word) for word in rule_lines(keywords_text)}, key=len, reverse=True)
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


def input_refusal(*, app: "App", query: str, inputs: dict[str, Any]) -> str | None:
    """The app's preset reply when the question or an input matches its input rules."""
    rules = rules_compile(app.moderation_input_keywords, app.moderation_input_patterns)
    if rules is None:
        return None
    # Each text on its own: a match never spans two inputs.
    texts = [query, *(value for value in inputs.values() if isinstance(value, str))]
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


Event = tuple[Literal["message", "message_replace"], str]


class OutputFilter:
    """Redacts an answer while it streams.

    Text is released as soon as no rule could still match across its end: only the tail that
    could begin a match is held back (for keywords, exactly the characters that are a keyword's
    beginning; for patterns, their longest match). A release that redacts something is sent as
    `message_replace` with the whole redacted text so far; anything else as a `message` piece.
    """

    def __init__(self, rules: Rules, replacement: str) -> None:
        self.rules = rules
        self.replacement = replacement
        self.raw = ""
        self.released = 0  # characters of `raw` already shown (redacted) to the client
        self.shown = ""  # what the client shows: the redacted text of raw[:released]

    def feed(self, piece: str) -> list[Event]:
        self.raw += piece
        return self._release(self.rules.open_tail(self.raw, self.released))

    def finish(self) -> list[Event]:
        """Release the held tail; make sure the client ends with the answer fully redacted."""
        events = self._release(len(self.raw))
        final = self.text()
        if final != self.shown:
            self.shown = final
            events.append(("message_replace", final))
        return events

    def text(self) -> str:
        """The whole answer so far, redacted."""
        return redact(self.raw, self.rules.spans(self.raw), self.replacement)

    def _release(self, cut: int) -> list[Event]:
        if cut <= self.released:
            return []
        spans = self.rules.spans(self.raw, self.released)
        for begin, end in spans:
            if begin < cut < end:
                cut = begin  # never release part of a match
        spans = [(begin, end) for begin, end in spans if end <= cut]
        if cut <= self.released:
            return []
        fresh = redact(self.raw[self.released : cut], spans, self.replacement, self.released)
        self.released = cut
        self.shown += fresh
        if spans:
            return [("message_replace", self.shown)]
        return [("message", fresh)]
