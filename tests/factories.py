"""Rows for tests, made through the same services the platform uses."""

from typing import Any

from apps.applications.models import ApiKey, App
from apps.applications.services import api_key_create, app_create


def make_app(**fields: Any) -> App:
    defaults: dict[str, Any] = {
        "name": "Test app",
        "mode": "chat",
        "provider": "scripted",
        "provider_config": {"text": "Hello there, this is a scripted answer."},
        "max_tokens": 16,
    }
    defaults.update(fields)
    return app_create(**defaults)


def make_key(app: App, **fields: Any) -> tuple[ApiKey, str]:
    return api_key_create(app=app, **fields)


def make_app_with_key(**fields: Any) -> tuple[App, str]:
    app = make_app(**fields)
    _, clear_key = make_key(app)
    return app, clear_key
