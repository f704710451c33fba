"""A request body over its route's limit is refused while it arrives, by the web server as the
run commands start it: a declared Content-Length at once (before any of it is sent, and with no
`100 Continue`), a chunked body as soon as it passes the limit; the web process holds at most
the limit meanwhile. Uploads keep their own, larger, limits. Under any other ASGI server the
handler refuses the same bodies the same way."""

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from django.conf import settings

from apps.interface.http.handler import PlatformASGIHandler
from tests.gateway.live import extra_web
from tests.processes import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MB = 1024 * 1024
WAIT_S = 15.0


@pytest.fixture(scope="module")
def web(django_db_setup: None) -> Iterator[WebServer]:
    with extra_web() as server:
        yield server


def rss(web: WebServer) -> int:
    return int(psutil.Process(web.process.pid).memory_info().rss)


def connect(web: WebServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=WAIT_S)
    sock.settimeout(WAIT_S)
    return sock


def answer(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """The status, headers and JSON body of the response on `sock` (read until it closes)."""
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            break
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if ": " in line)}
    if headers.get("transfer-encoding") == "chunked":
        body = dechunked(body)
    return int(lines[0].split()[1]), headers, json.loads(body)


def dechunked(body: bytes) -> bytes:
    whole = b""
    while body:
        size, _, body = body.partition(b"\r\n")
        length = int(size, 16)
        if length == 0:
            break
        whole, body = whole + body[:length], body[length + 2 :]
    return whole


def request_head(path: str, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("expect", [False, True])
def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(
    web: WebServer, expect: bool
) -> None:
    before = rss(web)
    extra = {"Expect": "100-continue"} if expect else {}
    with connect(web) as sock:
        sock.sendall(
            request_head(
                "/v1/chat-messages",
                **{"Content-Type": "application/json", "Content-Length": str(300 * MB)},
                **extra,
            )
        )
        status, headers, body = answer(sock)  # none of the 300 MB was sent
    assert status == 413
    assert body == {
        "code": "request_too_large",
        "message": f"Request body exceeds {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
        "status": 413,
    }
    assert headers["connection"] == "close"
    assert rss(web) - before < 8 * MB


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(web: WebServer) -> None:
    before = rss(web)
    chunk = b"x" * MB
    sent = 0
    with connect(web) as sock:
        sock.sendall(request_head("/v1/chat-messages", **{"Transfer-Encoding": "chunked"}))
        sock.settimeout(0.0)
        refused = b""
        # Up to 256 MB, until the server has answered (what was sent since is read and dropped).
        while sent < 256 * MB and not refused:
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                refused = sock.recv(65536)
            except BlockingIOError:
                continue
        sock.settimeout(WAIT_S)
        status, _, body = answer(sock) if not refused else (int(refused.split()[1]), {}, None)
    assert status == 413, body
    assert sent < 64 * MB, f"the server read {sent} bytes before refusing them"
    assert rss(web) - before < 16 * MB


def test_uploads_keep_their_larger_limits(web: WebServer) -> None:
    over = (settings.FILE_UPLOAD_MAX_MB + 1) * MB
    with connect(web) as sock:
        sock.sendall(
            request_head(
                "/v1/files/upload",
                **{"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(over)},
            )
        )
        status, _, body = answer(sock)
    assert (status, body["code"]) == (413, "file_too_large")
    # A batch file of a few MB is more than the JSON routes take, within its own limit: it gets
    # to the application (here: refused for its missing key), in OpenAI's envelope.
    payload = (
        b"--x\r\nContent-Disposition: form-data; name=purpose\r\n\r\nbatch\r\n"
        b'--x\r\nContent-Disposition: form-data; name=file; filename="in.jsonl"\r\n\r\n'
        + b"{}\n" * MB
        + b"\r\n--x--\r\n"
    )
    with connect(web) as sock:
        sock.sendall(
            request_head(
                "/v1/files",
                **{
                    "Content-Type": "multipart/form-data; boundary=x",
                    "Content-Length": str(len(payload)),
                    "Connection": "close",
                },
            )
            + payload
        )
        status, _, body = answer(sock)
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"
    over_batch = (settings.BATCHES["MAX_FILE_MB"] + 1) * MB
    with connect(web) as sock:
        sock.sendall(request_head("/v1/files", **{"Content-Length": str(over_batch)}))
        status, _, body = answer(sock)
    assert status == 413
    assert body["error"]["code"] == "file_too_large"


def asgi_post(path: str, chunks: list[bytes], **headers: str) -> tuple[int, Any, int]:
    """POST through the handler as any ASGI server would drive it: the status, the JSON body,
    and how many of `chunks` the handler asked for."""
    handler = PlatformASGIHandler()
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    asked = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if asked < len(messages):
            asked += 1
            return messages[asked - 1]
        await asyncio.Event().wait()  # nothing more: the client waits for the answer
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(asyncio.wait_for(handler(scope, receive, send), WAIT_S))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), asked


def test_the_handler_refuses_over_the_limit_under_any_server() -> None:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    status, body, asked = asgi_post("/v1/chat-messages", [b"{}"], **{"Content-Length": "99999999"})
    assert (status, body["code"], asked) == (413, "request_too_large", 0)
    chunks = [b"x" * (limit // 4)] * 100
    status, body, asked = asgi_post("/v1/chat-messages", chunks)
    assert (status, body["code"]) == (413, "request_too_large")
    assert asked == 5  # the first chunk past the limit, and not one more
