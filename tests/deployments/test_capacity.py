"""Deployment capacity on the real Redis (apps.scheduling.coordination.capacity): who gets the
model next. Strictly by priority, then fair shares between apps by weight, first come first
served within an app; capacity kept for `high`; refusals and failures cool a deployment down
(Retry-After honoured), a half-open probe brings it back; fallbacks take over while every
primary is down; bulk work leaves live work its sequences."""

import itertools
import time
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from apps.core.redis import sync_client
from apps.scheduling.coordination.capacity import (
    CallOutcome,
    Route,
    Target,
    capacity_dispatch_all,
    capacity_forget,
    capacity_move,
    capacity_release,
    capacity_submit,
    deployment_load,
    grant_of,
    waiting_counts,
)
from apps.scheduling.coordination.queues import job_save_in
from tests.gateway.test_input_layer import redis_commands
from tests.waiting import wait_until

_numbers = itertools.count()


def route(app: str, *targets: Target, weight: int = 1, **fields: object) -> Route:
    return Route(app=app, share_weight=weight, primaries=targets, **fields)  # type: ignore[arg-type]


def submit(r: Route, priority: str = "medium", task_id: str | None = None) -> str:
    task_id = task_id or f"task-{next(_numbers)}"
    pipe = sync_client().pipeline()
    job_save_in(pipe, task_id=task_id, priority=priority, time_left_s=None)
    pipe.execute()
    capacity_submit(task_id=task_id, route=r, priority=priority, arrival_s=time.time())
    return task_id


def held(tasks: list[str]) -> list[str]:
    return [task for task in tasks if grant_of(task) is not None]


def serve_in_turn(deployment: str, running: list[str], count: int) -> list[str]:
    """Finish the running tasks one at a time, `count` times: which task each frees for."""
    order = []
    for _ in range(count):
        finished = running.pop(0)
        taken = capacity_release(task_id=finished, deployment=deployment, outcome=CallOutcome.OK)
        assert len(taken) == 1, taken
        order.append(taken[0][0])
        running.append(taken[0][0])
    return order


def test_a_deployment_serves_at_most_its_capacity_and_the_rest_wait() -> None:
    gpu = Target("gpu", capacity=2)
    tasks = [submit(route("a", gpu)) for _ in range(5)]
    assert held(tasks) == tasks[:2]
    assert waiting_counts()["medium"] == 3
    # The two it took are on their queue, for any worker; the others are in no queue.
    assert sync_client().lrange("rq:queue:medium", 0, -1) == [t.encode() for t in tasks[:2]]


def test_within_one_priority_apps_share_by_turns_and_each_keeps_its_order() -> None:
    gpu = Target("gpu", capacity=1)
    flood = [submit(route("flood", gpu)) for _ in range(10)]
    later = [submit(route("later", gpu)) for _ in range(3)]
    order = serve_in_turn("gpu", [flood[0]], 6)
    # After the first of the flood, the apps alternate: the late app is not behind the flood.
    assert order == [later[0], flood[1], later[1], flood[2], later[2], flood[3]]


def test_an_app_of_weight_two_gets_twice_the_turns() -> None:
    gpu = Target("gpu", capacity=1)
    heavy = [submit(route("heavy", gpu, weight=2)) for _ in range(12)]
    light = [submit(route("light", gpu)) for _ in range(12)]
    order = serve_in_turn("gpu", [heavy[0]], 12)
    assert sum(task in heavy for task in order) == 8  # two of every three turns
    assert sum(task in light for task in order) == 4


def test_priority_is_strict_across_apps() -> None:
    gpu = Target("gpu", capacity=1)
    first = submit(route("low-app", gpu), "low")
    lows = [submit(route("low-app", gpu), "low") for _ in range(3)]
    mediums = [submit(route("other", gpu), "medium") for _ in range(2)]
    highs = [submit(route("third", gpu), "high") for _ in range(2)]
    order = serve_in_turn("gpu", [first], 7)
    assert order == [*highs, *mediums, *lows]


def test_capacity_kept_for_high_is_never_taken_by_lower_work() -> None:
    gpu = Target("gpu", capacity=3, reserved_for_high=1)
    lows = [submit(route("batchy", gpu), "low") for _ in range(5)]
    assert held(lows) == lows[:2]
    high = submit(route("chat", gpu), "high")
    assert grant_of(high) is not None, "a high answer starts at once, waiting for nobody"


def test_a_waiting_task_moves_to_another_priority_in_its_place() -> None:
    gpu = Target("gpu", capacity=1)
    busy = submit(route("a", gpu), "low")
    waiting = [submit(route("a", gpu), "low") for _ in range(3)]
    assert capacity_move(task_id=waiting[2], priority="high")
    assert serve_in_turn("gpu", [busy], 1) == [waiting[2]]


def test_a_cancelled_waiter_leaves_its_line_and_a_held_one_frees_its_place() -> None:
    gpu = Target("gpu", capacity=1)
    holder = submit(route("a", gpu))
    gone, kept = submit(route("a", gpu)), submit(route("a", gpu))
    capacity_forget(task_id=gone)
    # The holder had not started: forgetting it hands its place to the next in line.
    taken = capacity_forget(task_id=holder)
    assert taken == [(kept, "gpu")]


def quick(**values: float) -> Any:
    platform = {
        **settings.PLATFORM,
        "DEPLOYMENT_COOLDOWN_S": 0.3,
        "DEPLOYMENT_COOLDOWN_MAX_S": 2.0,
        **values,
    }
    return override_settings(PLATFORM=platform)


def test_a_refusal_cools_the_deployment_down_for_its_retry_after_then_one_probe() -> None:
    gpu = Target("gpu", capacity=4)
    with quick():
        refused = submit(route("a", gpu))
        capacity_release(
            task_id=refused,
            deployment="gpu",
            outcome=CallOutcome.REFUSED,
            retry_after_s=1.0,
            reason="429",
        )
        load = deployment_load("gpu")
        assert load.state == "open"
        assert 0.5 < load.cooldown_left_s <= 1.0  # Retry-After, not the shorter default
        assert load.recent_failures[0][1] == "429"
        waiting = [submit(route("a", gpu)) for _ in range(3)]
        assert held(waiting) == [], "nothing goes to a deployment cooling down"
        wait_until(lambda: capacity_dispatch_all(), 3, "the cooldown to end")
        assert held(waiting) == waiting[:1], "half open: one probe"
        assert deployment_load("gpu").state == "half"
        taken = capacity_release(task_id=waiting[0], deployment="gpu", outcome=CallOutcome.OK)
        assert sorted(task for task, _ in taken) == sorted(waiting[1:])
        assert deployment_load("gpu").state == "closed"


def test_a_failed_probe_cools_it_down_longer() -> None:
    gpu = Target("gpu", capacity=2)
    with quick():
        probe = submit(route("a", gpu))
        capacity_release(task_id=probe, deployment="gpu", outcome=CallOutcome.REFUSED)
        probe = submit(route("a", gpu))
        wait_until(lambda: grant_of(probe) or capacity_dispatch_all(), 3, "the probe")
        capacity_release(task_id=probe, deployment="gpu", outcome=CallOutcome.FAILED)
        assert deployment_load("gpu").cooldown_left_s > 0.35  # doubled


def test_failures_cool_it_down_only_when_most_calls_fail() -> None:
    gpu = Target("gpu", capacity=10)
    with quick(DEPLOYMENT_FAILURES_TO_COOL=3):
        for outcome in [CallOutcome.OK] * 4 + [CallOutcome.FAILED] * 3:
            task = submit(route("a", gpu))
            capacity_release(task_id=task, deployment="gpu", outcome=outcome)
        assert deployment_load("gpu").state == "closed", "3 failures of 7 calls: still serving"
        task = submit(route("a", gpu))
        capacity_release(task_id=task, deployment="gpu", outcome=CallOutcome.FAILED)
        assert deployment_load("gpu").state == "open", "4 of 8: cooled down"


def test_fallbacks_serve_while_every_primary_is_down_and_primaries_again_after() -> None:
    main, spare = Target("main", capacity=1), Target("spare", capacity=4)
    app = route("a", main, fallbacks=(spare,))
    with quick(DEPLOYMENT_COOLDOWN_S=60):
        busy = submit(app)
        waiting = [submit(app) for _ in range(2)]
        assert grant_of(busy) == ("main", app.flow)
        assert held(waiting) == []
        # Main refuses: its waiters move to the fallback at once.
        taken = capacity_release(task_id=busy, deployment="main", outcome=CallOutcome.REFUSED)
        assert sorted(taken) == sorted((task, "spare") for task in waiting)
        assert grant_of(submit(app)) is not None, "new work goes to the fallback too"
    sync_client().delete(*sync_client().keys("dp-test:cap:d:main:health"))
    assert grant_of(submit(app)) == ("main", app.flow), "main serves again once healthy"


def test_the_least_busy_primary_takes_a_new_answer() -> None:
    big, small = Target("big", capacity=8), Target("small", capacity=2)
    app = route("a", big, small)
    granted = [grant_of(submit(app)) for _ in range(10)]
    by_deployment = [deployment for deployment, _ in granted if deployment]  # type: ignore[misc]
    assert by_deployment.count("big") == 8
    assert by_deployment.count("small") == 2


def test_bulk_work_leaves_live_work_a_sequence() -> None:
    gpu = Target("gpu", capacity=3, bulk_reserve=1)
    bulk = [submit(route("batch", gpu, bulk=True), "low") for _ in range(4)]
    assert len(held(bulk)) == 2
    live = submit(route("chat", gpu), "low")
    assert grant_of(live) is not None


def test_requests_per_minute_are_held_to_the_limit() -> None:
    gpu = Target("gpu", capacity=10, rpm_limit=3)
    tasks = [submit(route("a", gpu)) for _ in range(5)]
    assert len(held(tasks)) == 3
    for task in held(tasks):
        capacity_release(task_id=task, deployment="gpu", outcome=CallOutcome.OK)
    assert len(held(tasks)) == 0, "room, but the minute's requests are spent"


@pytest.mark.parametrize("waiting", [1_000, 20_000])
def test_the_cost_of_choosing_the_next_answer_does_not_grow_with_those_waiting(
    waiting: int,
) -> None:
    """The commands one dispatch runs (watched with MONITOR) are as many whether 1,000 or 20,000
    answers of 100 apps wait; the time it takes is measured in bench/ (capacity)."""
    gpu = Target("gpu", capacity=1)
    apps = [route(f"app-{n}", gpu) for n in range(100)]
    first = submit(apps[0])
    client = sync_client()
    pipe = client.pipeline(transaction=False)
    for number in range(waiting):
        r = apps[number % 100]
        task_id = f"w-{number}"
        pipe.zadd(f"dp-test:cap:f:{r.flow}:medium", {task_id: number})
        pipe.hset("dp-test:cap:waiting:medium", task_id, r.flow)
        pipe.zadd("dp-test:cap:d:gpu:ring:medium", {r.flow: 0}, nx=True)
        if number % 5000 == 4999:
            pipe.execute()
    for r in apps:
        pipe.hset(f"dp-test:cap:f:{r.flow}", mapping={"app": r.app, "weight": 1})
    pipe.execute()
    with redis_commands() as commands:
        taken = capacity_release(task_id=first, deployment="gpu", outcome=CallOutcome.OK)
    assert len(taken) == 1
    scripted = [command for command in commands if not command.startswith(("PING", "EVALSHA"))]
    assert len(scripted) < 80, f"{len(scripted)} commands for one dispatch with {waiting} waiting"
