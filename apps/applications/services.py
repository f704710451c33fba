"""Creating apps and keys."""

import hashlib
import secrets
from typing import Any

from django.db import transaction

from apps.applications.models import ApiKey, App

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


@transaction.atomic
def app_create(*, name: str, mode: str = "chat", **fields: Any) -> App:
    return App.objects.create(name=name, mode=mode, **fields)
