"""A key's last use, for operators looking for unused keys: stamped on use, at most once a
minute per key and web process, and never taken for a change of the key (no cache is dropped)."""

import time
import uuid
from datetime import datetime

import httpx
import pytest
from websockets.sync.client import connect

from apps.applications.config_cache import config_version
from apps.applications.models import ApiKey
from tests.factories import make_app_with_key
from tests.processes import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _stamp(app_id: uuid.UUID) -> datetime | None:
    return ApiKey.objects.get(app_id=app_id).last_used_at


def test_async_routes_stamp_the_key_once_a_minute(live_web: WebServer) -> None:
    app, key = make_app_with_key()
    headers = {"Authorization": f"Bearer {key}"}
    assert _stamp(app.id) is None
    version = config_version()

    # Authenticated, then refused for its body: the key was still used.
    refused = httpx.post(f"{live_web.url}/v1/chat-messages", json={}, headers=headers)
    assert refused.status_code == 400
    give_up_at = time.monotonic() + 5
    while _stamp(app.id) is None:
        assert time.monotonic() < give_up_at, "the key's use was never stamped"
        time.sleep(0.05)
    stamped = _stamp(app.id)
    assert config_version() == version, "a key's use is not a change of its configuration"

    for _ in range(3):
        assert httpx.post(f"{live_web.url}/v1/chat-messages", json={}, headers=headers).is_error
    time.sleep(0.3)
    assert _stamp(app.id) == stamped


def test_a_websocket_connect_stamps_the_key(live_web: WebServer) -> None:
    """The socket's key check runs in a thread (the one synchronous path left): it stamps too."""
    app, key = make_app_with_key()
    url = f"ws://127.0.0.1:{live_web.port}/ws/v1/chat"
    with connect(url, additional_headers={"Authorization": f"Bearer {key}"}):
        give_up_at = time.monotonic() + 5
        while _stamp(app.id) is None:
            assert time.monotonic() < give_up_at, "the key's use was never stamped"
            time.sleep(0.05)
    stamped = _stamp(app.id)
    with connect(url, additional_headers={"Authorization": f"Bearer {key}"}):
        pass
    assert _stamp(app.id) == stamped
