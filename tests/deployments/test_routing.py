"""Deployments end to end: real workers and housekeeping, model servers on loopback that serve a
set number of sequences and refuse the rest with 429 (bench/model_server.py), killed mid-stream
when a test needs it. Priority and fair shares hold at a server that apps share; no upstream 429
reaches a client; an answer cut off mid-stream continues on another deployment and reaches the
client whole, once; fallbacks serve while the primaries are down; a deployment that cooled down
is probed back; a prompt goes to a deployment whose context window fits; a key goes only to its
own server."""

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any

import pytest

from apps.applications.models import ApiKey, App
from apps.conversations.models import Message
from apps.conversations.services import Question, answer_submit
from apps.core.redis import sync_client
from apps.deployments.models import Deployment
from apps.scheduling.coordination.capacity import deployment_load
from apps.scheduling.models import Task, TaskEvent, TaskStatus
from apps.streams.log import stream_key
from tests.factories import make_app, make_deployment, make_key
from tests.processes import (
    ROOT,
    free_port,
    model_server_kill,
    model_server_stats,
    process_env,
    run_model_server,
    run_scheduler,
    run_worker,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Cooldowns short enough for a test, the failure rule as deployed.
FAST = {"DEPLOYMENT_COOLDOWN_S": "0.5", "DEPLOYMENT_COOLDOWN_MAX_S": "2"}


def server_deployment(url: str, name: str, capacity: int, **fields: Any) -> Deployment:
    return make_deployment(
        provider="openai", base_url=url, name=name, max_concurrency=capacity, **fields
    )


def key_of(app: App) -> ApiKey:
    api_key, _ = make_key(app)
    return ApiKey.objects.select_related("app").get(id=api_key.id)


def submit(api_key: ApiKey, priority: str = "medium", query: str = "hi") -> Task:
    return answer_submit(
        question=Question(
            api_key=api_key,
            route_mode="chat",
            end_user="u1",
            query=query,
            inputs={},
            priority=priority,
            auto_generate_name=False,
        )
    ).task


def statuses(tasks: list[Task]) -> list[str]:
    by_id = dict(Task.objects.filter(id__in=[t.id for t in tasks]).values_list("id", "status"))
    return [by_id[task.id] for task in tasks]


def wait_all(tasks: list[Task], timeout_s: float = 90) -> None:
    wait_until(
        lambda: set(statuses(tasks)) <= set(TaskStatus.FINAL), timeout_s, "every task to end"
    )
    assert set(statuses(tasks)) == {TaskStatus.SUCCEEDED}, statuses(tasks)


def started(tasks: list[Task]) -> dict[Any, datetime]:
    rows = Task.objects.filter(id__in=[t.id for t in tasks]).values_list("id", "started_at")
    return {task_id: at for task_id, at in rows if at is not None}


def shown(task: Task) -> str:
    """What a client following the task's stream holds at the end."""
    text = ""
    entries: Any = sync_client().xrange(stream_key(str(task.id)))
    for _, fields in entries:
        event = json.loads(fields[b"d"])
        if event["event"] == "message":
            text += event["answer"]
        elif event["event"] == "message_replace":
            text = event["answer"]
    return text


def errors(task: Task) -> list[dict[str, Any]]:
    entries: Any = sync_client().xrange(stream_key(str(task.id)))
    events = [json.loads(fields[b"d"]) for _, fields in entries]
    return [event for event in events if event["event"] == "error"]


@contextmanager
def platform(workers: int = 1, env: dict[str, str] | None = None) -> Iterator[None]:
    env = {**FAST, **(env or {})}
    with ExitStack() as stack:
        stack.enter_context(run_scheduler(env=env))
        for _ in range(workers):
            stack.enter_context(run_worker(env=env, concurrency=100))
        yield


def test_priority_holds_across_apps_at_a_server_they_share_and_no_429_reaches_anyone() -> None:
    with run_model_server(tokens=10, tokens_per_s=20, capacity=4) as url:  # 0.5 s an answer
        shared = server_deployment(url, "shared", capacity=4)
        low_app = key_of(make_app(name="batchy", deployments=[shared], max_tokens=10))
        high_app = key_of(make_app(name="live", deployments=[shared], max_tokens=10))
        with platform():
            lows = [submit(low_app, "low") for _ in range(24)]
            wait_until(lambda: TaskStatus.RUNNING in statuses(lows), 30, "the lows to start")
            highs = [submit(high_app, "high") for _ in range(3)]
            wait_all([*lows, *highs])
        stats = model_server_stats(url)

    assert stats["refused"] == 0, "the server was never asked for more than it serves"
    assert stats["most_open"] <= 4
    when = started([*lows, *highs])
    # Each high answer started before every low one still waiting when it came.
    high_start = max(when[t.id] for t in highs)
    later_lows = [t for t in lows if when[t.id] > high_start]
    assert len(later_lows) >= 12, "the highs went ahead of the backlog"
    for task in [*lows, *highs]:
        assert not errors(task)


def test_one_apps_flood_does_not_stall_another_at_the_same_priority() -> None:
    with run_model_server(tokens=6, tokens_per_s=30) as url:  # 0.2 s an answer
        gpu = server_deployment(url, "gpu", capacity=2)
        flood_key = key_of(make_app(name="flood", deployments=[gpu], max_tokens=6))
        quiet_key = key_of(make_app(name="quiet", deployments=[gpu], max_tokens=6))
        with platform():
            flood = [submit(flood_key) for _ in range(30)]
            wait_until(lambda: TaskStatus.RUNNING in statuses(flood), 30, "the flood to start")
            quiet = [submit(quiet_key) for _ in range(3)]
            wait_all([*flood, *quiet])

    when = started([*flood, *quiet])
    order = sorted([*flood, *quiet], key=lambda t: when[t.id])
    positions = [order.index(t) for t in quiet]
    # Taking turns with the flood, the quiet app's three answers start within its next few
    # turns, not after the 30 answers ahead of them.
    assert max(positions) <= 12, positions


def test_an_answer_cut_mid_stream_continues_on_another_deployment_whole_once() -> None:
    with (
        run_model_server(tokens=30, tokens_per_s=15) as first,  # 2 s an answer
        run_model_server(tokens=30, tokens_per_s=15) as second,
    ):
        app = make_app(
            name="two-servers",
            deployments=[
                server_deployment(first, "first", capacity=4),
                server_deployment(second, "second", capacity=4),
            ],
            max_tokens=30,
        )
        api_key = key_of(app)
        with platform():
            tasks = [submit(api_key) for _ in range(6)]
            wait_until(lambda: all(shown(t) for t in tasks), 30, "every answer to begin")
            model_server_kill(first)
            wait_all(tasks)
            stats = model_server_stats(second)

    assert deployment_load("first").state in ("open", "half")
    moved = [t for t in tasks if Task.objects.get(id=t.id).attempts == 2]
    assert moved, "the answers on the killed server moved"
    assert stats["requests"] >= 3 + len(moved)
    for task in tasks:
        answer = Message.objects.get(task=task).answer
        assert len(re.findall(r"w\d+\.\d+", answer)) == 30
        assert len({n for n, _ in re.findall(r"w(\d+)\.(\d+)", answer)}) == 1, "one answer"
        assert shown(task) == answer, "the client holds the whole answer, once"
        assert not errors(task)
    for task in moved:
        reasons = list(TaskEvent.objects.filter(task=task).values_list("reason", "detail"))
        assert any("first" in str(detail) for _, detail in reasons), reasons


def test_fallbacks_serve_while_every_primary_is_down() -> None:
    port = free_port()
    with run_model_server(tokens=4, tokens_per_s=0) as spare:
        primary = server_deployment(f"http://127.0.0.1:{port}/v1", "down", capacity=4)
        app = make_app(
            name="with-fallback",
            deployments=[primary],
            fallbacks=[server_deployment(spare, "spare", capacity=4)],
            max_tokens=4,
        )
        api_key = key_of(app)
        with platform():
            tasks = [submit(api_key) for _ in range(6)]
            wait_all(tasks)
        served = model_server_stats(spare)["requests"]

    assert served == 6, "every answer came from the fallback"
    assert deployment_load("down").state in ("open", "half")
    for task in tasks:
        assert Message.objects.get(task=task).model_name == "model"


def test_a_deployment_that_cooled_down_is_probed_back_when_its_server_returns() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    app = make_app(
        name="comes-back", deployments=[server_deployment(url, "flaky", 4)], max_attempts=10
    )
    api_key = key_of(app)
    with platform():
        first = submit(api_key)
        wait_until(lambda: deployment_load("flaky").cooldowns >= 1, 30, "a cooldown")
        with run_model_server(tokens=4, tokens_per_s=0, port=port):
            wait_all([first], timeout_s=60)
            again = [submit(api_key) for _ in range(3)]
            wait_all(again)
    assert deployment_load("flaky").state == "closed"


def test_a_refusing_server_cools_down_for_its_retry_after_and_every_answer_arrives() -> None:
    with run_model_server(tokens=6, tokens_per_s=30, capacity=1, retry_after_s=1) as url:
        # The deployment claims more than the server serves: the server says so with 429s.
        app = make_app(name="overclaimed", deployments=[server_deployment(url, "over", 4)])
        api_key = key_of(app)
        with platform():
            tasks = [submit(api_key) for _ in range(6)]
            wait_all(tasks)
        stats = model_server_stats(url)

    assert stats["refused"] >= 1
    assert deployment_load("over").cooldowns >= 1
    for task in tasks:
        assert not errors(task), "no 429 reached a client"
        assert Task.objects.get(id=task.id).attempts == 1, "a refusal spent no attempt"


def test_a_prompt_goes_to_a_deployment_whose_window_fits() -> None:
    with (
        run_model_server(tokens=4, tokens_per_s=0) as small,
        run_model_server(tokens=4, tokens_per_s=0) as large,
    ):
        app = make_app(
            name="windows",
            deployments=[
                server_deployment(small, "small-window", 4, context_window=64),
                server_deployment(large, "large-window", 4, context_window=8000),
            ],
            max_tokens=4,
        )
        api_key = key_of(app)
        with platform():
            long_question = submit(api_key, query="Tell me about this. " * 40)
            short = [submit(api_key, query="hi") for _ in range(4)]
            wait_all([long_question, *short])
        large_served = model_server_stats(large)["requests"]

    assert large_served >= 1
    task = Task.objects.get(id=long_question.id)
    assert task.payload["min_context"] > 64
    assert Message.objects.get(task=task).answer


def test_a_prompt_no_deployment_can_hold_is_refused_clearly() -> None:
    app = make_app(name="tiny", context_window=32, provider_config={"text": "never"})
    with platform():
        task = submit(key_of(app), query="Tell me about this. " * 40)
        wait_until(lambda: statuses([task]) == [TaskStatus.FAILED], 30, "the refusal")
    (error,) = errors(task)
    assert (error["status"], error["code"]) == (400, "completion_request_error")
    assert "context window" in error["message"]


def test_each_key_goes_only_to_its_own_server(monkeypatch: pytest.MonkeyPatch) -> None:
    with (
        run_model_server(tokens=3, tokens_per_s=0) as one,
        run_model_server(tokens=3, tokens_per_s=0) as two,
    ):
        app = make_app(
            name="two-keys",
            deployments=[
                server_deployment(one, "one", 2, api_key="sk-for-server-one"),
                server_deployment(two, "two", 2, api_key="sk-for-server-two"),
            ],
            max_tokens=3,
        )
        api_key = key_of(app)
        with platform():
            wait_all([submit(api_key) for _ in range(8)])
        seen = {url: model_server_stats(url)["authorizations"] for url in (one, two)}

    assert seen == {one: ["Bearer sk-for-server-one"], two: ["Bearer sk-for-server-two"]}


def test_the_built_in_model_is_one_deployment_served_by_one_process_of_the_host() -> None:
    """As `make run` runs it: the pool starts the host's model server, every worker calls it,
    and no worker holds a model of its own."""
    port = free_port()
    builtin = make_deployment(
        provider="local",
        name="builtin-of-this-host",
        base_url=f"http://127.0.0.1:{port}/v1",
        max_concurrency=2,
    )
    app = make_app(name="smol", deployments=[builtin], max_tokens=8, temperature=0)
    api_key = key_of(app)
    env = process_env(**FAST)
    pool = subprocess.Popen(
        [sys.executable, "manage.py", "run_workers", "-n", "2"], cwd=ROOT, env=env
    )
    try:
        tasks = [submit(api_key, query=f"Count to {n}.") for n in range(6)]
        peak = 0

        def done() -> bool:
            nonlocal peak
            peak = max(peak, deployment_load(builtin.name).in_flight)
            return set(statuses(tasks)) <= set(TaskStatus.FINAL)

        wait_until(done, 120, "the answers")
        assert set(statuses(tasks)) == {TaskStatus.SUCCEEDED}
        servers = subprocess.run(
            ["pgrep", "-f", "manage.py model_servers", "-P", str(pool.pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
    finally:
        pool.terminate()
        pool.wait(timeout=60)
    assert len(servers) == 1, "one model server for the host"
    assert peak <= 2, "never more sequences at once than the deployment serves"
    for task in tasks:
        assert Message.objects.get(task=task).answer
