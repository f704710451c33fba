"""Model deployments: fair shares between apps at one deployment, strict priority across apps at a
server that refuses above its capacity, failover when one of two servers dies mid-load, and what
choosing the next answer costs with 1,000 to 100,000 answers waiting.

Answers are submitted through the conversation service (the admission pipeline's last step) to
real workers and housekeeping, against bench/model_server.py processes; waits and latencies come
from the tasks' own timestamps in PostgreSQL."""

import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from bench import harness
from bench.concurrency_bench import model_server as served
from bench.concurrency_bench import model_stats

# One answer: 10 words at 20 words/s, half a second.
WORDS, PACE = 10, 20.0
ANSWER_S = WORDS / PACE
FAST_ENV = {"DEPLOYMENT_COOLDOWN_S": "1", "RECONCILE_GRACE_S": "2"}


@contextmanager
def model_server(capacity: int = 0) -> Iterator[str]:
    with served(tokens=WORDS, tokens_per_s=PACE, stamp=False, capacity=capacity) as (url, proc):
        _servers[url] = proc
        try:
            yield url
        finally:
            _servers.pop(url, None)


_servers: dict[str, Any] = {}


def server_kill(url: str) -> None:
    """Kill a model server at once: its streams are cut mid-answer, its port refuses."""
    _servers[url].kill()
    _servers[url].wait()


@contextmanager
def platform(workers: int = 1) -> Iterator[None]:
    with ExitStack() as stack:
        processes = [harness.start(["manage.py", "scheduler", "--interval", "0.1"], **FAST_ENV)]
        processes += [
            harness.start(
                ["manage.py", "worker", "--name", f"bench-d{i}-{time.time_ns()}"], **FAST_ENV
            )
            for i in range(workers)
        ]
        stack.enter_context(harness.running(*processes))
        time.sleep(2.0)  # registered and taking work
        yield


def deployment(url: str, name: str, capacity: int) -> Any:
    from apps.deployments.services import deployment_create

    return deployment_create(
        name=name, provider="openai", model="bench", base_url=url, max_concurrency=capacity
    )


def app_key(name: str, deployments: list[Any]) -> Any:
    from apps.applications.models import ApiKey
    from apps.applications.services import api_key_create
    from apps.deployments.services import app_create_served

    app = app_create_served(name=name, deployments=deployments, max_tokens=WORDS)
    return ApiKey.objects.select_related("app").get(id=api_key_create(app=app)[0].id)


def submit(api_key: Any, priority: str = "medium") -> Any:
    from apps.conversations.services import Question, answer_submit

    return answer_submit(
        question=Question(
            api_key=api_key,
            route_mode="chat",
            end_user="bench",
            query="q",
            inputs={},
            priority=priority,
            auto_generate_name=False,
        )
    ).task


def finished(tasks: list[Any], timeout_s: float = 300) -> list[Any]:
    from apps.scheduling.models import Task, TaskStatus

    ids = [task.id for task in tasks]

    def done() -> bool:
        return not Task.objects.filter(id__in=ids).exclude(status__in=TaskStatus.FINAL).exists()

    harness.wait_for(done, timeout_s, "the answers")
    return list(Task.objects.filter(id__in=ids))


def waits_s(tasks: list[Any]) -> list[float]:
    return [task.wait_s for task in tasks if task.wait_s is not None]


def fairness(flood_factor: int = 10, quiet: int = 6, capacity: int = 4) -> dict[str, float]:
    """App A floods one deployment with `flood_factor` times its capacity; app B asks `quiet`
    answers at the same priority meanwhile. B's waits against the same B alone."""
    with model_server() as url, platform():
        gpu = deployment(url, "fair-gpu", capacity)
        alone_key = app_key("b-alone", [gpu])
        alone = finished([submit(alone_key) for _ in range(quiet)])
        flood_key, quiet_key = app_key("a-flood", [gpu]), app_key("b-quiet", [gpu])
        flood = [submit(flood_key) for _ in range(flood_factor * capacity)]
        time.sleep(ANSWER_S)  # the flood holds the deployment
        crowded = finished([submit(quiet_key) for _ in range(quiet)])
        finished(flood)
    return {
        "alone_p99_s": harness.percentile(waits_s(alone), 99),
        "flooded_p99_s": harness.percentile(waits_s(crowded), 99),
        "answer_s": ANSWER_S,
        "flood": len(flood),
    }


def priority_at_a_refusing_server(capacity: int = 8, lows: int = 100, highs: int = 5) -> Any:
    """Two apps at one server that serves `capacity` sequences and refuses the rest with 429:
    a low app sends `lows` answers, a high app `highs` a moment later."""
    from apps.scheduling.models import TaskStatus

    with model_server(capacity=capacity) as url, platform():
        shared = deployment(url, "shared-server", capacity)
        low_key, high_key = app_key("low app", [shared]), app_key("high app", [shared])
        low = [submit(low_key, "low") for _ in range(lows)]
        time.sleep(1.0)
        high = finished([submit(high_key, "high") for _ in range(highs)])
        low = finished(low)
        stats = model_stats(url)
    every = [*low, *high]
    return {
        "high_wait_p99_s": harness.percentile(waits_s(high), 99),
        "answer_s": ANSWER_S,
        "refused_by_server": stats.get("refused", 0),
        "failed": sum(task.status != TaskStatus.SUCCEEDED for task in every),
        "answers": len(every),
    }


def failover(rate_per_s: float = 8.0, seconds: float = 10.0, capacity: int = 8) -> Any:
    """Steady load over two deployments; one server is killed a third of the way in. Latency
    (enqueued to finished) against the same load without the kill."""
    from apps.scheduling.models import TaskStatus

    def latencies(tasks: list[Any]) -> list[float]:
        return [
            (task.finished_at - task.enqueued_at).total_seconds()
            for task in tasks
            if task.finished_at and task.enqueued_at
        ]

    def run(kill: bool, tag: str) -> tuple[list[float], int]:
        with model_server() as first, model_server() as second, platform():
            both = [
                deployment(first, f"first-{tag}", capacity),
                deployment(second, f"second-{tag}", capacity),
            ]
            api_key = app_key(f"failover-{tag}", both)
            tasks: list[Any] = []
            started = time.monotonic()
            killed = False
            while time.monotonic() - started < seconds:
                tasks.append(submit(api_key))
                if kill and not killed and time.monotonic() - started > seconds / 3:
                    server_kill(first)
                    killed = True
                time.sleep(1 / rate_per_s)
            done = finished(tasks)
        failed = sum(task.status != TaskStatus.SUCCEEDED for task in done)
        return latencies(done), failed

    calm, calm_failed = run(False, "calm")
    cut, cut_failed = run(True, "cut")
    return {
        "calm_p99_s": harness.percentile(calm, 99),
        "failover_p99_s": harness.percentile(cut, 99),
        "failed": cut_failed + calm_failed,
        "answer_s": ANSWER_S,
    }


def dispatch_cost(waiting: int, apps: int = 100, samples: int = 200) -> float:
    """Median time (ms) of one release that hands the deployment to the next waiter, with
    `waiting` answers of `apps` apps in its lines (Redis alone: the scripts' own cost)."""
    from apps.core.redis import key, sync_client
    from apps.scheduling.coordination.capacity import (
        CallOutcome,
        Route,
        Target,
        capacity_release,
        capacity_submit,
    )

    client = sync_client()
    gpu = Target("cost-gpu", capacity=1)
    routes = [Route(app=f"cost-{n}", share_weight=1, primaries=(gpu,)) for n in range(apps)]
    holder = "holder"
    capacity_submit(task_id=holder, route=routes[0], priority="medium", arrival_s=time.time())
    pipe = client.pipeline(transaction=False)
    for number in range(waiting):
        route = routes[number % apps]
        task_id = f"cost-{number}"
        pipe.zadd(key("cap", "f", route.flow, "medium"), {task_id: number})
        pipe.hset(key("cap", "waiting", "medium"), task_id, route.flow)
        pipe.zadd(key("cap", "d", gpu.name, "ring", "medium"), {route.flow: 0}, nx=True)
        if number % 10_000 == 9_999:
            pipe.execute()
    for route in routes:
        pipe.hset(key("cap", "f", route.flow), mapping={"app": route.app, "weight": 1})
        pipe.hset(key("cap", "f", route.flow), "primaries", gpu.name)
    pipe.execute()
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        taken = capacity_release(task_id=holder, deployment=gpu.name, outcome=CallOutcome.OK)
        timings.append((time.perf_counter() - started) * 1000)
        holder = taken[0][0]
    client.flushdb()
    return statistics.median(timings)
