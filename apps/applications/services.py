"""Creating apps and keys."""

import hashlib
import secrets
import threading
import time
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from apps.applications.models import ApiKey, App, share_code_new

KEY_PREFIX = "app-"


def api_key_digest(clear_key: str) -> str:
    # Keys carry 192 bits of randomness, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(clear_key.encode()).hexdigest()


@transaction.atomic
def api_key_create(*, app: App, name: str = "", max_priority: str = "high") -> tuple[ApiKey, str]:
    """Create a key for the app; returns the row and the clear key, which is never stored."""
    clear_key = KEY_PREFIX + secrets.token_urlsafe(24)
    api_key = ApiKey.objects.create(
        app=app,
        name=name,
        prefix=clear_key[:12],
        digest=api_key_digest(clear_key),
        max_priority=max_priority,
    )
    return api_key, clear_key


# A key's last use is written at most once a minute per key and process: operators see which keys
# are in use (and which to revoke) without a write on every request.
KEY_USE_RESOLUTION_S = 60.0
_key_use_written: dict[Any, float] = {}
_key_use_lock = threading.Lock()


def api_key_use_due(api_key: ApiKey) -> bool:
    """True at most once per KEY_USE_RESOLUTION_S for each key, in this process."""
    now = time.monotonic()
    with _key_use_lock:
        written = _key_use_written.get(api_key.id)
        if written is not None and now - written < KEY_USE_RESOLUTION_S:
            return False
        if len(_key_use_written) > 10_000:  # bounded, like the config cache
            _key_use_written.clear()
        _key_use_written[api_key.id] = now
    return True


def api_key_used(key_id: Any) -> None:
    """Stamp the key's last use. A plain queryset: a key's use is not a change of its
    configuration, so no process's config cache is dropped for it."""
    models.QuerySet(model=ApiKey).filter(id=key_id).update(last_used_at=timezone.now())


def app_share_code_rotate(app: App) -> None:
    """A new share code (saved with the row): the old chat link and its sessions end."""
    app.web_share_code = share_code_new()


@transaction.atomic
def web_session_key(app: App) -> ApiKey:
    """The app's key for end-user sessions of its chat page, made on first use. Its clear text
    is thrown away at once: it authenticates nothing by itself; sessions are mapped to it."""
    existing = ApiKey.objects.filter(app=app, for_web_sessions=True).first()
    if existing is not None:
        return existing
    App.objects.select_for_update().filter(id=app.id).first()  # one maker at a time per app
    existing = ApiKey.objects.filter(app=app, for_web_sessions=True).first()
    if existing is not None:
        return existing
    unusable = secrets.token_urlsafe(32)
    return ApiKey.objects.create(
        app=app,
        name="Web chat sessions",
        prefix="web-session",
        digest=api_key_digest("web-session:" + unusable),
        # Browsers ask at the app's priority, never above it.
        max_priority=app.default_priority,
        for_web_sessions=True,
    )
