"""Run the benchmarks: `make bench` (or `python -m bench.run [--quick] [--only NAME ...]`).

Brings up what each benchmark needs on loopback (daphne, workers) against its own database and
Redis database, tears it down, prints a table and writes JSON to bench/results/latest.json.
Every ratio compares runs measured side by side in this one invocation.
"""

import argparse
import asyncio
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import harness

RESULTS = Path(__file__).resolve().parent / "results"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


class Report:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        group: str,
        metric: str,
        ours: float,
        baseline: float | None = None,
        target: str = "",
        passed: bool | None = None,
        unit: str = "",
    ) -> None:
        ratio = ours / baseline if baseline else None
        self.rows.append(
            {
                "group": group,
                "metric": metric,
                "ours": ours,
                "baseline": baseline,
                "ratio": ratio,
                "unit": unit,
                "target": target,
                "passed": passed,
            }
        )
        self.print_row(self.rows[-1])

    @staticmethod
    def print_row(row: dict[str, Any]) -> None:
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:,.2f}"

        verdict = {True: "PASS", False: "MISS", None: ""}[row["passed"]]
        print(
            f"{row['group']:<12} {row['metric']:<34} {fmt(row['ours']):>12}"
            f" {fmt(row['baseline']):>12}"
            f" {fmt(row['ratio']):>7} {row['unit']:<6} {row['target']:<26} {verdict}",
            flush=True,
        )


def markdown(rows: list[dict[str, Any]], box: dict[str, Any], quick: bool) -> str:
    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:,.2f}"

    lines = [
        "Produced by `make bench` (`python -m bench.run --write-docs`); every ratio compares runs",
        "measured side by side in one invocation; medians over the runs. Targets are from the",
        "benchmark issue. Machine: "
        f"{box['cores']} cores, {box['memory_gb']} GB, {box['os']}, Python {box['python']}"
        + (" (quick run: fewer samples)." if quick else "."),
        "",
        "| group | metric | ours | baseline | ratio | unit | target | verdict |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for row in rows:
        verdict = {True: "pass", False: "**miss**", None: ""}[row["passed"]]
        lines.append(
            f"| {row['group']} | {row['metric']} | {fmt(row['ours'])} | {fmt(row['baseline'])} |"
            f" {fmt(row['ratio'])} | {row['unit']} | {row['target']} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


TABLE_START, TABLE_END = "<!-- bench:table -->", "<!-- /bench:table -->"


def write_docs(table: str) -> None:
    """Replace the generated part of docs/benchmarks.md (between its markers), keeping the
    written analysis around it."""
    text = DOCS.read_text() if DOCS.exists() else ""
    generated = f"{TABLE_START}\n{table}{TABLE_END}"
    if TABLE_START in text and TABLE_END in text:
        before, rest = text.split(TABLE_START, 1)
        after = rest.split(TABLE_END, 1)[1]
        DOCS.write_text(before + generated + after)
    else:
        DOCS.write_text(generated + "\n" + text)


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def bench_scheduler(report: Report, quick: bool) -> None:
    from bench import scheduler_bench as sb

    jobs, runs = (300, 1) if quick else (1000, 3)
    for workers in (1, 2):
        rq_rates, our_rates = [], []
        for _ in range(runs):
            harness.reset_state()
            rq_rates.append(sb.plain_rq_throughput(jobs, workers))
            harness.reset_state()
            our_rates.append(sb.our_throughput(jobs, workers))
        ours, base = harness.median(our_rates), harness.median(rq_rates)
        report.add(
            "scheduling",
            f"noop throughput, {workers} worker(s)",
            ours,
            base,
            ">= 0.5x plain RQ",
            ours >= 0.5 * base,
            "jobs/s",
        )
    samples = 60 if quick else 200
    harness.reset_state()
    rq_lat = sb.plain_rq_idle_latency(samples)
    harness.reset_state()
    our_lat = sb.our_idle_latency(samples)
    for q in (50, 99):
        ours, base = harness.percentile(our_lat, q) * 1000, harness.percentile(rq_lat, q) * 1000
        report.add(
            "scheduling",
            f"enqueue-to-start p{q}, idle",
            ours,
            base,
            "<= 2x plain RQ",
            ours <= 2 * base,
            "ms",
        )


def bench_isolation(report: Report, quick: bool) -> None:
    from bench import scheduler_bench as sb

    harness.reset_state()
    result = sb.priority_isolation(workers=2, lows=120 if quick else 300, highs=10 if quick else 30)
    bound = result["low_run_median_ms"] + 10
    report.add("isolation", "high wait p50", result["high_wait_p50_ms"], unit="ms")
    report.add(
        "isolation",
        "high wait p99",
        result["high_wait_p99_ms"],
        result["low_run_median_ms"],
        "<= one low run + 10 ms",
        result["high_wait_p99_ms"] <= bound,
        "ms",
    )
    report.add(
        "isolation",
        "low backlog when highs done",
        result["low_backlog_when_highs_done"],
        unit="tasks",
    )


def bench_recovery(report: Report, quick: bool) -> None:
    from bench import scheduler_bench as sb

    harness.reset_state()
    restarts, timings = sb.crash_recovery(3 if quick else 10)
    report.add(
        "recovery",
        "kill -9 mid-answer to running again, max",
        max(restarts),
        target="< 5 s",
        passed=max(restarts) < 5,
        unit="s",
    )
    median = harness.median(restarts)
    report.add(
        "recovery",
        "kill -9 mid-answer to running again, median",
        median,
        target="< 3 s",
        passed=median < 3,
        unit="s",
    )
    report.add(
        "recovery",
        "kill -9 mid-answer to success (2 s answer), median",
        harness.median(timings),
        unit="s",
    )


def _web_and_workers(workers: int, **env: str) -> tuple[Any, list[Any], int]:
    from apps.operations.web_command import web_command

    port = harness.free_port()
    # The platform's web server, as `make run` serves it (daphne with the body limits).
    web = harness.start(web_command(host="127.0.0.1", port=port)[1:], **env)
    procs = [
        harness.start(["manage.py", "worker", "--name", f"bench-w{i}-{time.time_ns()}"], **env)
        for i in range(workers)
    ]
    import httpx

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    harness.wait_for(up, 60, "daphne and a worker")
    time.sleep(1.0)
    return web, procs, port


def bench_requests(report: Report, quick: bool) -> None:
    from bench import request_bench as rb

    harness.reset_state()
    web, workers, port = _web_and_workers(2)
    url = f"http://127.0.0.1:{port}"
    with harness.running(web, *workers):
        instant = rb.make_key(provider_config={"text": "ok"})
        mem = {"web_idle": harness.rss_mb(web.pid), "worker_idle": harness.rss_mb(workers[0].pid)}
        # A new conversation without the title task, so that each request meets an idle system;
        # the same with the title (low-priority work beside each answer) for comparison.
        idle_samples = asyncio.run(
            rb.idle_latency(url, instant, 50 if quick else 200, auto_generate_name=False)
        )
        idle = [sample.latency_s for sample in idle_samples]
        report.add(
            "request",
            "blocking p50 latency, idle",
            harness.percentile(idle, 50) * 1000,
            target="< 15 ms added",
            passed=harness.percentile(idle, 50) * 1000 < 15,
            unit="ms",
        )
        report.add(
            "request", "blocking p99 latency, idle", harness.percentile(idle, 99) * 1000, unit="ms"
        )
        for phase, value in rb.idle_breakdown(idle_samples).items():
            report.add("request", f"  of which {phase} (p50)", value, unit="ms")
        titled = asyncio.run(rb.idle_latency(url, instant, 30 if quick else 100))
        report.add(
            "request",
            "blocking p50, idle, titled conversation",
            harness.percentile([sample.latency_s for sample in titled], 50) * 1000,
            unit="ms",
        )
        for clients in (10, 100):
            load = asyncio.run(rb.blocking_load(url, instant, clients, 5 if quick else 15))
            report.add(
                "request",
                f"blocking req/s, {clients} clients",
                load["requests_per_s"],
                unit="req/s",
            )
            report.add("request", f"blocking p50, {clients} clients", load["p50_ms"], unit="ms")
            report.add("request", f"blocking p99, {clients} clients", load["p99_ms"], unit="ms")
        mem["web_load"] = harness.rss_mb(web.pid)
        mem["worker_load"] = harness.rss_mb(workers[0].pid)
        paced = rb.make_key(provider_config={"text": " ".join(["tok"] * 20), "tokens_per_s": 50})
        relay = asyncio.run(rb.streaming_relay(port, paced, 10 if quick else 30))
        report.add("streaming", "time to first byte p50", relay["ttfb_p50_ms"], unit="ms")
        report.add(
            "streaming", "first token relay p50", relay["first_token_relay_p50_ms"], unit="ms"
        )
        report.add(
            "streaming",
            "token relay p99",
            relay["token_relay_p99_ms"],
            target="< 5 ms",
            passed=relay["token_relay_p99_ms"] < 5,
            unit="ms",
        )
    for name, value in mem.items():
        report.add("memory", f"RSS {name.replace('_', ' ')}", value, unit="MB")


def _daphne(application: str, **env: str) -> tuple[Any, int]:
    port = harness.free_port()
    process = harness.start(
        [
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "--access-log",
            os.devnull,
            application,
        ],
        **env,
    )
    return process, port


def _answering(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def _conversations_for(key: str, user: str, count: int) -> None:
    from apps.applications.selectors import api_key_get_active
    from apps.conversations.models import Conversation

    api_key = api_key_get_active(clear_key=key)
    assert api_key is not None
    Conversation.objects.bulk_create(
        Conversation(app=api_key.app, end_user=user, name=f"Conversation {number}")
        for number in range(count)
    )


def bench_input(report: Report, quick: bool) -> None:
    """Issue 17: the input layer against bare Django, the answer routes under load, and a
    cluster offered more than its global ceiling."""
    from bench import input_bench as ib
    from bench import request_bench as rb

    seconds = 4.0 if quick else 8.0
    rounds = 1 if quick else 3
    harness.reset_state()
    # The global ceiling runs on every request (one Redis call) but never refuses here.
    bare, bare_port = _daphne("bench.bare_site:application")
    ours, our_port = _daphne("dify_platform.asgi:application", GLOBAL_RATE_LIMIT_PER_S="1000000")
    url = f"http://127.0.0.1:{our_port}"
    with harness.running(bare, ours):
        harness.wait_for(lambda: _answering(f"{url}/healthz"), 60, "daphne")
        harness.wait_for(lambda: _answering(f"http://127.0.0.1:{bare_port}/bare"), 60, "bare")
        key = rb.make_key(provider_config={"text": "ok"})
        _conversations_for(key, "bench", 5)
        auth = {"Authorization": f"Bearer {key}"}
        targets = {
            "bare Django async view": (f"http://127.0.0.1:{bare_port}/bare", {}),
            "/healthz": (f"{url}/healthz", {}),
            "/v1/parameters": (f"{url}/v1/parameters", auth),
            "/v1/conversations": (f"{url}/v1/conversations?user=bench&limit=5", auth),
        }
        for target, headers in targets.values():  # warm up: connections, caches, code paths
            ib.wrk(target, connections=8, seconds=1, headers=headers)
        for connections in (8, 64):
            runs: dict[str, list[Any]] = {name: [] for name in targets}
            for _ in range(rounds):  # interleaved, so drift in the machine hits every target
                for name, (target, headers) in targets.items():
                    runs[name].append(
                        ib.wrk(target, connections=connections, seconds=seconds, headers=headers)
                    )
            bare_rate = harness.median(
                [run.requests_per_s for run in runs["bare Django async view"]]
            )
            for name, results in runs.items():
                rate = harness.median([run.requests_per_s for run in results])
                is_bare = name.startswith("bare")
                report.add(
                    "input",
                    f"{name} req/s, {connections} conn",
                    rate,
                    None if is_bare else bare_rate,
                    "" if is_bare else ">= 0.7x bare Django",
                    None if is_bare else rate >= 0.7 * bare_rate,
                    "req/s",
                )
                report.add(
                    "input",
                    f"  p99, {connections} conn",
                    harness.median([run.p99_ms for run in results]),
                    unit="ms",
                )
                errors = sum(run.other + run.limited for run in results)
                if errors:
                    report.add("input", f"  errors, {connections} conn", errors, unit="")

    harness.reset_state()
    web, workers, port = _web_and_workers(2)
    url = f"http://127.0.0.1:{port}"
    with harness.running(web, *workers):
        instant = rb.make_key(provider_config={"text": "ok"})
        for clients in (10, 100):
            blocking = asyncio.run(rb.blocking_load(url, instant, clients, seconds))
            streaming = asyncio.run(ib.streaming_load(port, instant, clients, seconds))
            for mode, load in (("blocking", blocking), ("streaming", streaming)):
                report.add(
                    "input",
                    f"{mode} answers req/s, {clients} clients",
                    load["requests_per_s"],
                    unit="req/s",
                )
                report.add("input", f"  p99, {clients} clients", load["p99_ms"], unit="ms")


def bench_overload(report: Report, quick: bool) -> None:
    """Two web processes behind nginx, offered two and four times the global ceiling (250/s
    here, so that the offered load leaves this 2-core machine some room: a load generator that
    takes every core measures its own queueing, not the platform's)."""
    from apps.operations.cluster import Cluster, free_port
    from bench import input_bench as ib
    from bench import request_bench as rb

    ceiling, seconds = 250, 8.0 if quick else 15.0
    harness.reset_state()
    cluster = Cluster(
        port=free_port(),
        web=2,
        workers=1,
        env=harness.bench_env(GLOBAL_RATE_LIMIT_PER_S=str(ceiling)),
        output=subprocess.DEVNULL,
    )
    cluster.start()
    try:
        key = rb.make_key()
        headers = {"Authorization": f"Bearer {key}"}
        target = f"{cluster.url}/v1/parameters"
        ib.wrk(target, connections=8, seconds=1, headers=headers)
        for times in (2, 4):
            with ib.OutcomeProbe(target, headers) as probe:
                load = ib.wrk(
                    target, connections=64, seconds=seconds, headers=headers, rate=ceiling * times
                )
            group = f"overload {times}x"
            sent = load.requests_per_s + (probe.count(200) + probe.count(429)) / seconds
            report.add(group, "offered req/s (2 web, nginx)", sent, unit="req/s")
            report.add(
                group,
                "served req/s",
                load.ok_per_s,
                ceiling,
                "the ceiling",
                load.ok_per_s <= ceiling * 1.1,
                "req/s",
            )
            report.add(group, "refused (429) req/s", load.limited_per_s, unit="req/s")
            report.add(group, "other errors", load.other, unit="")
            refusal_p99 = probe.p99_ms(429)
            report.add(
                group,
                "p99 of a refusal",
                refusal_p99,
                target="< 20 ms",
                passed=refusal_p99 < 20,
                unit="ms",
            )
            report.add(group, "p99 of an admitted request", probe.p99_ms(200), unit="ms")
            report.add(group, "  probe samples admitted", probe.count(200), unit="")
    finally:
        cluster.stop()


def bench_openai(report: Report, quick: bool) -> None:
    """Issue 15: OpenAI's route against Dify's on the same processes, then a batch beside live
    chat on the default workers (the pool `make run` starts, with its housekeeping)."""
    from bench import openai_bench as ob
    from bench import request_bench as rb

    seconds = 4.0 if quick else 8.0
    rounds = 1 if quick else 3
    harness.reset_state()
    web, workers, port = _web_and_workers(2)
    url = f"http://127.0.0.1:{port}"
    with harness.running(web, *workers):
        key = rb.make_key(provider_config={"text": "ok"}, model_name="instant")
        routes = {
            "Dify /v1/chat-messages": ob.DIFY,
            "/v1/chat/completions": ob.openai_route("instant"),
        }
        idle: dict[str, list[float]] = {name: [] for name in routes}
        loads: dict[str, list[dict[str, float]]] = {name: [] for name in routes}
        for _ in range(rounds):  # interleaved: drift in the machine hits both routes
            for name, route in routes.items():
                idle[name].append(ob.idle_latency(url, key, route, 30 if quick else 100))
                loads[name].append(
                    asyncio.run(rb.blocking_load(url, key, 10, seconds, route=route))
                )
        dify_idle = harness.median(idle["Dify /v1/chat-messages"])
        dify_rate = harness.median(
            [load["requests_per_s"] for load in loads["Dify /v1/chat-messages"]]
        )
        for name in routes:
            is_dify = name.startswith("Dify")
            latency = harness.median(idle[name])
            rate = harness.median([load["requests_per_s"] for load in loads[name]])
            report.add(
                "openai",
                f"{name} p50 idle",
                latency,
                None if is_dify else dify_idle,
                "" if is_dify else "<= Dify's route",
                None if is_dify else latency <= dify_idle * 1.05,
                "ms",
            )
            report.add(
                "openai",
                f"{name} req/s, 10 clients",
                rate,
                None if is_dify else dify_rate,
                "" if is_dify else ">= Dify's route",
                None if is_dify else rate >= dify_rate * 0.95,
                "req/s",
            )
    _bench_batch_isolation(report, quick)


def _bench_batch_isolation(report: Report, quick: bool) -> None:
    from bench import openai_bench as ob
    from bench import request_bench as rb

    harness.reset_state()
    web, port = _daphne("dify_platform.asgi:application")
    pool = harness.start(["manage.py", "run_workers", "-n", "2"])
    url = f"http://127.0.0.1:{port}"
    with harness.running(web, pool):
        harness.wait_for(lambda: _answering(f"{url}/readyz"), 120, "daphne and the workers")
        # Each request as long as the priority isolation bench's low runs (10 words, 100/s).
        pace = {"text": " ".join(["w"] * 10), "tokens_per_s": 100}
        batch_key = rb.make_key(provider_config=pace, model_name="bulk", max_tokens=16)
        live_key = rb.make_key(provider_config=pace, max_tokens=16)
        lines = 2_000 if quick else 10_000
        result = ob.isolation_beside_a_batch(url, batch_key, "bulk", live_key, lines, 30)
    bound = result["batch_run_median_ms"] + 10
    report.add("batch", f"requests in the batch ({lines:,} sent)", result["batch_total"], unit="")
    report.add("batch", "  completed", result["batch_completed"], unit="")
    report.add("batch", "high wait p50 beside the batch", result["high_wait_p50_ms"], unit="ms")
    report.add(
        "batch",
        "high wait p99 beside the batch",
        result["high_wait_p99_ms"],
        result["batch_run_median_ms"],
        "<= one low run + 10 ms",
        result["high_wait_p99_ms"] <= bound,
        "ms",
    )
    report.add("batch", "batch throughput", result["batch_requests_per_s"], unit="req/s")


def bench_concurrency(report: Report, quick: bool) -> None:
    """Distinct answers at once on the processes `make run` starts (one web process, the default
    worker processes with their default concurrency), against a model server that serves any
    number of sequences."""
    from bench import concurrency_bench as cb

    users = 200 if quick else 1000
    harness.reset_state()
    with cb.model_server(tokens=50, tokens_per_s=5) as (url, _):  # 10 s an answer
        web, workers, port = _web_and_workers(2)
        with harness.running(web, *workers):
            key = cb.remote_app_key(url, max_tokens=50)
            idle_rss = sum(harness.rss_mb(worker.pid) for worker in workers)
            cb.model_stats(url, reset=True)
            with cb.PeakRss([worker.pid for worker in workers]) as peak:
                answers = asyncio.run(cb.distinct_answers(port, key, users, tokens=50))
            stats = cb.model_stats(url)
    result = cb.summary(answers)
    passed = (
        answers.complete == users
        and stats["most_open"] >= users
        and result["word_delay_p99_ms"] < 100
    )
    report.add(
        "concurrency",
        f"{users} users, own answer, 5 tok/s",
        answers.complete,
        users,
        "all complete, at once, p99 < 100 ms",
        passed,
        "answers",
    )
    report.add("concurrency", "  sequences at once (model server)", stats["most_open"], users)
    report.add(
        "concurrency", "  word delay p50 (model to client)", result["word_delay_p50_ms"], unit="ms"
    )
    report.add(
        "concurrency",
        "  word delay p99 (model to client)",
        result["word_delay_p99_ms"],
        target="< 100 ms",
        passed=result["word_delay_p99_ms"] < 100,
        unit="ms",
    )
    report.add(
        "concurrency", "  relay delay p99 (log to client)", result["relay_delay_p99_ms"], unit="ms"
    )
    report.add("concurrency", "  all requests admitted within", result["admission_s"], unit="s")
    report.add(
        "concurrency",
        "  word delay p99, once all admitted",
        result["word_delay_p99_after_admission_ms"],
        unit="ms",
    )
    report.add("concurrency", "  slowest answer", result["slowest_s"], unit="s")
    if answers.errors:
        print(f"  errors: {answers.errors}")
    per_answer_kb = (peak.peak - idle_rss) * 1024 / max(1, users)
    report.add(
        "memory",
        "worker RSS per running answer",
        per_answer_kb / 1024,
        target="< 1 MB",
        passed=per_answer_kb < 1024,
        unit="MB",
    )
    report.add("memory", f"worker tier RSS, {users} answers", peak.peak, idle_rss, unit="MB")

    harness.reset_state()
    with cb.model_server(tokens=50, tokens_per_s=25) as (url, _):  # 2 s an answer
        web, workers, port = _web_and_workers(2)
        with harness.running(web, *workers):
            key = cb.remote_app_key(url, max_tokens=50)
            alone = [
                asyncio.run(cb.distinct_answers(port, key, 1, tokens=50)).durations_s[0]
                for _ in range(3)
            ]
            crowd = asyncio.run(cb.distinct_answers(port, key, 200, tokens=50))
    one = harness.median(alone)
    slowest = max(crowd.durations_s)
    report.add(
        "concurrency",
        "200 users at 25 tok/s: slowest answer",
        slowest,
        one,
        "< 1.5x one answer alone",
        crowd.complete == 200 and slowest < 1.5 * one,
        "s",
    )


def bench_model(report: Report, quick: bool) -> None:
    from bench import model_bench as mb

    runs = 2 if quick else 5
    raw = mb.raw_tokens_per_s(runs)
    harness.reset_state()
    model_port = harness.free_port()
    server = harness.model_server(model_port, parallel=4)
    web, workers, port = _web_and_workers(1)
    with harness.running(server, web, *workers):
        key = mb.local_app_key(model_port, 4)
        ours = mb.platform_tokens_per_s(port, key, runs)
    o, b = harness.median(ours), harness.median(raw)
    report.add(
        "model", "tokens/s, built-in model", o, b, ">= 0.9x xllamacpp", o >= 0.9 * b, "tok/s"
    )
    # One model server with 1, 2 and 4 sequences at once (its slots), two workers calling it.
    single = None
    for parallel in (1, 2, 4):
        harness.reset_state()
        model_port = harness.free_port()
        server = harness.model_server(model_port, parallel=parallel)
        web, workers, port = _web_and_workers(2)
        with harness.running(server, web, *workers):
            key = mb.local_app_key(model_port, parallel)
            rates = [
                mb.parallel_tokens_per_s(port, key, parallel) for _ in range(1 if quick else 3)
            ]
        rate = harness.median(rates)
        single = single or rate
        report.add(
            "model",
            f"aggregate tokens/s, {parallel} sequence(s) at once",
            rate,
            single,
            unit="tok/s",
        )


def bench_deployments(report: Report, quick: bool) -> None:
    from bench import deployments_bench as db

    harness.reset_state()
    fair = db.fairness(flood_factor=10, quiet=4 if quick else 8)
    limit = fair["alone_p99_s"] + 1.1 * fair["answer_s"]
    report.add(
        "deployments",
        "quiet app's p99 wait beside a 10x flood",
        fair["flooded_p99_s"],
        fair["alone_p99_s"],
        "<= alone + 1.1 answer",
        fair["flooded_p99_s"] <= limit,
        "s",
    )
    harness.reset_state()
    shared = db.priority_at_a_refusing_server(lows=50 if quick else 100)
    report.add(
        "deployments",
        "high p99 wait, shared refusing server",
        shared["high_wait_p99_s"],
        shared["answer_s"],
        "<= one answer",
        shared["high_wait_p99_s"] <= shared["answer_s"],
        "s",
    )
    report.add(
        "deployments",
        "429s from the server / failed answers",
        shared["refused_by_server"],
        target="0 / 0",
        passed=shared["refused_by_server"] == 0 and shared["failed"] == 0,
    )
    harness.reset_state()
    cut = db.failover(seconds=6 if quick else 12)
    report.add(
        "deployments",
        "p99 latency, one of two servers killed",
        cut["failover_p99_s"],
        cut["calm_p99_s"],
        "<= calm + one answer",
        cut["failed"] == 0 and cut["failover_p99_s"] <= cut["calm_p99_s"] + cut["answer_s"],
        "s",
    )
    report.add(
        "deployments",
        "failed requests in the failover runs",
        cut["failed"],
        target="0",
        passed=cut["failed"] == 0,
    )
    for waiting in (1_000, 10_000, 100_000):
        harness.reset_state()
        cost = db.dispatch_cost(waiting, samples=50 if quick else 200)
        report.add("deployments", f"dispatch per answer, {waiting:,} waiting", cost, unit="ms")


BENCHES = {
    "scheduler": bench_scheduler,
    "isolation": bench_isolation,
    "recovery": bench_recovery,
    "requests": bench_requests,
    "input": bench_input,
    "overload": bench_overload,
    "openai": bench_openai,
    "concurrency": bench_concurrency,
    "model": bench_model,
    "deployments": bench_deployments,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Fewer samples (a smoke run).")
    parser.add_argument("--only", nargs="*", choices=list(BENCHES), default=list(BENCHES))
    parser.add_argument("--out", default=str(RESULTS / "latest.json"))
    parser.add_argument(
        "--write-docs", action="store_true", help="Also write the table to docs/benchmarks.md."
    )
    args = parser.parse_args()

    harness.prepare_database()
    harness.setup_django()
    report = Report()
    print(f"{'group':<12} {'metric':<34} {'ours':>12} {'baseline':>12} {'ratio':>7} unit   target")
    started = time.time()
    try:
        for name in args.only:
            BENCHES[name](report, args.quick)
    finally:
        harness.reset_state()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "quick": args.quick,
                "seconds": round(time.time() - started),
                "rows": report.rows,
            },
            indent=2,
        )
    )
    print(f"\nwrote {out}")
    if args.write_docs:
        write_docs(markdown(report.rows, machine(), args.quick))
        print(f"wrote {DOCS}")


if __name__ == "__main__":
    main()
