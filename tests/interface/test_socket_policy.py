"""The socket's Origin policy and its authentication deadline, in process."""

import asyncio
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from apps.interface import consumers
from apps.interface.consumers import ChatConsumer, origin_allowed


def scope(origin: str | None, host: str = "127.0.0.1:8000") -> dict[str, Any]:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {"type": "websocket", "headers": headers}


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),  # API clients send no Origin: the key decides
        ("http://127.0.0.1:8000", True),  # the page the platform serves itself
        ("http://localhost:5173", True),  # a host in ALLOWED_HOSTS
        ("http://[::1]:8000", True),
        ("https://evil.example", False),
        ("http://127.0.0.1.evil.example", False),
        ("null", False),  # sandboxed frames and file:// pages
        ("", False),
        ("ftp://localhost", False),
    ],
)
def test_origin_policy(settings: Any, origin: str | None, allowed: bool) -> None:
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
    settings.WEBSOCKET_ALLOWED_ORIGINS = []
    assert origin_allowed(scope(origin)) is allowed


def test_same_host_is_allowed_even_when_it_is_not_listed(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["*"]  # a bare "*" does not open the socket to every origin
    assert origin_allowed(scope("https://chat.example.com", host="chat.example.com"))
    assert not origin_allowed(scope("https://evil.example", host="chat.example.com"))


def test_listed_origins(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["api.example.com"]
    settings.WEBSOCKET_ALLOWED_ORIGINS = ["https://app.example.com/"]
    assert origin_allowed(scope("https://APP.example.com", host="api.example.com"))
    assert not origin_allowed(scope("http://app.example.com", host="api.example.com"))
    settings.WEBSOCKET_ALLOWED_ORIGINS = ["*"]
    assert origin_allowed(scope("https://anything.example", host="api.example.com"))


# Channels' database_sync_to_async tidies connections around each call; allow it here.
@pytest.mark.django_db
def test_a_socket_that_never_authenticates_is_closed_with_4401(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumers, "AUTH_TIMEOUT_S", 0.2)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        communicator = WebsocketCommunicator(ChatConsumer.as_asgi(), "/ws/v1/chat")
        connected, _ = await communicator.connect()
        assert connected
        error = await communicator.receive_json_from(timeout=5)
        closed = await communicator.receive_output(timeout=5)
        await communicator.disconnect()
        return error, closed

    error, closed = asyncio.run(scenario())
    assert error == {
        "type": "error",
        "code": "unauthorized",
        "message": "No api_key within the time allowed.",
        "status": 401,
    }
    assert closed == {"type": "websocket.close", "code": 4401}
