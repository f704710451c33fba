"""Validators of the App model's fields that need more than a type: moderation rules (read by
apps.generation.moderation) and file extensions."""

import re

from django.core.exceptions import ValidationError

from apps.core.file_formats import FORMATS

MAX_RULES = 200
MAX_RULE_CHARS = 500
# Keywords are held back while the stream could still be spelling one: keep them short.
MAX_KEYWORD_CHARS = 100


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


def extensions_validate(value: str) -> None:
    """App.file_upload_extensions: extensions of formats the platform reads."""
    words = value.replace(",", " ").split()
    unknown = [word for word in words if f".{word.lower().lstrip('.')}" not in FORMATS]
    if unknown:
        raise ValidationError(
            f"{', '.join(unknown)}: not a format the platform reads (it reads "
            f"{' '.join(sorted(FORMATS))})."
        )
