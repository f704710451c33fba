"""Moderation per app: a question that matches the input rules gets the preset reply without the
model; banned words in an answer are redacted while it streams, even split over tokens."""

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from apps.generation.moderation import (
    DEFAULT_INPUT_REPLY,
    OutputFilter,
    output_rules,
    rules_compile,
)
from apps.scheduling.models import TaskStatus
from tests.factories import make_app
from tests.generation.tasks import events, message_of, run, shown_answer, submit, submit_to

pytestmark = pytest.mark.django_db(transaction=True)


def texts(task: Any) -> list[tuple[str, str | None]]:
    return [(event["event"], event.get("answer")) for event in events(task)]


def submit_secret_split_over_tokens() -> Any:
    """An answer whose banned word ("SecretWord") comes in three pieces."""
    pieces = ["The ", "password ", "is ", "sec", "ret", "word", ", keep ", "it ", "safe."]
    return submit(
        "What is the password?",
        provider_config={"pieces": pieces},
        max_tokens=50,
        moderation_output_keywords="SecretWord",
    )


def test_a_banned_word_split_over_tokens_is_redacted_in_the_stream() -> None:
    task = run(submit_secret_split_over_tokens())

    assert task.status == TaskStatus.SUCCEEDED
    assert texts(task) == [
        ("message", "The "),
        # "password" is held back only while it could still become "secretword" ("s"...).
        ("message", "password "),
        ("message", "is "),
        ("message_replace", "The password is ***"),
        ("message", ", keep "),
        ("message", "it "),
        ("message", "safe."),
        ("message_end", None),
    ]
    replace = events(task)[3]
    assert replace["reason"] == "moderation"
    assert {"task_id", "message_id", "conversation_id"} <= set(replace)
    message = message_of(task)
    assert message.answer == shown_answer(task) == "The password is ***, keep it safe."


def test_patterns_are_redacted_with_the_apps_replacement() -> None:
    pieces = ["Call ", "555", "-", "12", "34", " today", " or ", "write."]
    task = run(
        submit(
            provider_config={"pieces": pieces},
            max_tokens=50,
            moderation_output_patterns=r"\b\d{3}-\d{4}\b",
            moderation_output_replacement="[number removed]",
        )
    )

    assert message_of(task).answer == "Call [number removed] today or write."
    assert shown_answer(task) == message_of(task).answer
    replaced = [e for e in events(task) if e["event"] == "message_replace"]
    assert [e["answer"] for e in replaced] == ["Call [number removed] "]
    assert all("555" not in (e.get("answer") or "") for e in events(task))


def test_text_without_banned_words_streams_piece_by_piece() -> None:
    pieces = ["Hello", " there", ", how", " are", " you", " today?"]
    task = run(
        submit(
            provider_config={"pieces": pieces},
            max_tokens=50,
            moderation_output_keywords="secretword\nforbidden",
        )
    )

    assert texts(task)[:-1] == [("message", piece) for piece in pieces]


def test_a_matching_question_gets_the_preset_reply_without_calling_the_model() -> None:
    # The scripted model fails every call: a successful answer proves it was never called.
    app = make_app(
        provider_config={"permanent_error": "the model must not be called"},
        moderation_input_keywords="forbidden topic",
        moderation_input_reply="I can't discuss that here.",
    )
    task = run(submit_to(app, "Tell me about the FORBIDDEN Topic please"))

    assert task.status == TaskStatus.SUCCEEDED
    assert texts(task) == [("message", "I can't discuss that here."), ("message_end", None)]
    message = message_of(task)
    assert message.answer == "I can't discuss that here."
    assert (message.prompt_tokens, message.completion_tokens) == (0, 0)
    assert task.result["finish_reason"] == "moderated"


def test_inputs_are_moderated_too_and_a_blank_reply_has_a_default() -> None:
    app = make_app(
        provider_config={"permanent_error": "the model must not be called"},
        system_prompt="Topic: {{topic}}",
        user_input_form=[{"text-input": {"label": "Topic", "variable": "topic"}}],
        moderation_input_patterns=r"(?i)\bpass(word)?s?\b",
    )
    task = run(submit_to(app, "Explain it", inputs={"topic": "Stolen passwords"}))

    assert task.status == TaskStatus.SUCCEEDED
    assert message_of(task).answer == DEFAULT_INPUT_REPLY


def test_an_innocent_question_reaches_the_model() -> None:
    app = make_app(provider_config={"text": "Sure."}, moderation_input_keywords="forbidden")
    task = run(submit_to(app, "A fine question"))
    assert message_of(task).answer == "Sure."


def test_a_retry_takes_back_a_redacted_partial_answer() -> None:
    pieces = ["My ", "secretword ", "is ", "out."]
    task = submit(
        provider_config={"pieces": pieces, "fail_attempts": 1, "fail_after_pieces": 2},
        max_tokens=50,
        moderation_output_keywords="secretword",
    )
    assert run(task).status == TaskStatus.RETRYING
    # The failed attempt's last event is a replacement that left text on the client's screen.
    assert texts(task) == [("message", "My "), ("message_replace", "My *** ")]

    task = run(task)
    assert task.status == TaskStatus.SUCCEEDED
    assert texts(task)[2] == ("message_replace", "")
    assert shown_answer(task) == message_of(task).answer == "My *** is out."


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("moderation_input_patterns", "ok\n(unclosed", "Pattern 2"),
        ("moderation_output_patterns", "[a-", "not a valid regular expression"),
        ("moderation_output_patterns", "x*", "matches empty text"),
        ("moderation_output_keywords", "a" * 101, "longer than 100"),
        ("moderation_input_keywords", "\n".join(f"w{i}" for i in range(201)), "At most 200"),
    ],
)
def test_invalid_rules_are_refused_when_the_app_is_saved(
    field: str, value: str, error: str
) -> None:
    app = make_app()
    setattr(app, field, value)
    with pytest.raises(ValidationError) as refused:
        app.full_clean()
    assert field in refused.value.message_dict
    assert error in " ".join(refused.value.message_dict[field])


def test_valid_rules_pass_the_models_clean_and_are_the_rules_applied() -> None:
    app = make_app()
    app.moderation_output_patterns = "\\bsk-[A-Za-z0-9]{20,}\n(?i)card number"
    app.moderation_output_keywords = "one\n\n  two words  \n"
    app.full_clean()
    # The lines as saved are the rules: blank lines dropped, the spaces around a keyword too.
    rules = output_rules(app)
    assert rules is not None
    output = OutputFilter(rules, "#")
    output.feed("One key sk-" + "a" * 24 + ", a Card Number, two words; but twowords stay.")
    output.finish()
    assert output.text() == "# key #, a #, #; but twowords stay."


def test_the_filter_never_shows_a_keyword_whatever_the_split() -> None:
    text = "a SecretWord, then secretwords and SECRETWORD; secret word stays."
    rules = rules_compile("secretword", "")
    assert rules is not None
    for size in range(1, 12):
        output = OutputFilter(rules, "#")
        shown = ""
        for start in range(0, len(text), size):
            for kind, part in output.feed(text[start : start + size]):
                shown = part if kind == "message_replace" else shown + part
                assert "secretword" not in shown.lower()
        for kind, part in output.finish():
            shown = part if kind == "message_replace" else shown + part
        assert shown == "a #, then #s and #; secret word stays."


def test_an_unbounded_pattern_is_still_redacted_in_the_end() -> None:
    rules = rules_compile("", r"\d+")
    assert rules is not None
    output = OutputFilter(rules, "N")
    shown = ""
    for piece in ["id ", "1" * 40, "2" * 40, " ok"]:
        for kind, part in output.feed(piece):
            shown = part if kind == "message_replace" else shown + part
    for kind, part in output.finish():
        shown = part if kind == "message_replace" else shown + part
    assert shown == output.text() == "id N ok"
