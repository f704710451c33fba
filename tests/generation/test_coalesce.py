"""Answer text within the coalescing window goes out as one `message` event: the first piece at
once, later ones no more than a window late (even while the model is quiet), in order, whole,
and nothing after the attempt ends."""

import asyncio
import json
import time
from typing import Any

import pytest

from apps.core.redis import sync_client
from apps.generation.coalesce import TextCoalescer
from apps.scheduling.models import TaskStatus
from apps.streams.log import stream_key
from tests.factories import make_app
from tests.generation.tasks import run, shown_answer, submit_to
from tests.generation.test_moderation import submit_secret_split_over_tokens

WINDOW_S = 0.05


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []

    def __call__(self, text: str) -> None:
        self.sent.append((time.monotonic(), text))

    @property
    def texts(self) -> list[str]:
        return [text for _, text in self.sent]


def test_the_first_piece_goes_at_once_and_the_rest_within_a_window() -> None:
    async def scenario() -> None:
        sink = Sink()
        coalescer = TextCoalescer(sink, WINDOW_S)
        started = time.monotonic()
        coalescer.add("a")
        assert sink.texts == ["a"], "the first piece is not held"
        coalescer.add("b")
        coalescer.add("c")
        assert sink.texts == ["a"]
        # The model goes quiet: the held text still goes out when the window ends.
        await asyncio.sleep(WINDOW_S * 4)
        assert sink.texts == ["a", "bc"]
        assert sink.sent[1][0] - started < WINDOW_S * 3
        # Slower than the window: each piece goes at once.
        coalescer.add("d")
        assert sink.texts == ["a", "bc", "d"]
        coalescer.add("e")
        coalescer.close()
        assert sink.texts == ["a", "bc", "d", "e"]
        await asyncio.sleep(WINDOW_S * 2)
        assert sink.texts == ["a", "bc", "d", "e"], "nothing is sent after close"

    asyncio.run(scenario())


def test_a_send_that_fails_in_the_timer_fails_the_next_call() -> None:
    def failing(text: str) -> None:
        if text != "first":
            raise ConnectionError("redis went away")

    async def scenario() -> None:
        coalescer = TextCoalescer(failing, WINDOW_S)
        coalescer.add("first")
        coalescer.add("held")
        await asyncio.sleep(WINDOW_S * 3)
        with pytest.raises(ConnectionError):
            coalescer.add("next")

    asyncio.run(scenario())


def test_pieces_from_many_answers_on_one_loop_arrive_whole_and_in_order() -> None:
    """A worker runs many answers on one event loop, each with its own window."""

    async def scenario() -> None:
        sinks = [Sink() for _ in range(3)]
        coalescers = [TextCoalescer(sink, 0.002) for sink in sinks]
        added: list[list[str]] = [[], [], []]

        async def writer(n: int) -> None:
            for i in range(200):
                piece = f"{n}.{i} "
                added[n].append(piece)
                coalescers[n].add(piece)
                if i % 7 == 0:
                    await asyncio.sleep(0.001)

        await asyncio.gather(*(writer(n) for n in range(3)))
        for n in range(3):
            coalescers[n].close()
            assert "".join(sinks[n].texts) == "".join(added[n])

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_fast_answer_comes_in_fewer_events_and_held_text_goes_out_while_the_model_stalls(
    settings: Any,
) -> None:
    settings.PLATFORM = {**settings.PLATFORM, "STREAM_COALESCE_MS": WINDOW_S * 1000}
    pieces = [f"w{i} " for i in range(10)]
    app = make_app(
        provider_config={"pieces": pieces, "stall_s": 0.6, "stall_after_pieces": 5},
        max_tokens=50,
    )
    task = run(submit_to(app, "Go"))

    assert task.status == TaskStatus.SUCCEEDED
    logged = _logged(task)
    messages = [(at_ms, event) for at_ms, event in logged if event["event"] == "message"]
    assert messages[0][1]["answer"] == "w0 "
    assert "".join(event["answer"] for _, event in messages) == "".join(pieces)
    assert len(messages) < len(pieces)
    assert logged[-1][1]["event"] == "message_end"
    # w1..w4 came just before the 0.6 s stall: they went out within the window, not after it.
    held_at_ms = next(at_ms for at_ms, event in messages if "w4 " in event["answer"])
    assert held_at_ms - messages[0][0] < 400, "held text waited for the model to speak again"


def _logged(task: Any) -> list[tuple[int, dict[str, Any]]]:
    """The task's events with the time each was logged (ms, from its stream id)."""
    entries: Any = sync_client().xrange(stream_key(str(task.id)))
    return [
        (int(raw_id.decode().split("-")[0]), json.loads(fields[b"d"])) for raw_id, fields in entries
    ]


@pytest.mark.django_db(transaction=True)
def test_moderation_still_redacts_a_word_split_over_coalesced_pieces(
    settings: Any,
) -> None:
    settings.PLATFORM = {**settings.PLATFORM, "STREAM_COALESCE_MS": WINDOW_S * 1000}
    task = run(submit_secret_split_over_tokens())
    assert task.status == TaskStatus.SUCCEEDED
    assert shown_answer(task) == "The password is ***, keep it safe."
