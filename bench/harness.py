"""Shared plumbing for the benchmarks: an isolated database and Redis database, processes on
loopback, and small statistics helpers. Everything started here is stopped here."""

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BENCH_DB = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dify_platform_bench"
)
BENCH_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")


def bench_env(**extra: str) -> dict[str, str]:
    env = os.environ.copy()
    env.update(
        DJANGO_SETTINGS_MODULE="dify_platform.settings.base",
        DATABASE_URL=BENCH_DB,
        REDIS_URL=BENCH_REDIS,
        REDIS_KEY_PREFIX="dp-bench:",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        # Benchmarks measure the pipeline, not the load policy's reaction to the benchmark itself.
        LOAD_CPU_HIGH="1000",
        LOAD_QUEUED_HIGH="100000000",
        # ... nor the default per-key and per-user rate limits (a benchmark's clients share a
        # key, and some one end user): measured as before those defaults, comparable over time.
        KEY_RATE_LIMIT_PER_S="0",
        USER_RATE_LIMIT_PER_S="0",
    )
    env.update(extra)
    return env


def setup_django() -> None:
    os.environ.update(bench_env())
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def prepare_database() -> None:
    """Create and migrate the benchmark database (never the developer's)."""
    import psycopg

    name = BENCH_DB.rsplit("/", 1)[1]
    maintenance = BENCH_DB.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(maintenance, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=bench_env(),
        check=True,
    )


def reset_state() -> None:
    """Empty the benchmark database's tables and the benchmark Redis database."""
    from django.db import connection

    from apps.core.redis import sync_client

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE scheduling_taskevent, scheduling_task, conversations_feedback,"
            " conversations_message, conversations_conversation, applications_apikey,"
            " deployments_appdeployment, deployments_deployment, applications_app CASCADE"
        )
    sync_client().flushdb()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# BENCH_LOG=path: the processes' output goes there (appended), to see why a run went wrong.
_LOG = os.environ.get("BENCH_LOG")


def start(args: list[str], **env: str) -> subprocess.Popen[bytes]:
    output = open(_LOG, "ab") if _LOG else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [PYTHON, *args],
        cwd=ROOT,
        env=bench_env(**env),
        stdout=output,
        stderr=output,
    )


def stop(process: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running(*processes: subprocess.Popen[bytes]) -> Iterator[list[subprocess.Popen[bytes]]]:
    try:
        yield list(processes)
    finally:
        for process in processes:
            stop(process)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        if condition():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_mb(pid: int) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / 1024 / 1024
    except psutil.Error:
        return float("nan")


def app_key(
    *,
    provider: str = "scripted",
    provider_config: dict[str, Any] | None = None,
    model_name: str = "bench",
    max_concurrency: int = 1000,
    **app_fields: Any,
) -> str:
    """An app on a deployment of its own (the endpoint, as an app named one before deployments:
    `provider_config` holds base_url, api_key_env and the scripted text), and a key for it."""
    from apps.applications.services import api_key_create
    from apps.deployments.services import app_create_with_endpoint

    config = dict(provider_config or {})
    fields: dict[str, Any] = {
        "base_url": str(config.pop("base_url", "")),
        "api_key_env": str(config.pop("api_key_env", "")),
        "max_concurrency": int(config.pop("max_concurrency", max_concurrency)),
        "config": config,
    }
    app_fields.setdefault("name", "bench")
    app = app_create_with_endpoint(
        provider=provider, model=model_name, deployment_fields=fields, **app_fields
    )
    return api_key_create(app=app)[1]


def model_server(port: int, *, parallel: int, **env: str) -> subprocess.Popen[bytes]:
    """The built-in model's server, as the worker pool runs it (`manage.py model_server`)."""
    import httpx

    process = start(
        ["manage.py", "model_server", "--port", str(port), "--parallel", str(parallel)], **env
    )

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 90, "the model server")
    return process


def builtin_key(port: int, *, parallel: int, **app_fields: Any) -> str:
    """An app on the built-in model served at `port` (a model_server), with `parallel` slots."""
    app_fields.setdefault("name", "bench model")
    return app_key(
        provider="local",
        model_name="SmolLM2-135M-Instruct",
        provider_config={"base_url": f"http://127.0.0.1:{port}/v1"},
        max_concurrency=parallel,
        **app_fields,
    )
