"""A key's last use, for operators looking for unused keys: stamped on use, at most once a
minute per key and web process, and never taken for a change of the key (no cache is dropped)."""

import uuid
from datetime import datetime

import httpx
import pytest
from websockets.sync.client import connect

from apps.applications import services
from apps.applications.config_cache import config_version
from apps.applications.models import ApiKey
from tests.factories import make_app_with_key
from tests.processes import WebServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _stamp(app_id: uuid.UUID) -> datetime | None:
    return ApiKey.objects.get(app_id=app_id).last_used_at


def test_async_routes_stamp_the_key(live_web: WebServer) -> None:
    app, key = make_app_with_key()
    headers = {"Authorization": f"Bearer {key}"}
    assert _stamp(app.id) is None
    version = config_version()

    # Authenticated, then refused for its body: the key was still used.
    refused = httpx.post(f"{live_web.url}/v1/chat-messages", json={}, headers=headers)
    assert refused.status_code == 400
    wait_until(lambda: _stamp(app.id), 5, "the key's use to be stamped")
    assert config_version() == version, "a key's use is not a change of its configuration"


def test_a_key_is_stamped_at_most_once_per_resolution_in_a_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(services.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(services, "_key_use_written", {})
    key, other = ApiKey(id=uuid.uuid4()), ApiKey(id=uuid.uuid4())
    assert services.api_key_use_due(key)
    assert not services.api_key_use_due(key)
    assert services.api_key_use_due(other)
    now[0] += services.KEY_USE_RESOLUTION_S - 1
    assert not services.api_key_use_due(key)
    now[0] += 1
    assert services.api_key_use_due(key)


def test_a_websocket_connect_stamps_the_key(live_web: WebServer) -> None:
    """The socket checks its key on the same path as the routes: it stamps too."""
    app, key = make_app_with_key()
    url = f"ws://127.0.0.1:{live_web.port}/ws/v1/chat"
    with connect(url, additional_headers={"Authorization": f"Bearer {key}"}):
        wait_until(lambda: _stamp(app.id), 5, "the key's use to be stamped")
