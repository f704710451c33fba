"""Behind the deploy files' nginx (deploy/nginx, as run_cluster renders it): bodies are limited by
route as the platform limits them (a batch file of a few MB gets through to the platform, a
chat request of that size does not), the client's own X-Forwarded-For counts for nothing, and
nginx's access log holds no share code."""

import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apps.operations.cluster_nginx import nginx_command, nginx_config_check, runtime_prepare
from tests.factories import make_app, make_app_with_key
from tests.gateway.live import extra_web
from tests.processes import free_port, process_ready_wait
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MB = 1024 * 1024


@pytest.fixture
def nginx() -> Iterator[tuple[str, Path]]:
    """nginx on a free port in front of a web process that trusts it (loopback). Its directory
    is not under pytest's (private to root): nginx's workers run as nobody when root starts it."""
    runtime_dir = Path(tempfile.mkdtemp(prefix="dify-nginx-test-"))
    env = {
        "TRUSTED_PROXIES": "127.0.0.1",
        "ANON_RATE_LIMIT_PER_S": "0.01",
        "ANON_RATE_LIMIT_BURST": "10",
    }
    with extra_web(**env) as web:
        port = free_port()
        main = runtime_prepare(
            runtime_dir=runtime_dir,
            upstreams=[f"127.0.0.1:{web.port}"],
            listen=f"127.0.0.1:{port}",
        )
        nginx_config_check(main)
        process = subprocess.Popen(nginx_command(main, "-g", "daemon off;"))
        url = f"http://127.0.0.1:{port}"
        try:
            process_ready_wait(lambda: _answers(url), "nginx to start", process)
            yield url, main.parent / "access.log"
        finally:
            process.terminate()
            process.wait(timeout=10)
            shutil.rmtree(runtime_dir, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def test_batch_files_get_through_and_large_chat_bodies_do_not(nginx: tuple[str, Path]) -> None:
    url, _ = nginx
    _, key = make_app_with_key()
    lines = b"".join(
        b'{"custom_id": "r%d", "method": "POST", "url": "/v1/chat/completions", "body": '
        b'{"model": "m", "messages": [{"role": "user", "content": "%s"}]}}\n' % (index, b"x" * 2000)
        for index in range(1500)
    )
    assert len(lines) > 3 * MB
    uploaded = httpx.post(
        f"{url}/v1/files",
        headers={"Authorization": f"Bearer {key}"},
        data={"purpose": "batch"},
        files={"file": ("in.jsonl", lines, "application/jsonl")},
        timeout=60,
    )
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["bytes"] == len(lines)
    too_large = httpx.post(
        f"{url}/v1/chat-messages",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        content=b"{" + b" " * (3 * MB) + b"}",
        timeout=60,
    )
    assert too_large.status_code == 413


def test_the_clients_own_forwarded_address_counts_for_nothing(nginx: tuple[str, Path]) -> None:
    url, _ = nginx
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=url, timeout=30) as client:
        for index in range(30):
            headers = {"X-Forwarded-For": f"203.0.113.{index}"}
            statuses[client.get("/v1/parameters", headers=headers).status_code] += 1
    assert statuses == {401: 10, 429: 20}, statuses


def test_nginx_logs_no_share_code(nginx: tuple[str, Path]) -> None:
    url, access_log = nginx
    app = make_app(web_chat_enabled=True)
    code = app.web_share_code
    assert httpx.get(f"{url}/chat/{code}", timeout=30).status_code == 200
    httpx.get(f"{url}/ws/v1/chat?app_code={code}&x=1", timeout=30)
    httpx.get(f"{url}/chat/static/chat.js", timeout=30)
    # nginx writes each line as a request ends.
    wait_until(lambda: access_log.read_text().count("\n") >= 3, 10, "nginx's access log")
    written = access_log.read_text()
    assert code not in written
    assert "/chat/<share_code>" in written
    assert "app_code=<share_code>&x=1" in written
    assert "/chat/static/chat.js" in written
