"""Files with chat requests, end to end (a web process, a worker, loopback servers): an image
reaches a vision model as an image part and a PDF reaches the prompt as text; a file by URL is
fetched by the worker, from allowed addresses only; what the app's model cannot take is refused
with a clear error, never dropped."""

import base64
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from dify_client import ChatClient  # type: ignore[import-untyped]

from apps.applications.models import App
from apps.conversations.models import MessageFile
from apps.files.models import StoredFile
from apps.scheduling.models import Task
from tests.factories import make_app_with_key
from tests.files.samples import pdf, png
from tests.files.servers import ChatServer, FileServer
from tests.gateway.live import extra_web
from tests.processes import WebServer, run_worker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# The operator allows this one loopback address for files by URL (the files server below); every
# other address that is not public stays refused.
ALLOWED = {"FILE_REMOTE_ALLOWED_NETWORKS": "127.0.0.2/32"}
IMAGE = png(3, 2)


@pytest.fixture(scope="module")
def platform(django_db_setup: None) -> Iterator[WebServer]:
    with extra_web(**ALLOWED) as web, run_worker(env=ALLOWED):
        yield web


@pytest.fixture
def model() -> Iterator[ChatServer]:
    with ChatServer() as server:
        yield server


def client_for(platform: WebServer, key: str) -> Any:
    client = ChatClient(key)
    client.base_url = f"{platform.url}/v1"
    return client


def vision_app(model: ChatServer, **fields: Any) -> tuple[App, str]:
    settings: dict[str, Any] = {
        "provider": "openai",
        "provider_config": {"base_url": model.url},
        "model_name": "vision-model",
        "vision_enabled": True,
        "file_upload_enabled": True,
        "max_tokens": 32,
        **fields,
    }
    return make_app_with_key(**settings)


def uploaded(client: Any, name: str, content: bytes, mime: str, user: str = "u1") -> str:
    response = client.file_upload(user, files={"file": (name, content, mime)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def chat(client: Any, files: list[dict[str, str]], user: str = "u1", **extra: Any) -> Any:
    return client.create_chat_message(
        inputs={}, query="What is in the file?", user=user, files=files, **extra
    )


def asked(model: ChatServer) -> Any:
    """The question as the model got it: the first request (a title for the conversation may
    be asked for after the answer)."""
    return model.requests[0]["messages"][-1]


def test_an_image_reaches_the_vision_model_as_an_image_part(
    platform: WebServer, model: ChatServer
) -> None:
    _, key = vision_app(model, file_upload_documents=False)
    client = client_for(platform, key)
    file_id = uploaded(client, "photo.png", IMAGE, "image/png")

    answer = chat(
        client, [{"type": "image", "transfer_method": "local_file", "upload_file_id": file_id}]
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["answer"] == "I see it."
    assert asked(model) == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in the file?"},
            {
                "type": "image_url",
                "image_url": {
                    "url": "data:image/png;base64," + base64.b64encode(IMAGE).decode(),
                    "detail": "high",
                },
            },
        ],
    }
    listed = client.get_conversation_messages(
        user="u1", conversation_id=answer.json()["conversation_id"]
    ).json()["data"][0]["message_files"]
    assert [(f["type"], f["upload_file_id"], f["mime_type"]) for f in listed] == [
        ("image", file_id, "image/png")
    ]


def test_a_pdf_reaches_the_prompt_as_its_text(platform: WebServer, model: ChatServer) -> None:
    _, key = vision_app(model, vision_enabled=False, file_upload_images=False)
    client = client_for(platform, key)
    file_id = uploaded(client, "report.pdf", pdf("Sales rose 12% in Bergen."), "application/pdf")

    answer = chat(
        client, [{"type": "document", "transfer_method": "local_file", "upload_file_id": file_id}]
    )

    assert answer.status_code == 200, answer.text
    question = asked(model)["content"]
    assert isinstance(question, str)
    assert '<file name="report.pdf">\nSales rose 12% in Bergen.\n</file>' in question
    assert question.endswith("What is in the file?")


def test_a_file_by_url_is_fetched_by_the_worker_and_kept(
    platform: WebServer, model: ChatServer
) -> None:
    app, key = vision_app(model)
    client = client_for(platform, key)
    with FileServer(
        {"/cat.png": (200, {"Content-Type": "image/png"}, IMAGE)}, "127.0.0.2"
    ) as files:
        url = f"{files.url}/cat.png"
        answer = chat(client, [{"type": "image", "transfer_method": "remote_url", "url": url}])
        assert answer.status_code == 200, answer.text
        # Once: the worker keeps what it fetched.
        assert files.requested == ["/cat.png"]
    image = asked(model)["content"][1]["image_url"]["url"]
    assert image == "data:image/png;base64," + base64.b64encode(IMAGE).decode()
    kept = StoredFile.objects.get(app=app)
    assert (kept.end_user, kept.filename, kept.size) == ("u1", "cat.png", len(IMAGE))
    attachment = MessageFile.objects.get(message_id=answer.json()["message_id"])
    assert (attachment.url, attachment.stored_file_id) == (url, kept.id)


def test_a_url_to_a_private_address_is_refused(platform: WebServer, model: ChatServer) -> None:
    _, key = vision_app(model)
    client = client_for(platform, key)

    # An address anyone can see is private: refused before anything is recorded.
    tasks = Task.objects.count()
    literal = chat(
        client, [{"type": "image", "transfer_method": "remote_url", "url": "http://10.1.2.3/a.png"}]
    )
    assert literal.status_code == 400
    assert literal.json()["code"] == "invalid_param"
    assert "10.1.2.3 is not a public address" in literal.json()["message"]
    assert Task.objects.count() == tasks

    # A name is resolved by the worker, which refuses its address and never connects.
    with FileServer({"/a.png": (200, {}, IMAGE)}, "0.0.0.0") as files:
        url = f"http://{socket.gethostname()}:{files.port}/a.png"
        named = chat(client, [{"type": "image", "transfer_method": "remote_url", "url": url}])
        assert files.requested == []
    assert named.status_code == 400, named.text
    assert named.json()["code"] == "invalid_param"
    assert "not a public address" in named.json()["message"]
    assert model.requests == []


def test_what_the_model_cannot_take_is_refused_never_dropped(
    platform: WebServer, model: ChatServer
) -> None:
    _, text_only_key = vision_app(
        model, vision_enabled=False, file_upload_images=False, file_document_size_limit_mb=1
    )
    text_only = client_for(platform, text_only_key)
    _, vision_key = vision_app(model, file_upload_documents=False, file_image_size_limit_mb=1)
    vision = client_for(platform, vision_key)
    _, no_files_key = vision_app(model, file_upload_enabled=False)
    no_files = client_for(platform, no_files_key)
    notes = uploaded(text_only, "notes.md", b"# Notes\n", "text/markdown")

    def refused(client: Any, files: list[dict[str, str]], status: int, words: str) -> None:
        response = chat(client, files)
        assert response.status_code == status, response.text
        assert words in response.json()["message"], response.json()

    image_by_url = {"type": "image", "transfer_method": "remote_url", "url": "https://x.org/a.png"}
    refused(text_only, [image_by_url], 400, "does not read images")
    refused(no_files, [image_by_url], 400, "takes no files")
    note = {"type": "document", "transfer_method": "local_file", "upload_file_id": notes}
    refused(vision, [{**note, "type": "image"}], 404, "does not exist")  # another app's upload
    refused(text_only, [{**note, "type": "image"}], 400, "does not read images")
    refused(text_only, [{**note, "type": "audio"}], 400, "takes document files, not audio")
    refused(text_only, [note] * 4, 400, "at most 3")
    # Another end user's upload is as unknown as a made-up id.
    response = chat(text_only, [note], user="u2")
    assert (response.status_code, response.json()["code"]) == (404, "file_not_found")

    too_large = vision.file_upload(
        "u1", files={"file": ("big.png", IMAGE + b"\0" * (1024 * 1024), "image/png")}
    )
    assert (too_large.status_code, too_large.json()["code"]) == (413, "file_too_large")
    assert model.requests == []


def test_upload_refusals_in_difys_codes(platform: WebServer, model: ChatServer) -> None:
    _, key = vision_app(model, file_upload_documents=False)
    url = f"{platform.url}/v1/files/upload"
    headers = {"Authorization": f"Bearer {key}"}

    def upload(**request: Any) -> tuple[int, str]:
        response = httpx.post(url, headers=headers, **request)
        return response.status_code, response.json()["code"]

    png_part = ("a.png", IMAGE, "image/png")
    assert upload(data={"user": "u1"}, files={"other": png_part}) == (400, "no_file_uploaded")
    assert upload(json={"user": "u1"}) == (400, "no_file_uploaded")
    two = [("file", png_part), ("file", png_part)]
    assert upload(data={"user": "u1"}, files=two) == (400, "too_many_files")
    assert upload(files={"file": png_part}) == (400, "invalid_param")  # no user
    assert upload(data={"user": "u1"}, files={"file": ("a.pdf", pdf("x"), "application/pdf")}) == (
        415,
        "unsupported_file_type",
    )
    # A program renamed to look like an image.
    assert upload(data={"user": "u1"}, files={"file": ("a.png", b"MZ\x90\0", "image/png")}) == (
        415,
        "unsupported_file_type",
    )
    assert upload(data={"user": "u1"}, files={"file": ("a.png", IMAGE, "")}) == (
        415,
        "unsupported_file_type",
    )
    assert upload(data={"user": "u\x00"}, files={"file": png_part}) == (400, "invalid_param")
    assert upload(data={"user": "u1"}, files={"file": ("", IMAGE, "image/png")})[0] == 400
    preview = f"{platform.url}/v1/files/00000000-0000-0000-0000-000000000000/preview"
    missing = httpx.get(preview, params={"user": "u1"}, headers=headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "file_not_found")
    wrong = httpx.get(preview, params={"user": "u1", "as_attachment": "maybe"}, headers=headers)
    assert (wrong.status_code, wrong.json()["code"]) == (400, "invalid_param")
