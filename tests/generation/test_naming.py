"""Titling conversations: the `conversation_name` task kind run in this process, with the scripted
provider playing the app's model."""

from typing import Any

import pytest

from apps.applications.models import ApiKey
from apps.conversations.models import Conversation, Message, MessageStatus
from apps.conversations.services import (
    NAMING_KIND,
    NEW_CONVERSATION_NAME,
    Question,
    SubmittedAnswer,
    answer_submit,
    conversation_delete,
    conversation_name_request,
    conversation_rename,
)
from apps.generation.naming import NAMING_MAX_ATTEMPTS, title_clean, title_fallback
from apps.scheduling.models import Task, TaskStatus
from apps.scheduling.runtime.runner import task_execute
from apps.scheduling.tasks.kinds import task_kind_get
from tests.factories import make_app, make_key

pytestmark = pytest.mark.django_db(transaction=True)


def key_for(**app_fields: Any) -> ApiKey:
    api_key, _ = make_key(make_app(**app_fields))
    return ApiKey.objects.select_related("app").get(id=api_key.id)


def ask(api_key: ApiKey, query: str = "What is the capital of France?", **extra: Any) -> Any:
    return answer_submit(
        question=Question(
            api_key=api_key, route_mode="chat", end_user="u1", query=query, inputs={}, **extra
        )
    )


def naming_task(submitted: SubmittedAnswer) -> Task:
    assert submitted.conversation is not None
    return Task.objects.get(
        kind=NAMING_KIND, payload__conversation_id=str(submitted.conversation.id)
    )


def run(task: Task) -> Task:
    task_execute(task_id=str(task.id), worker_name="in-process")
    task.refresh_from_db()
    return task


def name_of(submitted: SubmittedAnswer) -> str:
    assert submitted.conversation is not None
    return Conversation.objects.get(id=submitted.conversation.id).name


def test_the_naming_kind_is_registered() -> None:
    kind = task_kind_get(NAMING_KIND)
    assert kind.max_attempts == NAMING_MAX_ATTEMPTS


def test_a_new_conversation_queues_low_priority_naming_after_its_answer() -> None:
    api_key = key_for(provider_config={"text": "Paris facts for travellers"})
    submitted = ask(api_key)
    # Nothing competes with the first answer: the naming work is queued once it has ended.
    assert not Task.objects.filter(kind=NAMING_KIND).exists()
    run(submitted.task)
    task = naming_task(submitted)

    assert (task.priority, task.requested_priority, task.end_user) == ("low", "low", "u1")
    assert task.app_id == api_key.app_id
    assert name_of(submitted) == NEW_CONVERSATION_NAME

    # Later turns and conversations that opted out queue no naming.
    assert submitted.conversation is not None
    run(ask(api_key, conversation_id=str(submitted.conversation.id)).task)
    run(ask(api_key, auto_generate_name=False).task)
    assert Task.objects.filter(kind=NAMING_KIND).count() == 1


def test_naming_before_the_answer_retries_then_titles_from_the_model() -> None:
    api_key = key_for(provider_config={"text": "Paris facts for travellers"})
    submitted = ask(api_key, auto_generate_name=False)
    assert submitted.conversation is not None
    # Automatic naming that runs before the first answer is in (it may be requeued by an
    # operator, or recovered after a crash) waits for it.
    task = conversation_name_request(conversation=submitted.conversation, requested_priority="low")

    task = run(task)  # the answer is not in yet: nothing waits, so it tries again later
    assert task.status == TaskStatus.RETRYING
    assert name_of(submitted) == NEW_CONVERSATION_NAME

    assert run(submitted.task).status == TaskStatus.SUCCEEDED
    task = run(task)
    assert task.status == TaskStatus.SUCCEEDED
    assert task.attempts == 2
    assert name_of(submitted) == "Paris facts for travellers"
    assert task.result["name"] == "Paris facts for travellers"


def test_naming_does_not_move_the_conversation_up_the_list() -> None:
    submitted = ask(key_for(provider_config={"text": "Short title"}))
    run(submitted.task)
    assert submitted.conversation is not None
    before = Conversation.objects.get(id=submitted.conversation.id).updated_at
    run(naming_task(submitted))
    after = Conversation.objects.get(id=submitted.conversation.id)
    assert (after.name, after.updated_at) == ("Short title", before)


def test_a_name_chosen_by_the_user_is_never_overwritten() -> None:
    submitted = ask(key_for(provider_config={"text": "Model title"}))
    run(submitted.task)
    assert submitted.conversation is not None
    conversation_rename(conversation=submitted.conversation, name="My trip")

    task = run(naming_task(submitted))
    assert task.status == TaskStatus.SUCCEEDED
    assert task.result["named"] is False
    assert name_of(submitted) == "My trip"


def test_empty_model_output_falls_back_to_the_first_question() -> None:
    submitted = ask(key_for(provider_config={"text": ""}), query="  how do I bake sourdough bread?")
    run(submitted.task)
    run(naming_task(submitted))
    assert name_of(submitted) == "how do I bake sourdough bread"


def test_a_failed_first_answer_is_named_from_its_question() -> None:
    submitted = ask(key_for(provider_config={"permanent_error": "refused"}), query="Tides in Oslo")
    assert run(submitted.task).status == TaskStatus.FAILED
    assert Message.objects.get(id=submitted.message.id).status == MessageStatus.ERROR

    assert run(naming_task(submitted)).status == TaskStatus.SUCCEEDED
    assert name_of(submitted) == "Tides in Oslo"


def test_when_naming_gives_up_the_question_names_the_conversation() -> None:
    submitted = ask(key_for(), query="Is the answer ever coming?")
    assert submitted.conversation is not None
    task = conversation_name_request(conversation=submitted.conversation, requested_priority="low")
    Task.objects.filter(id=task.id).update(max_attempts=1)

    assert run(task).status == TaskStatus.DEAD
    assert name_of(submitted) == "Is the answer ever coming"


def test_deleting_a_conversation_cancels_its_unfinished_work() -> None:
    submitted = ask(key_for())
    assert submitted.conversation is not None
    task = conversation_name_request(conversation=submitted.conversation, requested_priority="low")
    conversation_delete(conversation=submitted.conversation)

    assert Task.objects.get(id=task.id).status == TaskStatus.CANCELLED
    assert Task.objects.get(id=submitted.task.id).status == TaskStatus.CANCELLED
    assert not Conversation.objects.filter(id=submitted.conversation.id).exists()
    assert run(task).status == TaskStatus.CANCELLED  # a stray job does nothing


@pytest.mark.parametrize(
    ("raw", "title"),
    [
        ('The title is "The capital of France is Paris."', "The capital of France is Paris"),
        ("Title: Baking Sourdough at Home", "Baking Sourdough at Home"),
        ("the title is: Fjords", "Fjords"),
        ("Titles of Nobility", "Titles of Nobility"),
        ("The Title Card Game", "The Title Card Game"),
        ("**Weekend in Oslo**", "Weekend in Oslo"),
        ("\n\n  Cat jokes  \nmore text", "Cat jokes"),
        (
            "one two three four five six seven eight nine ten",
            "one two three four five six seven eight",
        ),
        ("x" * 80, "x" * 60),
        ("", ""),
        ('""', ""),
    ],
)
def test_title_clean(raw: str, title: str) -> None:
    assert title_clean(raw) == title


def test_title_fallback() -> None:
    assert title_fallback("What is the best way to learn Django quickly?") == (
        "What is the best way to"
    )
    assert title_fallback("   ") == NEW_CONVERSATION_NAME
