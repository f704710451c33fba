"""The failure drills run the whole multi-process setup of `manage.py run_cluster` (nginx, two
daphne processes, a worker pool with its housekeeping) on loopback, break a part of it, and check
that no accepted work was lost or done twice. Each drill is bounded (well under a minute)."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from apps.applications.models import ApiKey
from apps.operations.cluster import Cluster, free_port
from apps.scheduling.models import Task, TaskStatus
from tests.factories import make_app, make_key
from tests.processes import process_env

# Recovery settings short enough for bounded drills; bench/ and docs/scaling.md give the
# figures with the defaults.
FAST_RECOVERY = {
    "TASK_LOCK_TTL_S": "3",
    "RECONCILE_GRACE_S": "1",
    # The drills measure recovery, not the load policy's reaction to a busy 2-core machine.
    "LOAD_CPU_HIGH": "1000",
    "LOAD_CPU_LOW": "900",
    "LOAD_QUEUED_HIGH": "100000000",
    "LOAD_QUEUED_LOW": "10000000",
    "SHED_ENABLED": "false",
}


def drill_env(**extra: str) -> dict[str, str]:
    return process_env(**{**FAST_RECOVERY, **extra})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def cluster_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """Where the cluster's processes write; its tail is shown when a drill fails."""
    path = tmp_path / "cluster.log"
    yield path
    if request.node.stash.get(FAILED, False) and path.exists():
        tail = path.read_text(errors="replace").splitlines()[-80:]
        print("--- last lines of the cluster's output ---", *tail, sep="\n")  # noqa: T201


@pytest.fixture
def start_cluster(cluster_log: Path) -> Callable[..., Any]:
    """`with start_cluster(env=...) as cluster:` runs nginx + 2 daphne + 2 workers."""

    @contextmanager
    def run(
        *, env: dict[str, str] | None = None, web: int = 2, workers: int = 2
    ) -> Iterator[Cluster]:
        with cluster_log.open("ab") as output:
            cluster = Cluster(
                port=free_port(),
                web=web,
                workers=workers,
                env=env if env is not None else drill_env(),
                output=output.fileno(),
            )
            cluster.start()
            try:
                yield cluster
            finally:
                cluster.stop(worker_timeout_s=20)

    return run


def scripted_key(**config: Any) -> tuple[ApiKey, str]:
    """An app on the scripted provider and its clear key."""
    app = make_app(provider_config=config, max_tokens=64)
    api_key, clear = make_key(app)
    return ApiKey.objects.select_related("app").get(id=api_key.id), clear


def words(count: int, prefix: str = "w") -> str:
    return " ".join(f"{prefix}{index}" for index in range(count))


def worker_pid(task_id: str) -> int:
    """The process running the task (worker names are host.pid)."""
    name = Task.objects.values_list("worker_name", flat=True).get(id=task_id)
    return int(name.rsplit(".", 1)[1])


def running_task(task_ids: list[str]) -> str | None:
    found = (
        Task.objects.filter(id__in=task_ids, status=TaskStatus.RUNNING)
        .values_list("id", flat=True)
        .first()
    )
    return str(found) if found else None
