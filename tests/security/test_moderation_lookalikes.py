"""Moderation rules hold against look-alike spellings (zero-width and format characters,
fullwidth and other compatibility forms, odd whitespace) on input and output, while the saved
and shown text stays what was written."""

from typing import Any

import pytest

from apps.generation.moderation import OutputFilter, rules_compile
from apps.scheduling.models import TaskStatus
from tests.generation.tasks import message_of, run, shown_answer, submit

pytestmark = pytest.mark.django_db(transaction=True)

LOOK_ALIKES = [
    "forb\u200bidden please",  # zero-width space
    "\uff46orbidden please",  # fullwidth f
    "\uff26\uff2f\uff32\uff22\uff29\uff24\uff24\uff25\uff2e",  # all fullwidth, upper case
    "for\u00adbidden",  # soft hyphen
    "a bad\u00a0word here",  # no-break space between the words
    "a bad \u2003\t word here",  # a run of mixed whitespace
]


@pytest.mark.parametrize("query", LOOK_ALIKES)
def test_input_rules_match_look_alike_spellings(query: str) -> None:
    task = run(
        submit(
            query,
            provider_config={"permanent_error": "the model must not be called"},
            moderation_input_keywords="forbidden\nbad word",
            moderation_input_reply="Not here.",
        )
    )
    assert task.status == TaskStatus.SUCCEEDED
    message = message_of(task)
    assert message.answer == "Not here."
    assert message.query == query  # kept as written


def test_output_rules_redact_look_alikes_and_keep_the_rest_as_written() -> None:
    pieces = ["Say ", "forb", "\u200bid", "den ", "or ", "\uff42ad\u00a0", "word, caf\u00e9."]
    task = run(
        submit(
            provider_config={"pieces": pieces},
            max_tokens=50,
            moderation_output_keywords="forbidden\nbad word",
            moderation_output_replacement="#",
        )
    )
    assert task.status == TaskStatus.SUCCEEDED
    assert message_of(task).answer == shown_answer(task) == "Say # or #, caf\u00e9."


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (r"\d{4}", "pin \uff11\uff12\uff13\uff14 ok", "pin N ok"),  # fullwidth digits
        (r"(?i)secret\s+code", "the SECRET\u00a0\u00a0code is", "the N is"),
    ],
)
def test_patterns_see_the_comparable_form(pattern: str, text: str, expected: str) -> None:
    rules = rules_compile("", pattern)
    assert rules is not None
    output = OutputFilter(rules, "N")
    events: list[Any] = []
    for char in text:  # one character per piece: the hardest split
        events += output.feed(char)
    events += output.finish()
    shown = ""
    for kind, piece in events:
        shown = shown + piece if kind == "message" else piece
    assert shown == output.text() == expected


def test_keywords_written_with_look_alikes_match_plain_text() -> None:
    rules = rules_compile("\uff46orbidden", "")
    assert rules is not None
    assert rules.matches("this is forbidden")
    assert not rules.matches("this is fine")
