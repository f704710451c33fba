"""Suggested questions after an answer (apps.generation.suggestions): queued as low-priority work
once the answer is in, made by the app's model, read from its reply whatever shape it took."""

import httpx
import pytest

from apps.conversations.models import Message
from apps.core.priorities import Priority
from apps.generation.suggestions import SUGGESTED_EVENT, questions_parse
from apps.scheduling.models import Task, TaskStatus
from tests.factories import make_app, make_app_with_key
from tests.generation.tasks import events, message_of, run, submit_to
from tests.processes import WebServer, run_worker


@pytest.mark.parametrize(
    ("reply", "questions"),
    [
        ('["Why?", "How?", "When?", "Where?"]', ["Why?", "How?", "When?"]),
        ('Sure! ["What is a fjord?"] Hope it helps.', ["What is a fjord?"]),
        ("1. Is it cold?\n2) Is it wet?\n- is it cold?\n\n", ["Is it cold?", "Is it wet?"]),
        ('"Quoted?"\n* Bulleted?', ["Quoted?", "Bulleted?"]),
        ("", []),
    ],
)
def test_questions_are_read_from_any_reasonable_reply(reply: str, questions: list[str]) -> None:
    assert questions_parse(reply) == questions


@pytest.mark.django_db(transaction=True)
def test_an_answer_queues_suggestions_as_low_priority_work() -> None:
    app = make_app(
        provider_config={"text": '["Is Oslo rainy?", "What to pack?"]'},
        max_tokens=64,
        suggested_questions_after_answer=True,
    )
    answer = run(submit_to(app, "Where does it rain?"))
    message = message_of(answer)
    assert message.suggestions_task is not None
    suggestions = message.suggestions_task
    assert (suggestions.priority, suggestions.status) == (Priority.LOW, TaskStatus.QUEUED)
    # Queued before the client heard the answer was done.
    assert [event["event"] for event in events(answer)][-1] == "message_end"

    suggestions = run(suggestions)

    assert suggestions.status == TaskStatus.SUCCEEDED
    message.refresh_from_db()
    assert message.suggested_questions == ["Is Oslo rainy?", "What to pack?"]
    assert events(suggestions)[-1] == {
        "event": SUGGESTED_EVENT,
        "data": ["Is Oslo rainy?", "What to pack?"],
    }


@pytest.mark.django_db(transaction=True)
def test_apps_without_the_feature_queue_nothing() -> None:
    app = make_app()
    run(submit_to(app, "Where does it rain?"))
    assert not Task.objects.filter(kind="suggested_questions").exists()
    assert Message.objects.get().suggestions_task is None


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_caller_who_waits_does_not_wait_behind_low_priority_work(live_web: WebServer) -> None:
    """The questions after an answer are low-priority work, deferred under load; someone who
    asks for them gets them made urgently, and the low-priority task then asks no model."""
    app, key = make_app_with_key(
        provider_config={"text": '["Is Oslo rainy?"]'},
        max_tokens=64,
        suggested_questions_after_answer=True,
    )
    answer = run(submit_to(app, "Where does it rain?"))
    message = message_of(answer)
    low = message.suggestions_task
    assert low is not None
    assert low.priority == Priority.LOW

    with run_worker("high"):  # nothing takes low work meanwhile
        response = httpx.get(
            f"{live_web.url}/v1/messages/{message.id}/suggested",
            params={"user": "u1"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
    assert response.json() == {"result": "success", "data": ["Is Oslo rainy?"]}
    message.refresh_from_db()
    assert message.suggestions_task_id != low.id
    assert message.suggestions_task is not None
    assert message.suggestions_task.priority == Priority.HIGH

    low = run(low)
    assert (low.status, low.result["saved"]) == (TaskStatus.SUCCEEDED, False)
