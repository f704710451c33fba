"""Dify's official Node client (`dify-client` on npm, tests/compat/node), unchanged, against our
live server: uploads and their preview, a chat with a file, the message's files, suggested
questions, feedback and the feedback list, the site, end users, and the refusals a client must
be told about. scripts/bootstrap.sh (dev) installs the client with `npm ci`."""

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from tests.factories import make_app_with_key
from tests.processes import ROOT, WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

NODE_DIR = ROOT / "tests" / "compat" / "node"
SUGGESTIONS = '["Is Oslo rainy too?", "When is it driest?", "What should I pack?"]'


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None or not (NODE_DIR / "node_modules" / "dify-client").is_dir():
        pytest.fail(
            "Dify's Node client is not installed: `make bootstrap-dev` (scripts/bootstrap.sh "
            "dev) installs it with npm ci in tests/compat/node, and needs node and npm."
        )
    return found


def run_client(node: str, platform: WebServer, key: str) -> dict[str, Any]:
    completed = subprocess.run(
        [node, "client_run.mjs"],
        cwd=NODE_DIR,
        env={**os.environ, "DIFY_BASE_URL": f"{platform.url}/v1", "DIFY_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def test_every_route_through_the_node_client(
    node: str, live_web: WebServer, live_worker: object
) -> None:
    app, key = make_app_with_key(
        name="Weather",
        provider="scripted",
        provider_config={"text": SUGGESTIONS},
        max_tokens=64,
        file_upload_enabled=True,
        file_upload_images=False,
        file_document_size_limit_mb=2,
        suggested_questions_after_answer=True,
        site_icon="🌧",
    )
    result = run_client(node, live_web, key)

    parameters = result["parameters"]["data"]
    assert parameters["file_upload"]["enabled"] is True
    assert parameters["file_upload"]["allowed_file_types"] == ["document"]
    assert parameters["suggested_questions_after_answer"] == {"enabled": True}
    assert parameters["system_parameters"]["file_size_limit"] == 2

    upload = result["upload"]
    assert upload["status"] == 201
    assert (upload["data"]["name"], upload["data"]["mime_type"]) == ("notes.txt", "text/plain")
    assert upload["data"]["extension"] == "txt"
    assert result["preview"] == {"status": 200, "type": "text/plain", "same": True}

    chat = result["chat"]
    assert chat["status"] == 200, chat
    assert chat["data"]["answer"] == SUGGESTIONS
    files = result["messages"]["data"]["data"][0]["message_files"]
    assert [(f["type"], f["transfer_method"], f["upload_file_id"]) for f in files] == [
        ("document", "local_file", upload["data"]["id"])
    ]

    assert result["suggested"] == {
        "status": 200,
        "data": {
            "result": "success",
            "data": ["Is Oslo rainy too?", "When is it driest?", "What should I pack?"],
        },
    }
    assert result["feedback"] == {"status": 200, "data": {"result": "success"}}
    [feedback] = result["feedbacks"]["data"]["data"]
    assert (feedback["message_id"], feedback["rating"]) == (chat["data"]["message_id"], "like")
    assert feedback["from_end_user_id"] == upload["data"]["created_by"]
    assert (result["site"]["data"]["title"], result["site"]["data"]["icon"]) == ("Weather", "🌧")
    end_user = result["endUser"]["data"]
    assert (end_user["id"], end_user["external_user_id"]) == (
        upload["data"]["created_by"],
        "node-user",
    )
    assert str(app.id) == end_user["app_id"]

    def refusal(name: str) -> tuple[int, str]:
        return result[name]["status"], result[name]["data"]["code"]

    assert refusal("tooLarge") == (413, "file_too_large")
    assert refusal("wrongType") == (415, "unsupported_file_type")
    assert refusal("stranger") == (404, "file_not_found")
    assert refusal("privateUrl") == (400, "invalid_param")
    assert "not a public address" in result["privateUrl"]["data"]["message"]
