"""Several web processes behind nginx and a pool of workers on one host: `manage.py run_cluster`,
the failure drills (tests/drills) and the soak run (bench/soak.py).

Each part is a process of its own, started with the given environment:
- N daphne processes on free loopback ports, restarted if they die; they trust the forwarded
  headers of nginx on loopback alone (TRUSTED_PROXIES), through which it passes the client's
  address and scheme;
- nginx in the foreground with the site of deploy/nginx rendered for those ports, its pid, logs
  and temporary files under a private directory;
- `manage.py run_workers` (the worker pool, which restarts its workers, plus the scheduler's
  housekeeping).

Stopping is graceful, in the order that loses nothing: nginx stops taking connections, then the
web processes close their streams (clients resume from their last event id elsewhere), then the
workers finish their current task.
"""

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings

from apps.operations.cluster_nginx import nginx_command, nginx_config_check, runtime_prepare
from apps.operations.web_command import web_command

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
RESTART_BACKOFF_S = 1.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _workers_ready(url: str, count: int) -> bool:
    """/readyz answers 200 and counts at least `count` registered workers."""
    try:
        response = httpx.get(f"{url}/readyz", timeout=2.0)
        running = str(response.json().get("checks", {}).get("workers", "0")).split()[0]
        return response.status_code == 200 and int(running) >= count
    except (httpx.HTTPError, ValueError):
        return False


def process_stop(process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL after `timeout_s`."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class WebProcess:
    port: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    """nginx + `web` daphne processes + a pool of `workers` on this host."""

    port: int
    web: int = 2
    workers: int = 2
    high_only: int = 0
    host: str = "127.0.0.1"
    env: dict[str, str] | None = None
    runtime_dir: Path | None = None
    # Where the children's output goes (None: inherited, as for `run_cluster`).
    output: int | None = None
    webs: list[WebProcess] = field(default_factory=list)
    nginx: subprocess.Popen[bytes] | None = None
    pool: subprocess.Popen[bytes] | None = None
    _own_runtime_dir: bool = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _env(self) -> dict[str, str]:
        env = dict(self.env if self.env is not None else os.environ)
        # nginx connects from loopback: its forwarded headers are the ones to believe.
        env.setdefault("TRUSTED_PROXIES", "127.0.0.1")
        return env

    def _popen(self, command: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env=self._env(),
            stdout=self.output,
            stderr=self.output,
            # Out of the terminal's process group: a Ctrl-C reaches this process only, which
            # stops the parts in order. A worker that got the terminal's SIGINT and then the
            # pool's SIGTERM would take the second signal as a cold shutdown, mid-task.
            start_new_session=True,
        )

    # --- starting -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start everything; returns once nginx serves /readyz with the workers registered."""
        try:
            self.webs = [WebProcess(port=free_port()) for _ in range(self.web)]
            for web in self.webs:
                self._spawn_web(web)
            self.pool = self._popen(self._pool_command())
            for web in self.webs:
                self._wait(lambda web=web: _healthy(web.url), f"daphne on {web.port}", web.process)
            self._start_nginx()
            self._wait(lambda: _healthy(self.url), "nginx", self.nginx)
            # Workers load the model before they register: the cluster is ready when they have.
            self._wait(lambda: _workers_ready(self.url, self.workers), "the workers", self.pool)
        except BaseException:
            self.stop()
            raise

    def _pool_command(self) -> list[str]:
        return [
            sys.executable,
            "manage.py",
            "run_workers",
            "-n",
            str(self.workers),
            "--high-only",
            str(self.high_only),
        ]

    def _spawn_web(self, web: WebProcess) -> None:
        web.process = self._popen(web_command(host="127.0.0.1", port=web.port))
        web.started_at = time.monotonic()

    def _start_nginx(self) -> None:
        if self.runtime_dir is None:
            self.runtime_dir = Path(tempfile.mkdtemp(prefix="dify-cluster-"))
            self._own_runtime_dir = True
        main = runtime_prepare(
            runtime_dir=self.runtime_dir,
            upstreams=[f"127.0.0.1:{web.port}" for web in self.webs],
            listen=f"{self.host}:{self.port}",
        )
        nginx_config_check(main)
        self.nginx = self._popen(nginx_command(main, "-g", "daemon off;"))

    def _wait(self, condition: object, what: str, process: subprocess.Popen[bytes] | None) -> None:
        assert callable(condition)
        give_up_at = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < give_up_at:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{what} exited with {process.returncode} while starting")
            if condition():
                return
            time.sleep(0.2)
        raise TimeoutError(f"timed out waiting for {what}")

    # --- running ------------------------------------------------------------------------------
    def supervise_once(self) -> str | None:
        """Restart web processes that died; returns why the cluster cannot go on, if it cannot
        (nginx or the worker pool exited: they are not restarted behind the operator's back)."""
        if self.nginx is not None and self.nginx.poll() is not None:
            return f"nginx exited with code {self.nginx.returncode}"
        if self.pool is not None and self.pool.poll() is not None:
            return f"the worker pool exited with code {self.pool.returncode}"
        for web in self.webs:
            process = web.process
            if process is None or process.poll() is None:
                continue
            if time.monotonic() - web.started_at < RESTART_BACKOFF_S:
                continue
            web.restarts += 1
            logger.warning(
                "web process exited; restarting it",
                extra={"port": web.port, "exit_code": process.returncode},
            )
            self._spawn_web(web)
        return None

    def pids(self) -> dict[str, list[int]]:
        """The process ids of each part (workers and the model servers: the pool's children)."""
        import psutil

        children: list[Any] = []
        if self.pool is not None and self.pool.poll() is None:
            children = psutil.Process(self.pool.pid).children()
        servers = [child.pid for child in children if "model_servers" in child.cmdline()]
        return {
            "nginx": [self.nginx.pid] if self.nginx else [],
            "web": [web.process.pid for web in self.webs if web.process],
            "pool": [self.pool.pid] if self.pool else [],
            "workers": [child.pid for child in children if child.pid not in servers],
            "model_servers": servers,
        }

    # --- stopping -----------------------------------------------------------------------------
    def stop(self, worker_timeout_s: float = 30.0) -> None:
        """nginx first (no new connections), then the web processes, then the workers, which
        finish their current task; the private nginx directory is removed last."""
        process_stop(self.nginx, timeout_s=10)
        for web in self.webs:
            if web.process is not None and web.process.poll() is None:
                web.process.send_signal(signal.SIGTERM)
        for web in self.webs:
            process_stop(web.process, timeout_s=10)
        process_stop(self.pool, timeout_s=worker_timeout_s + 5)
        if self._own_runtime_dir and self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
