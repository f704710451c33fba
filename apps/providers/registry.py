"""Choosing the provider client for an app's settings."""

import asyncio
import json
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from apps.providers.base import Provider
from apps.providers.credentials import DEFAULT_ALLOWED
from apps.providers.local import LocalProvider, LocalSettings, local_models
from apps.providers.scripted import ScriptedProvider

MAX_REMOTE_CLIENTS = 64


@dataclass(frozen=True)
class ProviderSettings:
    """What the process tells its providers (set once, from Django's settings, by the worker)."""

    local: LocalSettings = field(default_factory=LocalSettings)
    # Connections one remote client may hold: the answers a worker streams at once.
    remote_max_connections: int = 1000
    # Environment variables an app may name for its provider key (apps.providers.credentials).
    key_env_allowed: tuple[str, ...] = DEFAULT_ALLOWED


_settings = ProviderSettings()
_local = LocalProvider()
# OpenAI-compatible clients by event loop, then by configuration: each keeps a connection pool,
# worth reusing from one task to the next instead of opening (and leaking) one per task; an async
# pool belongs to the loop it was made on.
_remote: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Provider]]" = (
    weakref.WeakKeyDictionary()
)
_remote_lock = threading.Lock()


def providers_configure(settings: ProviderSettings) -> None:
    global _settings
    _settings = settings
    local_models.configure(settings.local)


def provider_for(*, kind: str, config: dict[str, Any]) -> Provider:
    if kind == "local":
        path = str(config.get("model_path") or "")
        return LocalProvider(model_path=path) if path else _local
    if kind == "scripted":
        return ScriptedProvider(config)
    if kind == "openai":
        return _remote_provider(config)
    raise ValueError(f"unknown provider {kind!r}")


def _remote_provider(config: dict[str, Any]) -> Provider:
    from apps.providers.openai_compat import OpenAICompatibleProvider, api_key_for

    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None  # counting tokens only, from a thread: no client is made for that
    if loop is None:
        return OpenAICompatibleProvider(config, max_connections=1)
    api_key = api_key_for(config, _settings.key_env_allowed)
    # The key itself is part of the identity: a rotated key gets a new client.
    cache_key = json.dumps([config, api_key], sort_keys=True, default=str)
    with _remote_lock:
        clients = _remote.setdefault(loop, {})
        provider = clients.get(cache_key)
        if provider is None:
            if len(clients) >= MAX_REMOTE_CLIENTS:
                clients.clear()  # configurations come and go with app edits; start afresh
            provider = clients[cache_key] = OpenAICompatibleProvider(
                config, api_key=api_key, max_connections=_settings.remote_max_connections
            )
    return provider


def providers_warm_up() -> None:
    """Load the default local model before the first job, so no request pays for it."""
    local_models.get()
