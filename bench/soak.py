"""Soak run through the multi-process setup (nginx, 2 daphne, 2 workers), on loopback only:

    python -m bench.soak --minutes 5 --rate 20

A steady rate of requests for a bounded time, with a mix of priorities, blocking and streaming
answers, ~5% of tasks failing their first attempt (retried), ~2% failing for good, and a worker
killed with SIGKILL every `--kill-every` seconds. Then it waits for every accepted task to end
and reports: requests served, errors by kind, tasks lost (must be 0), duplicates (must be 0),
and the memory (RSS) of every part at the start and the end. JSON in bench/results/soak.json.

Its own database (dify_platform_soak) and Redis database (6); nothing outside this machine.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dify_platform_soak")
os.environ.setdefault("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")

import httpx

from bench import harness

RESULTS = harness.ROOT / "bench" / "results" / "soak.json"
PRIORITIES = (("high", 0.2), ("medium", 0.5), ("low", 0.3))
TEXT = "steady answers keep arriving one after another"
# Recovery as configured for production, except the lock TTL: a killed worker's task is taken
# over after 5 s rather than 15 s, so a 5-minute run sees several recoveries end.
SOAK_ENV = {"TASK_LOCK_TTL_S": "5", "RECONCILE_GRACE_S": "5", "SHED_ENABLED": "true"}


@dataclass
class Outcome:
    app: str
    mode: str
    priority: str
    status: int | None = None
    error: str = ""
    task_id: str = ""
    latency_s: float = 0.0


@dataclass
class Apps:
    keys: dict[str, str] = field(default_factory=dict)

    def pick(self, rng: random.Random) -> str:
        roll = rng.random()
        if roll < 0.05:
            return "flaky"
        if roll < 0.07:
            return "broken"
        return "steady"


def make_apps() -> Apps:
    from bench.harness import app_key

    configs = {
        "steady": {"text": TEXT},
        "flaky": {"text": TEXT, "fail_attempts": 1},
        "broken": {"permanent_error": "the provider refuses this request"},
    }
    apps = Apps()
    for name, config in configs.items():
        apps.keys[name] = app_key(name=f"soak-{name}", mode="chat", provider_config=config)
    return apps


# A request still unanswered this long after it was sent is counted as such (a stream stays open
# with pings while its task waits, so the client needs its own limit).
REQUEST_LIMIT_S = 150.0


async def one_request(client: httpx.AsyncClient, apps: Apps, rng: random.Random) -> Outcome:
    app = apps.pick(rng)
    priority = rng.choices([p for p, _ in PRIORITIES], [w for _, w in PRIORITIES])[0]
    mode = "streaming" if rng.random() < 0.4 else "blocking"
    outcome = Outcome(app=app, mode=mode, priority=priority)
    body = {
        "inputs": {},
        "query": "soak",
        "user": f"user-{rng.randrange(50)}",
        "response_mode": mode,
        "priority": priority,
        "auto_generate_name": False,
    }
    headers = {"Authorization": f"Bearer {apps.keys[app]}"}
    started = time.monotonic()
    try:
        async with asyncio.timeout(REQUEST_LIMIT_S):
            await _send(client, body, headers, outcome)
    except TimeoutError:
        outcome.error = f"no answer within {REQUEST_LIMIT_S:g} s"
    except httpx.HTTPError as error:
        outcome.error = f"transport {type(error).__name__}"
    outcome.latency_s = time.monotonic() - started
    return outcome


async def _send(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str], outcome: Outcome
) -> None:
    if outcome.mode == "blocking":
        response = await client.post("/v1/chat-messages", json=body, headers=headers)
        outcome.status = response.status_code
        payload = response.json()
        outcome.task_id = str(payload.get("task_id", ""))
        if response.status_code != 200:
            outcome.error = f"{response.status_code} {payload.get('code', '')}"
    else:
        await _stream(client, body, headers, outcome)


async def _stream(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str], outcome: Outcome
) -> None:
    async with client.stream("POST", "/v1/chat-messages", json=body, headers=headers) as response:
        outcome.status = response.status_code
        if response.status_code != 200:
            payload = json.loads(await response.aread())
            outcome.error = f"{response.status_code} {payload.get('code', '')}"
            return
        final = ""
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                event = json.loads(line.removeprefix("data: "))
                outcome.task_id = outcome.task_id or str(event.get("task_id", ""))
                if event.get("event") in ("message_end", "error"):
                    final = str(event["event"])
                    if final == "error":
                        outcome.error = f"stream error {event.get('code', '')}"
                    break
        if not final:
            outcome.error = "stream cut before its end"


@dataclass
class MemoryLog:
    """RSS of each process, sampled through the run (workers are replaced when killed)."""

    samples: list[dict[str, Any]] = field(default_factory=list)

    def sample(self, cluster: Any, at_s: float) -> None:
        pids = cluster.pids()
        self.samples.append(
            {
                "at_s": round(at_s, 1),
                "rss_mb": {
                    role: [round(harness.rss_mb(pid), 1) for pid in role_pids]
                    for role, role_pids in pids.items()
                },
            }
        )

    def growth(self) -> dict[str, dict[str, float]]:
        first, last = self.samples[0]["rss_mb"], self.samples[-1]["rss_mb"]
        return {
            role: {
                "start_mb": round(sum(first[role]), 1),
                "end_mb": round(sum(last[role]), 1),
                "growth_mb": round(sum(last[role]) - sum(first[role]), 1),
                "processes": len(last[role]),
            }
            for role in first
        }


async def drive(args: argparse.Namespace, cluster: Any, apps: Apps) -> dict[str, Any]:
    rng = random.Random(args.seed)
    outcomes: list[Outcome] = []
    memory = MemoryLog()
    kills: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=100)
    timeout = httpx.Timeout(180.0, connect=10.0)
    duration = args.minutes * 60
    async with httpx.AsyncClient(base_url=cluster.url, limits=limits, timeout=timeout) as client:
        started = time.monotonic()
        memory.sample(cluster, 0)
        pending: set[asyncio.Task[Outcome]] = set()
        sent = 0
        next_kill = args.kill_every
        next_sample = 10.0
        while (elapsed := time.monotonic() - started) < duration:
            due = int(elapsed * args.rate)
            while sent < due:
                pending.add(asyncio.create_task(one_request(client, apps, rng)))
                sent += 1
            if args.kill_every and elapsed >= next_kill:
                kills.append(_kill_a_worker(cluster, elapsed))
                next_kill += args.kill_every
            if elapsed >= next_sample:
                memory.sample(cluster, elapsed)
                next_sample += 10.0
            done = {task for task in pending if task.done()}
            outcomes += [task.result() for task in done]
            pending -= done
            await asyncio.sleep(0.01)
        if pending:
            outcomes += await asyncio.gather(*pending)
        memory.sample(cluster, time.monotonic() - started)
    return {"outcomes": outcomes, "memory": memory, "kills": kills, "sent": sent}


def _kill_a_worker(cluster: Any, elapsed: float) -> dict[str, Any]:
    workers = cluster.pids()["workers"]
    if not workers:
        return {"at_s": round(elapsed, 1), "pid": None}
    pid = random.choice(workers)
    os.kill(pid, signal.SIGKILL)
    return {"at_s": round(elapsed, 1), "pid": pid}


def settle(timeout_s: float) -> dict[str, Any]:
    """Wait for every accepted task to end; then count the lost and the duplicated."""
    from apps.scheduling.models import Task

    final = ("succeeded", "failed", "cancelled", "expired", "dead")
    give_up_at = time.monotonic() + timeout_s
    while time.monotonic() < give_up_at:
        if not Task.objects.exclude(status__in=final).exists():
            break
        time.sleep(1)
    from django.db import connection

    from tests.drills.checks import outcomes as task_outcomes

    ids = [str(task_id) for task_id in Task.objects.values_list("id", flat=True)]
    with connection.cursor() as cursor:
        found = task_outcomes(cursor, ids)
    lost = [o.id for o in found.values() if o.status not in final]
    duplicates = [
        o.id
        for o in found.values()
        if o.successes > 1
        or o.runs != o.attempts
        or (o.status == "succeeded" and o.finisher != o.last_runner)
    ]
    incomplete = [o.id for o in found.values() if o.status == "succeeded" and o.answer != TEXT]
    return {
        "accepted": len(found),
        "by_status": dict(Counter(o.status for o in found.values())),
        "retried": sum(1 for o in found.values() if o.attempts > 1),
        "lost": len(lost),
        "lost_ids": lost[:20],
        "duplicates": len(duplicates),
        "duplicate_ids": duplicates[:20],
        "incomplete_answers": len(incomplete),
    }


def report(args: argparse.Namespace, run: dict[str, Any], tasks: dict[str, Any]) -> dict[str, Any]:
    outcomes: list[Outcome] = run["outcomes"]
    served = [o for o in outcomes if o.status == 200 and not o.error]
    # The broken app's refusals are the expected answer to those requests, not a fault.
    expected_refusals = [o for o in outcomes if o.app == "broken" and o.error]
    errors = Counter(o.error for o in outcomes if o.error and o.app != "broken")
    latencies = sorted(o.latency_s for o in served)
    return {
        "settings": {
            "minutes": args.minutes,
            "rate_per_s": args.rate,
            "web": 2,
            "workers": 2,
            "kill_every_s": args.kill_every,
            "seed": args.seed,
            **SOAK_ENV,
        },
        "requests": {
            "sent": run["sent"],
            "served": len(served),
            "expected_refusals": len(expected_refusals),
            "by_mode": dict(Counter(o.mode for o in outcomes)),
            "by_priority": dict(Counter(o.priority for o in outcomes)),
            "latency_s": {
                "p50": round(harness.percentile(latencies, 50), 3),
                "p95": round(harness.percentile(latencies, 95), 3),
                "p99": round(harness.percentile(latencies, 99), 3),
            },
        },
        "errors_by_kind": dict(errors),
        "tasks": tasks,
        "worker_kills": run["kills"],
        "memory": run["memory"].growth(),
        "memory_samples": run["memory"].samples,
    }


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--kill-every", type=float, default=60.0, help="0: never kill a worker")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--settle-timeout", type=float, default=180.0)
    parser.add_argument("--log", default=os.devnull, help="file for the processes' output")
    args = parser.parse_args()
    if not 0 < args.minutes <= 60 or not 0 < args.rate <= 500:
        parser.error("--minutes must be in (0, 60] and --rate in (0, 500]")

    harness.prepare_database()
    harness.setup_django()
    harness.reset_state()
    from apps.operations.cluster import Cluster

    apps = make_apps()
    cluster = Cluster(
        port=harness.free_port(),
        web=2,
        workers=2,
        env=harness.bench_env(**SOAK_ENV),
        output=os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND),
    )
    # A SIGTERM must still stop the cluster's processes (they run in sessions of their own).
    signal.signal(signal.SIGTERM, _interrupt)
    cluster.start()
    try:
        print(f"soak: {args.rate:g} req/s for {args.minutes:g} min through {cluster.url}")
        run = asyncio.run(drive(args, cluster, apps))
        tasks = settle(args.settle_timeout)
    finally:
        cluster.stop()
    result = report(args, run, tasks)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    summary = {key: result[key] for key in ("requests", "errors_by_kind", "tasks", "memory")}
    print(json.dumps(summary, indent=2))
    print(f"written to {Path(RESULTS).relative_to(harness.ROOT)}")
    if tasks["lost"] or tasks["duplicates"]:
        raise SystemExit("FAILED: tasks were lost or run twice")


if __name__ == "__main__":
    main()
