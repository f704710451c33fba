"""PostgreSQL restarts under traffic, on a private cluster (initdb in a temporary directory),
never the machine's shared one. Requests in flight may fail; clients retry with their
Idempotency-Key. Every task PostgreSQL accepted must finish exactly once, and the web processes
and workers must serve new requests without being restarted."""

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from django.conf import settings

from tests.drills.checks import assert_exactly_once, wait_final
from tests.drills.clients import BlockingResult, blocking_answer, blocking_with_retries
from tests.drills.conftest import drill_env, words
from tests.drills.servers import PostgresServer, postgres_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TEXT = words(8)
MAKE_KEY = """
from tests.factories import make_app, make_key
app = make_app(provider_config={"text": %r, "tokens_per_s": 16}, max_tokens=64)
print(make_key(app)[1])
"""


def prepared(server: PostgresServer, env: dict[str, str]) -> str:
    """Migrate the private database and make an app on it; returns the app's key."""
    server.create_database("drill")

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=settings.BASE_DIR,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    manage("migrate", "--noinput", "-v", "0")
    return manage("shell", "-c", MAKE_KEY % TEXT).strip().splitlines()[-1]


def test_postgres_restart_under_traffic(start_cluster: Callable[..., Any]) -> None:
    with postgres_server() as server:
        env = drill_env(DATABASE_URL=server.url("drill"))
        key = prepared(server, env)
        with start_cluster(env=env) as cluster:
            calls: list[BlockingResult] = []
            stop = threading.Event()

            def traffic() -> None:
                # About 4 requests a second for the whole drill, each retried until answered.
                while not stop.is_set():
                    call = BlockingResult()
                    calls.append(call)
                    threading.Thread(
                        target=blocking_with_retries,
                        args=(cluster.url, key, f"q{len(calls)}"),
                        kwargs={"result": call, "budget_s": 60},
                        daemon=True,
                    ).start()
                    time.sleep(0.25)

            sender = threading.Thread(target=traffic, daemon=True)
            sender.start()
            time.sleep(3)
            server.restart()
            time.sleep(4)
            stop.set()
            sender.join()

            def cursor() -> Any:
                return psycopg.connect(server.url("drill"), autocommit=True).cursor()

            with cursor() as read:
                read.execute("SELECT id::text FROM scheduling_task WHERE kind = 'chat'")
                accepted = sorted(row[0] for row in read.fetchall())
            found = wait_final(cursor, accepted, timeout_s=40)
            assert_exactly_once(found, dict.fromkeys(accepted, TEXT))

            for call in calls:
                assert call.done.wait(90), f"a client got no answer: {call.failures}"
                assert call.response is not None, call.failures
                assert call.response.status_code == 200, call.response.text
                assert call.response.json()["answer"] == TEXT
            answered = {str(call.response.json()["task_id"]) for call in calls if call.response}
            # Each client's task is one PostgreSQL accepted, and a retried request never made a
            # second task.
            assert answered == set(accepted)
            # Some requests met the restart (and were retried), and all is served again.
            assert blocking_answer(cluster.url, key, "after").status_code == 200
