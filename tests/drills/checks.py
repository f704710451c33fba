"""What must hold after every drill, read straight from PostgreSQL with SQL (the drill that
restarts PostgreSQL reads its own server this way too): every accepted task reached a final
state, none succeeded twice or was finished by an attempt that no longer owned it, and each
successful answer is complete."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.drills.clients import StreamResult
from tests.waiting import wait_until

FINAL = ("succeeded", "failed", "cancelled", "expired", "dead")

_TASKS = """
SELECT t.id::text, t.status, t.attempts, m.answer,
  (SELECT count(*) FROM scheduling_taskevent e
    WHERE e.task_id = t.id AND e.to_status = 'running') AS runs,
  (SELECT count(*) FROM scheduling_taskevent e
    WHERE e.task_id = t.id AND e.to_status = 'succeeded') AS successes,
  (SELECT e.worker_name FROM scheduling_taskevent e
    WHERE e.task_id = t.id AND e.to_status = 'running' ORDER BY e.at DESC, e.id DESC LIMIT 1)
    AS last_runner,
  (SELECT e.worker_name FROM scheduling_taskevent e
    WHERE e.task_id = t.id AND e.to_status = 'succeeded' LIMIT 1) AS finisher
FROM scheduling_task t LEFT JOIN conversations_message m ON m.task_id = t.id
WHERE t.id::text = ANY(%s)
"""

Cursor = Any  # a DB-API cursor: Django's or psycopg's


@dataclass(frozen=True)
class TaskOutcome:
    id: str
    status: str
    attempts: int
    answer: str | None
    runs: int
    successes: int
    last_runner: str | None
    finisher: str | None


def outcomes(cursor: Cursor, task_ids: list[str]) -> dict[str, TaskOutcome]:
    cursor.execute(_TASKS, [task_ids])
    return {row[0]: TaskOutcome(*row) for row in cursor.fetchall()}


def wait_final(
    cursor_factory: Callable[[], Any], task_ids: list[str], timeout_s: float
) -> dict[str, TaskOutcome]:
    """Wait until every task is in a final state; fails naming the ones that are not."""
    found: dict[str, TaskOutcome] = {}

    def final() -> dict[str, TaskOutcome] | None:
        nonlocal found
        with cursor_factory() as cursor:
            found = outcomes(cursor, task_ids)
        every = len(found) == len(task_ids) and all(o.status in FINAL for o in found.values())
        return found if every else None

    try:
        return wait_until(final, timeout_s, "every task to end")
    except AssertionError:
        missing = sorted(set(task_ids) - set(found))
        stuck = {o.id: (o.status, o.attempts) for o in found.values() if o.status not in FINAL}
        raise AssertionError(
            f"not final after {timeout_s} s: missing {missing}, stuck {stuck}"
        ) from None


def assert_exactly_once(found: dict[str, TaskOutcome], expected_text: dict[str, str]) -> None:
    """Each task succeeded once, by the attempt that last started it, with the whole answer;
    every attempt is accounted for (one `running` event per attempt)."""
    problems = []
    for task_id, outcome in found.items():
        if outcome.status != "succeeded":
            problems.append(f"{task_id}: {outcome.status}")
            continue
        if outcome.successes != 1:
            problems.append(f"{task_id}: succeeded {outcome.successes} times")
        if outcome.runs != outcome.attempts:
            problems.append(f"{task_id}: {outcome.runs} runs for {outcome.attempts} attempts")
        if outcome.finisher != outcome.last_runner:
            problems.append(
                f"{task_id}: finished by {outcome.finisher} while {outcome.last_runner} ran it"
            )
        if outcome.answer != expected_text[task_id]:
            problems.append(f"{task_id}: answer {outcome.answer!r}")
    assert not problems, "; ".join(problems)


def assert_stream_complete(result: StreamResult, expected: str) -> None:
    """The client got the whole answer once: no event twice, in order, ending with message_end."""
    assert result.done.wait(60), f"stream of {result.task_id} did not end"
    assert not result.error, result.error
    assert result.ended == "message_end", result.kinds[-3:]
    assert result.text == expected, f"{result.task_id}: {result.text!r}"
    assert len(set(result.event_ids)) == len(result.event_ids)
    as_pairs = [tuple(int(part) for part in event_id.split("-")) for event_id in result.event_ids]
    assert as_pairs == sorted(as_pairs)
