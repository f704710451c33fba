"""The `openai` provider against real OpenAI-compatible servers on loopback: llama.cpp's own HTTP
server with the built-in model (streaming, usage), and a small server of ours that answers as told
(429 and 5xx retried by the scheduler, a timeout retried, a 400 failed at once)."""

import asyncio
import contextlib
import json
import os
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from apps.providers.base import ChatMessage, GenerationRequest
from apps.providers.openai_compat import OpenAICompatibleProvider
from apps.providers.tokens import prompt_tokens_estimate, text_tokens_estimate
from apps.scheduling.coordination.capacity import deployment_load
from apps.scheduling.models import Task, TaskEvent, TaskStatus
from tests.factories import app_deployment, make_app, model_of
from tests.generation.tasks import events, message_of, run, shown_answer, submit_to
from tests.processes import ROOT, free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

KEY_ENV = "PROVIDER_KEY_TEST_LLAMA"  # an allowed name (PROVIDER_KEY_ENV_ALLOWED)
LLAMA_KEY = "test-key-for-llama-server"
START_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """llama.cpp's HTTP server (its own process) with the built-in model; yields its /v1 URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.providers.llama_server", str(free_port())],
        cwd=ROOT,
        env={**os.environ, "LLAMA_SERVER_API_KEY": LLAMA_KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=START_TIMEOUT_S)
        line = process.stdout.readline() if ready else ""
        assert line.startswith("listening "), f"llama server did not start: {line!r}"
        yield line.split()[1] + "/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def llama_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, LLAMA_KEY)
    return KEY_ENV


def test_streams_from_llama_server_and_reports_its_usage(llama_server: str, llama_key: str) -> None:
    provider = OpenAICompatibleProvider({"base_url": llama_server, "api_key_env": llama_key})
    pieces: list[str] = []

    def collect(piece: str) -> bool:
        pieces.append(piece)
        return False  # never stop

    request = GenerationRequest(
        messages=[ChatMessage("user", "Write a sentence about the sea.")],
        model="SmolLM2-135M-Instruct",
        max_tokens=12,
        temperature=0,
    )
    result = asyncio.run(provider.generate(request, collect))

    assert len(pieces) > 3, "the answer arrives in pieces, as it is generated"
    assert "".join(pieces).strip()
    assert result.prompt_tokens is not None
    assert result.prompt_tokens > 5
    assert result.completion_tokens is not None
    assert 0 < result.completion_tokens <= 12
    assert result.finish_reason in ("length", "stop")


def test_an_openai_app_answers_through_the_scheduler(llama_server: str, llama_key: str) -> None:
    app = make_app(
        provider="openai",
        provider_config={"base_url": llama_server, "api_key_env": llama_key},
        max_tokens=10,
        temperature=0,
    )
    task = run(submit_to(app, "Name a colour."))

    assert task.status == TaskStatus.SUCCEEDED
    message = message_of(task)
    assert message.answer
    assert message.answer == shown_answer(task)
    assert message.provider == "openai"
    assert message.prompt_tokens > 5
    assert 0 < message.completion_tokens <= 10
    assert message.first_token_s is not None
    assert message.latency_s is not None
    assert message.first_token_s <= message.latency_s
    end = events(task)[-1]
    assert end["event"] == "message_end"
    usage = end["metadata"]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        message.prompt_tokens,
        message.completion_tokens,
    )


def test_a_wrong_key_fails_at_once(llama_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "not-the-key")
    app = make_app(
        provider="openai", provider_config={"base_url": llama_server, "api_key_env": KEY_ENV}
    )
    task = run(submit_to(app))

    assert (task.status, task.attempts) == (TaskStatus.FAILED, 1)
    last = events(task)[-1]
    assert (last["event"], last["status"], last["code"]) == (
        "error",
        400,
        "completion_request_error",
    )
    assert "401" in last["message"]


class ScriptedServer:
    """An OpenAI-compatible server of ours on 127.0.0.1: each request takes the next step of the
    script (the last repeats) and is recorded."""

    def __init__(self, steps: list[tuple[Any, ...]]) -> None:
        self.steps = steps
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                step = server.steps[min(len(server.requests), len(server.steps)) - 1]
                # The client may give up first (the timeout tests).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    getattr(self, f"_{step[0]}")(*step[1:])

            def _status(self, status: int, message: str) -> None:
                raw = json.dumps({"error": {"message": message, "type": "test"}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _sleep(self, seconds: float) -> None:
                time.sleep(seconds)
                self._stream(["too late"], None)

            def _stall(self, pieces: list[str], seconds: float) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for piece in pieces:
                    self.wfile.write(
                        f"data: {json.dumps(_chunk({'content': piece}, None))}\n\n".encode()
                    )
                self.wfile.flush()
                time.sleep(seconds)

            def _stream(self, pieces: list[str], usage: dict[str, int] | None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                chunks = [_chunk({"content": piece}, None) for piece in pieces]
                chunks.append(_chunk({}, "stop"))
                if usage is not None:
                    chunks.append(
                        {
                            "id": "c",
                            "object": "chat.completion.chunk",
                            "created": 0,
                            "model": "m",
                            "choices": [],
                            "usage": usage,
                        }
                    )
                for chunk in chunks:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "ScriptedServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _chunk(delta: dict[str, str], finish: str | None) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


SUCCESS = (
    "stream",
    ["Fine", ", thanks", "."],
    {"prompt_tokens": 21, "completion_tokens": 3, "total_tokens": 24},
)


def openai_app(server: ScriptedServer, **fields: Any) -> Any:
    config = {"base_url": server.url, "api_key_env": KEY_ENV, **fields.pop("config", {})}
    return make_app(provider="openai", provider_config=config, **fields)


def quick_cooldown() -> Any:
    return override_settings(PLATFORM={**settings.PLATFORM, "DEPLOYMENT_COOLDOWN_S": 0.1})


@pytest.mark.parametrize("status", [500, 502])
def test_server_errors_are_retried_until_success(
    status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with ScriptedServer([("status", status, "slow down"), SUCCESS]) as server:
        task = submit_to(openai_app(server, stop=["END"], max_tokens=40), "How are you?")

        task = run(task)
        assert (task.status, task.attempts) == (TaskStatus.RETRYING, 1)
        assert str(status) in task.error_message

        task = run(task)
        assert (task.status, task.attempts) == (TaskStatus.SUCCEEDED, 2)
    assert_answered(task, server)


@pytest.mark.parametrize("status", [429, 503])
def test_a_server_too_busy_to_answer_makes_the_answer_wait_without_spending_an_attempt(
    status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that refuses for load (429) or is unavailable (503) is cooled down, and the
    answer waits for its next turn: the client never sees it while the deployment can still
    serve it."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with quick_cooldown(), ScriptedServer([("status", status, "slow down"), SUCCESS]) as server:
        task = submit_to(openai_app(server, stop=["END"], max_tokens=40), "How are you?")

        task = run(task)
        assert (task.status, task.attempts) == (TaskStatus.QUEUED, 0)
        deployment = served_by(task)
        assert deployment_load(deployment).state == "open"  # cooling down
        assert TaskEvent.objects.filter(task=task, reason=f"refused by {deployment}").exists()

        wait_until(lambda: deployment_load(deployment).state != "open", 5, "the cooldown")
        task = run(task)
        assert (task.status, task.attempts) == (TaskStatus.SUCCEEDED, 1)
    assert_answered(task, server)


def served_by(task: Task) -> str:
    assert task.app is not None
    return app_deployment(task.app).name


def assert_answered(task: Task, server: "ScriptedServer") -> None:
    message = message_of(task)
    assert message.answer == "Fine, thanks."
    # The provider's own usage numbers are the ones recorded.
    assert (message.prompt_tokens, message.completion_tokens) == (21, 3)
    sent = server.requests[-1]
    assert sent["model"] == model_of(message.app)
    assert sent["stream"] is True
    assert sent["max_tokens"] == 40
    assert sent["stop"] == ["END"]
    assert sent["messages"][-1] == {"role": "user", "content": "How are you?"}
    assert server.headers[-1]["authorization"] == "Bearer sk-test"


def test_refused_past_its_free_turns_an_answer_ends_dead_with_rate_limit_error() -> None:
    platform = {**settings.PLATFORM, "DEPLOYMENT_REFUSALS_FREE": 0, "DEPLOYMENT_COOLDOWN_S": 0.1}
    with (
        override_settings(PLATFORM=platform),
        ScriptedServer([("status", 429, "quota exceeded")]) as server,
    ):
        task = submit_to(openai_app(server, max_attempts=2))
        task = run(task)
        assert (task.status, task.attempts) == (TaskStatus.RETRYING, 1)
        wait_until(lambda: deployment_load(served_by(task)).state != "open", 5, "the cooldown")
        task = run(task)

    assert (task.status, task.attempts) == (TaskStatus.DEAD, 2)
    last = events(task)[-1]
    assert (last["status"], last["code"]) == (429, "rate_limit_error")
    assert "quota exceeded" in last["message"]


@pytest.mark.parametrize(
    "slow_step",
    [("sleep", 4.0), ("stall", ["Half ", "an "], 4.0)],
    ids=["before-the-answer", "mid-stream"],
)
def test_a_provider_slower_than_the_apps_timeout_is_a_retryable_error(
    slow_step: tuple[Any, ...],
) -> None:
    with ScriptedServer([slow_step, SUCCESS]) as server:
        task = submit_to(openai_app(server, config={"timeout_s": 1}))
        started = time.monotonic()
        task = run(task)
        waited = time.monotonic() - started

        assert (task.status, task.attempts) == (TaskStatus.RETRYING, 1)
        assert "timed out" in task.error_message
        assert waited < 3.5, "the attempt gave up at the app's timeout, not the server's pace"
        task = run(task)
    assert task.status == TaskStatus.SUCCEEDED
    # A retry first takes back whatever the slow attempt had shown.
    assert shown_answer(task) == message_of(task).answer == "Fine, thanks."


def test_a_bad_request_fails_at_once_without_a_retry() -> None:
    with ScriptedServer([("status", 400, "max_tokens is too large"), SUCCESS]) as server:
        task = run(submit_to(openai_app(server)))

        assert (task.status, task.attempts) == (TaskStatus.FAILED, 1)
        assert len(server.requests) == 1
    last = events(task)[-1]
    assert (last["event"], last["status"], last["code"]) == (
        "error",
        400,
        "completion_request_error",
    )
    assert "max_tokens is too large" in last["message"]


def test_usage_is_counted_when_the_server_sends_none() -> None:
    with ScriptedServer([("stream", ["Counted ", "here."], None)]) as server:
        task = run(submit_to(openai_app(server, system_prompt="Be brief."), "Count me"))

    message = message_of(task)
    assert message.answer == "Counted here."
    expected_prompt = prompt_tokens_estimate(
        [ChatMessage("system", "Be brief."), ChatMessage("user", "Count me")]
    )
    assert message.prompt_tokens == expected_prompt > 0
    assert message.completion_tokens == text_tokens_estimate("Counted here.") > 0
