"""Files in the prompt (apps.generation.prompts): a document that fits goes in whole before the
question, one that does not is cut to the room there is and says so, the question's files come
before older turns, images travel as parts and count against the window."""

import pytest

from apps.conversations.models import Conversation, Message, MessageStatus
from apps.generation.attachments import Attachments, Document
from apps.generation.prompts import CUT_NOTE, Prompt, PromptTooLong, prompt_build
from apps.providers.base import ImagePart
from apps.providers.scripted import ScriptedProvider
from apps.providers.tokens import IMAGE_TOKENS
from tests.factories import make_app

pytestmark = pytest.mark.django_db

PROVIDER = ScriptedProvider({})
FJORDS = "Fjords are long, narrow inlets with steep sides, made by glaciers. " * 4


def asked(context_window: int, attachments: Attachments, turns: int = 0) -> Prompt:
    app = make_app(context_window=context_window, max_tokens=32, system_prompt="Be brief.")
    conversation = Conversation.objects.create(app=app, end_user="u1")
    for number in range(turns):
        Message.objects.create(
            app=app,
            conversation=conversation,
            end_user="u1",
            query=f"Earlier question {number}?",
            answer=f"Earlier answer {number}.",
            status=MessageStatus.NORMAL,
        )
    message = Message.objects.create(
        app=app, conversation=conversation, end_user="u1", query="What is a fjord?"
    )
    return prompt_build(
        app=app,
        message=message,
        count=PROVIDER.count_prompt_tokens,
        context_tokens=context_window,
        attachments=attachments,
    )


def test_a_document_that_fits_goes_in_whole_before_the_question() -> None:
    prompt = asked(2048, Attachments(documents=(Document("fjords.md", FJORDS, False),)))
    question = prompt.messages[-1]
    assert question.role == "user"
    assert '<file name="fjords.md">\n' + FJORDS in question.content
    assert question.content.endswith("</file>\n\nWhat is a fjord?")
    assert CUT_NOTE not in question.content


def test_a_document_too_long_is_cut_to_the_window_and_says_so() -> None:
    long_text = FJORDS * 200
    prompt = asked(600, Attachments(documents=(Document("book.txt", long_text, False),)))
    question = prompt.messages[-1].content
    assert CUT_NOTE in question
    assert question.endswith("What is a fjord?")
    assert FJORDS[:40] in question
    assert prompt.prompt_tokens + prompt.max_tokens <= 600
    assert prompt.prompt_tokens > 450  # the room is used, not wasted


def test_the_questions_files_come_before_older_turns() -> None:
    document = Document("fjords.md", FJORDS * 3, False)
    prompt = asked(600, Attachments(documents=(document,)), turns=30)
    assert FJORDS * 3 in prompt.messages[-1].content
    assert prompt.history_dropped > 0


def test_images_travel_as_parts_and_count() -> None:
    image = ImagePart(url="data:image/png;base64,iVBORw0KGgo=", detail="high")
    without = asked(2048, Attachments())
    prompt = asked(2048, Attachments(images=(image, image)))
    assert prompt.messages[-1].images == (image, image)
    assert prompt.prompt_tokens - without.prompt_tokens == 2 * IMAGE_TOKENS["high"]


def test_images_that_leave_no_room_are_refused() -> None:
    image = ImagePart(url="data:image/png;base64,iVBORw0KGgo=", detail="high")
    with pytest.raises(PromptTooLong):
        asked(600, Attachments(images=(image,)))
