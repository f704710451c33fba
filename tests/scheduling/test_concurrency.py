"""Many tasks at once in one worker process, with real workers, PostgreSQL and Redis: each answer
streams its own tokens, slots free up strictly by priority, and every per-task guarantee (stop,
deadline, retries, cancellation, moderation, per-app provider slots, naming, the event log) holds
for each of several tasks running side by side. Crashes and shutdowns with several tasks running:
kill -9, SIGTERM. And "never twice" when Redis loses everything mid-answer."""

import json
import re
import signal
import threading
from datetime import datetime
from typing import Any

import httpx
import pytest

from apps.applications.models import ApiKey
from apps.conversations.models import Conversation, Message, MessageStatus
from apps.conversations.services import (
    NEW_CONVERSATION_NAME,
    Question,
    answer_stop,
    answer_submit,
)
from apps.core.redis import sync_client
from apps.scheduling.coordination.capacity import waiting_counts
from apps.scheduling.models import Task, TaskEvent, TaskStatus
from apps.scheduling.tasks.services import task_cancel
from apps.streams.log import stream_key
from tests.factories import make_app, make_key
from tests.processes import (
    WebServer,
    model_server_stats,
    run_model_server,
    run_scheduler,
    run_worker,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FAST_RECOVERY = {"TASK_LOCK_TTL_S": "3", "RECONCILE_GRACE_S": "1"}
WORDS = " ".join(f"word{index}" for index in range(40))


def key_for(**app_fields: Any) -> ApiKey:
    app = make_app(**app_fields)
    api_key, _ = make_key(app)
    return ApiKey.objects.select_related("app").get(id=api_key.id)


def scripted(text: str = WORDS, tokens_per_s: float = 10, **config: Any) -> ApiKey:
    return key_for(
        provider_config={"text": text, "tokens_per_s": tokens_per_s, **config}, max_tokens=64
    )


def submit(api_key: ApiKey, priority: str = "medium", **fields: Any) -> Task:
    fields.setdefault("auto_generate_name", False)
    return answer_submit(
        question=Question(
            api_key=api_key,
            route_mode="chat",
            end_user="u1",
            query=fields.pop("query", "hi"),
            inputs={},
            priority=priority,
            **fields,
        )
    ).task


def statuses(tasks: list[Task]) -> list[str]:
    by_id = dict(Task.objects.filter(id__in=[t.id for t in tasks]).values_list("id", "status"))
    return [by_id[task.id] for task in tasks]


def wait_all(tasks: list[Task], status: str, timeout_s: float = 60) -> None:
    wait_until(lambda: set(statuses(tasks)) == {status}, timeout_s, f"all {status}")


def events(task: Task) -> list[dict[str, Any]]:
    entries: Any = sync_client().xrange(stream_key(str(task.id)))
    return [json.loads(fields[b"d"]) for _, fields in entries]


def shown(task: Task) -> str:
    text = ""
    for event in events(task):
        if event["event"] == "message":
            text += event["answer"]
        elif event["event"] == "message_replace":
            text = event["answer"]
    return text


def answer_of(task: Task) -> Message:
    return Message.objects.get(task=task)


def start_times(tasks: list[Task]) -> dict[Any, datetime]:
    rows = Task.objects.filter(id__in=[t.id for t in tasks]).values_list("id", "started_at")
    started = dict(rows)
    assert all(at is not None for at in started.values()), "every task started"
    return {task_id: at for task_id, at in started.items() if at is not None}


def successes(task: Task) -> int:
    return TaskEvent.objects.filter(task=task, to_status=TaskStatus.SUCCEEDED).count()


def test_one_worker_streams_many_answers_at_once_each_its_own() -> None:
    with run_model_server(tokens=20, tokens_per_s=5) as url:  # 4 s an answer
        api_key = key_for(provider="openai", provider_config={"base_url": url}, max_tokens=20)
        with run_worker(concurrency=50):
            tasks = [submit(api_key) for _ in range(30)]
            wait_all(tasks, TaskStatus.SUCCEEDED)
        stats = model_server_stats(url)

    assert stats["most_open"] == 30, "the model server served every answer at once"
    numbers = set()
    for task in tasks:
        answer = answer_of(task).answer
        # The server numbers its answers: each answer holds one request's words, all 20.
        words = re.findall(r"w(\d+)\.(\d+)", answer)
        assert len(words) == 20
        assert len({number for number, _ in words}) == 1
        numbers.add(words[0][0])
        assert shown(task) == answer  # its own event log, nothing of another's
        assert events(task)[-1]["event"] == "message_end"
    assert len(numbers) == 30


def test_slots_that_free_up_go_strictly_by_priority() -> None:
    blocker = scripted(WORDS[:60], tokens_per_s=20)  # about half a second
    quick = scripted("done", tokens_per_s=0)
    with run_worker(concurrency=2):
        running = [submit(blocker, "low") for _ in range(2)]
        wait_all(running, TaskStatus.RUNNING)
        lows = [submit(quick, "low") for _ in range(3)]
        mediums = [submit(quick, "medium") for _ in range(2)]
        highs = [submit(quick, "high") for _ in range(2)]
        everything = [*running, *lows, *mediums, *highs]
        wait_all(everything, TaskStatus.SUCCEEDED)

    started = start_times(everything)
    assert max(started[t.id] for t in highs) <= min(started[t.id] for t in mediums)
    assert max(started[t.id] for t in mediums) <= min(started[t.id] for t in lows)


def test_a_stop_ends_one_task_among_others_within_a_few_words() -> None:
    slow = scripted(tokens_per_s=10)  # 4 s an answer
    with run_worker(concurrency=10):
        stopped = submit(slow)
        others = [submit(slow) for _ in range(3)]
        wait_until(lambda: len(shown(stopped).split()) >= 3, 30, "its first words")
        answer_stop(api_key=slow, task_id=str(stopped.id), end_user="u1")
        wait_until(lambda: statuses([stopped]) == [TaskStatus.SUCCEEDED], 10, "the stop")
        still = statuses(others)
        wait_all(others, TaskStatus.SUCCEEDED)

    kept = answer_of(stopped)
    assert kept.status == MessageStatus.STOPPED
    assert 3 <= len(kept.answer.split()) < 20, "stopped within a few words, the words kept"
    assert WORDS.startswith(kept.answer)
    assert still == [TaskStatus.RUNNING] * 3
    for task in others:
        assert answer_of(task).answer == WORDS


def test_a_deadline_expires_one_running_task_among_others() -> None:
    slow = scripted(tokens_per_s=10)  # 4 s an answer
    with run_worker(concurrency=10):
        expiring = submit(slow, deadline_ms=1500)
        others = [submit(slow) for _ in range(3)]
        wait_until(lambda: statuses([expiring]) == [TaskStatus.EXPIRED], 30, "the expiry")
        still = statuses(others)
        wait_all(others, TaskStatus.SUCCEEDED)

    assert still == [TaskStatus.RUNNING] * 3, "the others kept running past its deadline"
    assert events(expiring)[-1]["code"] == "deadline_exceeded"
    for task in others:
        assert answer_of(task).answer == WORDS


def test_retries_cancellation_and_moderation_hold_for_each_of_many_tasks() -> None:
    flaky = scripted(WORDS[:40], tokens_per_s=20, fail_attempts=1, fail_after_pieces=2)
    steady = scripted(tokens_per_s=10)
    moderated = key_for(
        provider_config={"pieces": ["a secr", "et plan ", "and more"], "tokens_per_s": 5},
        moderation_output_keywords="secret",
        max_tokens=10,
    )
    with run_scheduler(), run_worker(concurrency=20):
        retried = [submit(flaky) for _ in range(4)]
        cancelled = submit(steady)
        kept = [submit(steady) for _ in range(2)]
        redacted = [submit(moderated) for _ in range(3)]
        wait_until(lambda: len(shown(cancelled).split()) >= 2, 30, "the words of the cancelled")
        assert task_cancel(task_id=cancelled.id, actor="tests") == "stopping"
        wait_all(retried, TaskStatus.SUCCEEDED)
        wait_all([cancelled], TaskStatus.CANCELLED)
        wait_all(kept + redacted, TaskStatus.SUCCEEDED)

    for task in retried:
        task.refresh_from_db()
        assert task.attempts == 2
        assert answer_of(task).answer == WORDS[:40] == shown(task)
    assert events(cancelled)[-1]["code"] == "cancelled"
    for task in kept:
        assert answer_of(task).answer == WORDS
    for task in redacted:
        assert "secret" not in answer_of(task).answer
        assert "secret" not in shown(task)
        assert answer_of(task).answer == shown(task)


def test_per_app_provider_slots_serve_in_priority_order_inside_one_worker() -> None:
    with run_model_server(tokens=10, tokens_per_s=20) as url:  # half a second an answer
        api_key = key_for(
            provider="openai",
            provider_config={"base_url": url, "max_concurrency": 1},
            max_tokens=10,
        )
        with run_scheduler(), run_worker(concurrency=20):
            first = submit(api_key, "low")
            wait_until(lambda: statuses([first]) == [TaskStatus.RUNNING], 30, "the first")
            lows = [submit(api_key, "low") for _ in range(2)]
            highs = [submit(api_key, "high") for _ in range(2)]
            everything = [first, *lows, *highs]
            wait_all(everything, TaskStatus.SUCCEEDED)
        stats = model_server_stats(url)

    assert stats["most_open"] == 1, "the app's server never saw two at once"
    started = start_times(everything)
    assert max(started[t.id] for t in highs) <= min(started[t.id] for t in lows)


def test_several_new_conversations_are_each_named() -> None:
    api_key = scripted("Lyon is lovely in spring", tokens_per_s=20)
    with run_worker(concurrency=20):
        tasks = [
            submit(api_key, query=f"Tell me about city {n}", auto_generate_name=True)
            for n in range(4)
        ]
        wait_all(tasks, TaskStatus.SUCCEEDED)
        conversations = [str(answer_of(task).conversation_id) for task in tasks]
        wait_until(
            lambda: (
                not Conversation.objects.filter(
                    id__in=conversations, name=NEW_CONVERSATION_NAME
                ).exists()
            ),
            60,
            "every conversation to be named",
        )
    assert len(set(conversations)) == 4


def test_kill_9_of_a_worker_running_several_tasks_completes_each_once_elsewhere() -> None:
    slow = scripted(tokens_per_s=10)  # 4 s an answer
    with run_scheduler(env=FAST_RECOVERY):
        with run_worker(name="victim", env=FAST_RECOVERY, concurrency=10) as victim:
            tasks = [submit(slow) for _ in range(4)]
            wait_all(tasks, TaskStatus.RUNNING)
            wait_until(lambda: all(shown(t) for t in tasks), 30, "every answer to begin")
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
        with run_worker(name="rescuer", env=FAST_RECOVERY, concurrency=10):
            wait_all(tasks, TaskStatus.SUCCEEDED, timeout_s=90)

    for task in tasks:
        task.refresh_from_db()
        assert task.worker_name == "rescuer"
        assert task.attempts == 2
        assert successes(task) == 1
        assert answer_of(task).answer == WORDS
        assert shown(task) == WORDS  # the client's text taken back, then the whole answer once


def test_sigterm_finishes_short_tasks_and_returns_long_ones_to_their_queue() -> None:
    env = {**FAST_RECOVERY, "WORKER_SHUTDOWN_GRACE_S": "2"}
    quick = scripted(WORDS[:50], tokens_per_s=10)  # about a second
    long = scripted(tokens_per_s=5)  # 8 s
    with run_worker(name="leaving", env=env, concurrency=10) as leaving:
        short_ones = [submit(quick) for _ in range(2)]
        long_ones = [submit(long) for _ in range(2)]
        wait_all(short_ones + long_ones, TaskStatus.RUNNING)
        budgets = {task.id: Task.objects.get(id=task.id).max_attempts for task in long_ones}
        leaving.send_signal(signal.SIGTERM)
        assert leaving.wait(timeout=30) == 0
    assert statuses(short_ones) == [TaskStatus.SUCCEEDED] * 2
    assert statuses(long_ones) == [TaskStatus.QUEUED] * 2
    with run_worker(name="staying", env=env, concurrency=10):
        wait_all(long_ones, TaskStatus.SUCCEEDED)

    for task in short_ones:
        assert Task.objects.get(id=task.id).worker_name == "leaving"
    for task in long_ones:
        task.refresh_from_db()
        assert task.worker_name == "staying"
        assert task.max_attempts == budgets[task.id] + 1, "the returned attempt cost no budget"
        assert TaskEvent.objects.filter(task=task, reason__startswith="returned").count() == 1
        assert answer_of(task).answer == WORDS == shown(task)


def test_redis_flushed_mid_answer_the_model_is_called_once(live_web: WebServer) -> None:
    with run_model_server(tokens=40, tokens_per_s=8) as url:  # 5 s an answer
        app = make_app(provider="openai", provider_config={"base_url": url}, max_tokens=40)
        _, clear_key = make_key(app)
        received: list[dict[str, Any]] = []

        def follow() -> None:
            body = {
                "inputs": {},
                "query": "hi",
                "user": "u1",
                "response_mode": "streaming",
                "auto_generate_name": False,  # the model serves this answer alone
            }
            headers = {"Authorization": f"Bearer {clear_key}"}
            with httpx.stream(
                "POST", f"{live_web.url}/v1/chat-messages", json=body, headers=headers, timeout=60
            ) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        received.append(json.loads(line[6:]))

        with run_scheduler(env=FAST_RECOVERY), run_worker(env=FAST_RECOVERY, concurrency=10):
            client = threading.Thread(target=follow)
            client.start()
            wait_until(lambda: len(received) >= 8, 30, "the first words")
            sync_client().flushdb()
            client.join(timeout=60)
            assert not client.is_alive(), "the client's stream ended"
            task = Task.objects.get(id=received[0]["task_id"])
            wait_all([task], TaskStatus.SUCCEEDED)
        stats = model_server_stats(url)

    assert stats["requests"] == 1, "the model was asked once"
    task.refresh_from_db()
    assert task.attempts == 1
    assert successes(task) == 1
    answer = answer_of(task).answer
    assert len(re.findall(r"w\d+\.\d+", answer)) == 40
    assert received[-1]["event"] == "message_end"
    # The log went with Redis: the worker, taking its lock back, sent the answer so far as one
    # replacement, so the client holds exactly the whole answer whatever it missed.
    assert "message_replace" in [e["event"] for e in received]
    text = ""
    for event in received:
        if event["event"] == "message":
            text += event["answer"]
        elif event["event"] == "message_replace":
            text = event["answer"]
    assert text == answer, "the client holds the whole answer, once"


def test_the_built_in_model_runs_its_sequences_and_leaves_the_rest_waiting() -> None:
    local = key_for(
        provider="local", provider_config={"max_concurrency": 2}, max_tokens=48, temperature=0
    )
    remote = scripted("quick", tokens_per_s=0)
    with run_worker(concurrency=20):
        answers = [submit(local, query=f"Count from 1 to {n + 20}.") for n in range(4)]
        wait_until(lambda: statuses(answers).count(TaskStatus.RUNNING) == 2, 60, "two sequences")
        waiting = [t for t, s in zip(answers, statuses(answers), strict=True) if s != "running"]
        # The model is busy, the worker is not: other work still goes past the waiting answers.
        passing = submit(remote, "low")
        wait_all([passing], TaskStatus.SUCCEEDED, timeout_s=30)
        left_waiting = statuses(waiting)
        queued_jobs = set(sync_client().lrange("rq:queue:medium", 0, -1))
        in_line = waiting_counts()
        wait_all(answers, TaskStatus.SUCCEEDED, timeout_s=120)

    assert left_waiting.count(TaskStatus.QUEUED) >= 1, "an answer waited for a free sequence"
    assert in_line["medium"] >= 1
    for task, status in zip(waiting, left_waiting, strict=True):
        if status == TaskStatus.QUEUED:
            # It waited in its deployment's line, neither in a worker nor on a worker's queue.
            assert str(task.id).encode() not in queued_jobs
    for task in answers:
        assert answer_of(task).answer
