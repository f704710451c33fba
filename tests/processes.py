"""Real platform processes for end-to-end tests: daphne and RQ workers on free loopback ports,
using the test database and the test Redis database of this pytest worker."""

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from rq import Worker

from apps.core.redis import sync_client
from apps.operations.web_command import web_command
from apps.scheduling.coordination.reports import worker_slots_key
from apps.scheduling.coordination.stops import StopReason, task_request_stop
from apps.scheduling.models import Task, TaskStatus
from apps.scheduling.tasks.services import task_cancel
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: test settings, the test database, quiet logs."""
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    env = os.environ.copy()
    env.update(
        DJANGO_SETTINGS_MODULE="dify_platform.settings.test",
        DATABASE_URL=f"postgres://{user}@{host}:{port}/{db['NAME']}",
        LOG_LEVEL=os.environ.get("E2E_LOG_LEVEL", "WARNING"),
        PYTHONUNBUFFERED="1",
        # Platform processes run database work from async code in their pool of threads, as
        # deployed (the test process itself keeps it in the test's thread: settings.test).
        DB_ASYNC_THREADS="8",
    )
    env.update(extra)
    return env


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class WebServer:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


def daphne_start(port: int, **env: str) -> subprocess.Popen[bytes]:
    """The platform's web server on a loopback port, as the run commands start it, with the
    test environment plus `env`."""
    return subprocess.Popen(
        web_command(host="127.0.0.1", port=port, access_log="-"),
        cwd=ROOT,
        env=process_env(**env),
    )


@contextmanager
def run_web() -> Iterator[WebServer]:
    port = free_port()
    process = daphne_start(port)
    server = WebServer(process, port)
    try:
        process_ready_wait(lambda: _healthy(server.url), "daphne to answer /healthz", process)
        yield server
    finally:
        _stop(process)


@contextmanager
def run_worker(
    *queues: str,
    name: str | None = None,
    env: dict[str, str] | None = None,
    concurrency: int | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    worker_name = name or f"test-worker-{free_port()}"
    before = _worker_names()
    extra = ["--concurrency", str(concurrency)] if concurrency else []
    process = subprocess.Popen(
        [sys.executable, "manage.py", "worker", *queues, "--name", worker_name, *extra],
        cwd=ROOT,
        env=process_env(**(env or {})),
    )
    try:
        process_ready_wait(
            lambda: worker_name in _worker_names() - before, "the worker to register", process
        )
        yield process
    finally:
        _stop(process, timeout_s=30.0)


@contextmanager
def run_scheduler(env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """The scheduler's housekeeping (delayed tasks, load, aging, reconciler, watchdog)."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "scheduler", "--interval", "0.1"],
        cwd=ROOT,
        env=process_env(**(env or {})),
    )
    try:
        yield process
    finally:
        _stop(process)


@contextmanager
def run_model_server(
    *,
    tokens: int = 20,
    tokens_per_s: float = 20.0,
    first_token_delay_s: float = 0.0,
    capacity: int = 0,
    retry_after_s: float = 1.0,
    port: int | None = None,
) -> Iterator[str]:
    """The OpenAI-compatible stand-in for a model server (bench/model_server.py) that serves
    any number of sequences, or at most `capacity` (429 with Retry-After beyond); yields its
    /v1 URL. `model_server_kill(url)` kills it mid-stream."""
    port = port or free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.model_server",
            "--port",
            str(port),
            "--tokens",
            str(tokens),
            "--tokens-per-s",
            str(tokens_per_s),
            "--first-token-delay-s",
            str(first_token_delay_s),
            "--capacity",
            str(capacity),
            "--retry-after-s",
            str(retry_after_s),
        ],
        cwd=ROOT,
        env=process_env(),
    )
    url = f"http://127.0.0.1:{port}"
    _model_servers[f"{url}/v1"] = process
    try:
        process_ready_wait(lambda: _answers(f"{url}/v1/models"), "the model server", process)
        yield f"{url}/v1"
    finally:
        _model_servers.pop(f"{url}/v1", None)
        _stop(process)


_model_servers: dict[str, subprocess.Popen[bytes]] = {}


def model_server_kill(url: str) -> None:
    """Kill a model server (run_model_server) at once: its streams are cut mid-answer and its
    port refuses connections."""
    process = _model_servers[url]
    process.kill()
    process.wait()


def model_server_stats(url: str) -> dict[str, Any]:
    """Requests served and refused, sequences open now and at most, since the last reset."""
    stats: dict[str, Any] = httpx.get(f"{url.removesuffix('/v1')}/stats", timeout=5).json()
    return stats


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _worker_names() -> set[str]:
    return {worker.name for worker in Worker.all(connection=sync_client())}


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def process_ready_wait(
    condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes]
) -> None:
    """Until `condition()` holds; a process that exits meanwhile fails at once."""

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} while waiting for {what}")
        return condition()

    wait_until(ready, START_TIMEOUT_S, what)


_builtin: dict[str, object] = {}


def builtin_model_url() -> str:
    """The built-in model's server for this test process (started on first use, stopped when
    the process ends), as `make run` serves it: one llama.cpp server with its parallel slots,
    called over loopback by every worker."""
    url = _builtin.get("url")
    if isinstance(url, str):
        return url
    import atexit

    port = free_port()
    platform = settings.PLATFORM
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "model_server",
            "--port",
            str(port),
            "--parallel",
            str(platform["LOCAL_MODEL_PARALLEL"]),
            "--context",
            str(platform["LOCAL_MODEL_CONTEXT"]),
        ],
        cwd=ROOT,
        env=process_env(),
    )
    atexit.register(_stop, process)
    root = f"http://127.0.0.1:{port}"
    process_ready_wait(lambda: _answers(f"{root}/health"), "the built-in model server", process)
    _builtin.update(url=f"{root}/v1", process=process)
    return f"{root}/v1"


def platform_settle(timeout_s: float = 60.0) -> None:
    """Until the live processes have done with the work a test started (an answer whose client
    left, the conversation title and the suggestions that follow an answer): nothing queued is
    started any more (its job is dropped and its task cancelled), what runs is asked to stop, and
    every worker is left idle. Then no process writes into the test database while the test's
    tables are flushed (a worker's write and the flush's TRUNCATE lock the same tables in
    different orders: PostgreSQL would end one of them as a deadlock)."""
    asked_to_stop: set[str] = set()
    quiet_checks = 0

    def quiet() -> bool:
        nonlocal quiet_checks
        busy = _jobs_dropped()
        alive = _workers_alive()
        active = Task.objects.filter(status__in=TaskStatus.ACTIVE)
        for task_id, status, worker_name in active.values_list("id", "status", "worker_name"):
            if status != TaskStatus.RUNNING:
                task_cancel(task_id=task_id, actor="test teardown")
                busy = True
            elif worker_name in alive:  # a dead worker's task: nobody is left to write it
                if str(task_id) not in asked_to_stop:
                    task_request_stop(task_id=str(task_id), reason=StopReason.CANCEL)
                    asked_to_stop.add(str(task_id))
                busy = True
        busy = busy or any(_slots_busy(name) for name in alive)
        # Twice in a row: a job taken just before its queue was dropped shows as a busy slot
        # (or an active task) by the next look.
        quiet_checks = 0 if busy else quiet_checks + 1
        return quiet_checks >= 2

    wait_until(quiet, timeout_s, "the live processes to finish the test's work")


def _workers_alive() -> set[str]:
    """The workers registered in Redis whose process still runs (one killed stays registered
    until its entry lapses)."""
    alive = set()
    for worker in Worker.all(connection=sync_client()):
        if worker.pid is None:
            continue
        try:
            os.kill(worker.pid, 0)
        except OSError:
            continue
        alive.add(worker.name)
    return alive


def _slots_busy(name: str) -> bool:
    report: Any = sync_client().get(worker_slots_key(name))
    return bool(report) and int(report.split()[0]) > 0


def _jobs_dropped() -> bool:
    """Drop every queued job (of the queues and RQ's intermediate lists); whether there were
    any."""
    client = sync_client()
    queued = list(client.scan_iter(match="rq:queue:*", count=1000))
    return bool(queued and client.delete(*queued))
