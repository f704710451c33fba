"""OpenAI's official Node SDK (`openai` on npm, tests/compat/node), unchanged, against our live
server: a blocking chat completion with the client's whole conversation, a streamed one with its
usage chunk, the models list, and the refusals the SDK turns into its error classes. The second
real client of the OpenAI routes, beside the Python SDK (tests/openai). scripts/bootstrap.sh
(dev) installs it with `npm ci`."""

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from apps.conversations.models import Message
from tests.factories import make_app_with_key
from tests.processes import ROOT, WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

NODE_DIR = ROOT / "tests" / "compat" / "node"
ANSWER = "Bergen is the rainiest city in Norway."
MODEL = "node-scripted"
# The SDK's own major version 6 runs on Node 20 and later (its version 7 wants Node 22).
NODE_MAJOR_MIN = 20


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None or not (NODE_DIR / "node_modules" / "openai").is_dir():
        pytest.fail(
            "OpenAI's Node SDK is not installed: `make bootstrap-dev` (scripts/bootstrap.sh "
            "dev) installs it with npm ci in tests/compat/node, and needs node and npm."
        )
    version = subprocess.run(
        [found, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < NODE_MAJOR_MIN:
        pytest.fail(f"OpenAI's Node SDK needs Node {NODE_MAJOR_MIN}+, found {version}")
    return found


def run_sdk(node: str, platform: WebServer, key: str, model: str) -> dict[str, Any]:
    # The SDK reads OPENAI_* itself (organization, project, logging): none of a developer's own
    # settings may reach a request to the platform.
    env = {name: value for name, value in os.environ.items() if not name.startswith("OPENAI_")}
    completed = subprocess.run(
        [node, "openai_chat.mjs", f"{platform.url}/v1", key, model],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def test_chat_through_the_node_sdk(node: str, live_web: WebServer, live_worker: object) -> None:
    app, key = make_app_with_key(
        provider="scripted", provider_config={"text": ANSWER}, model_name=MODEL, max_tokens=64
    )
    result = run_sdk(node, live_web, key, MODEL)

    # Blocking: the scripted answer, a normal stop, usage that adds up.
    completion = result["blocking"]["completion"]
    assert completion["object"] == "chat.completion"
    assert completion["id"].startswith("chatcmpl-")
    assert completion["model"] == MODEL
    [choice] = completion["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == ANSWER
    assert choice["finish_reason"] == "stop"
    usage = completion["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    # Recorded with the client's earlier turns, the last user turn as the query.
    message = Message.objects.get(task_id=result["blocking"]["taskId"])
    assert message.app_id == app.id
    assert (message.query, message.answer, message.end_user) == (
        "Yes, the rainiest.",
        ANSWER,
        "node-user",
    )
    assert message.conversation_id is None
    assert message.history == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Which city?"},
        {"role": "assistant", "content": "In Norway?"},
    ]
    assert message.finish_reason == "stop"
    assert (message.prompt_tokens, message.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )

    # Streamed: one completion's chunks, the text in several deltas, one finish, usage last.
    stream = result["stream"]
    assert stream["contentType"].startswith("text/event-stream")
    chunks = stream["chunks"]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    deltas = [
        chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"]
    ]
    assert "".join(deltas) == ANSWER
    assert len([delta for delta in deltas if delta]) > 1
    finishing = [
        chunk for chunk in chunks if chunk["choices"] and chunk["choices"][0]["finish_reason"]
    ]
    assert [chunk["choices"][0]["finish_reason"] for chunk in finishing] == ["stop"]
    last = chunks[-1]
    assert last["choices"] == []
    streamed_usage = last["usage"]
    assert streamed_usage["completion_tokens"] > 0
    assert streamed_usage["total_tokens"] == (
        streamed_usage["prompt_tokens"] + streamed_usage["completion_tokens"]
    )
    assert [chunk for chunk in chunks if chunk.get("usage")] == [last]
    streamed_message = Message.objects.get(task_id=stream["taskId"])
    assert (streamed_message.query, streamed_message.answer) == ("Which city?", ANSWER)
    assert not streamed_message.history
    assert streamed_message.completion_tokens == streamed_usage["completion_tokens"]

    # The models list names the app's model, the one `model` may take.
    assert [(model["id"], model["object"]) for model in result["models"]] == [(MODEL, "model")]

    # Refusals come as the SDK's own classes, with OpenAI's envelope read into them.
    wrong_model = result["wrongModel"]
    assert wrong_model is not None, "a wrong model name was answered"
    assert (wrong_model["class"], wrong_model["notFound"]) == ("NotFoundError", True)
    assert (wrong_model["status"], wrong_model["code"]) == (404, "model_not_found")
    assert wrong_model["param"] == "model"
    assert "gpt-4o" in wrong_model["message"]
    wrong_key = result["wrongKey"]
    assert wrong_key is not None, "a key that does not exist was let in"
    assert (wrong_key["authentication"], wrong_key["status"]) == (True, 401)
    assert wrong_key["code"] == "invalid_api_key"

    # Only the two completions were recorded: the refusals left no message behind.
    assert Message.objects.filter(app=app).count() == 2
