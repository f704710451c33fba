"""Choosing the provider client for an app's settings."""

import asyncio
import json
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from apps.providers.base import Provider
from apps.providers.credentials import DEFAULT_ALLOWED
from apps.providers.scripted import ScriptedProvider

MAX_REMOTE_CLIENTS = 64


@dataclass(frozen=True)
class ProviderSettings:
    """What the process tells its providers (set once, from Django's settings, by the worker)."""

    # Connections one remote client may hold: the answers a worker streams at once.
    remote_max_connections: int = 1000
    # Environment variables an app may name for its provider key (apps.providers.credentials).
    key_env_allowed: tuple[str, ...] = DEFAULT_ALLOWED


_settings = ProviderSettings()
# OpenAI-compatible clients by event loop, then by configuration: each keeps a connection pool,
# worth reusing from one task to the next instead of opening (and leaking) one per task; an async
# pool belongs to the loop it was made on.
_remote: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Provider]]" = (
    weakref.WeakKeyDictionary()
)
_remote_lock = threading.Lock()
# Clients made outside any event loop, to count tokens in a thread (they send no request).
_counting: dict[str, Provider] = {}


def providers_configure(settings: ProviderSettings) -> None:
    global _settings
    _settings = settings


def provider_for(*, kind: str, config: dict[str, Any]) -> Provider:
    if kind == "scripted":
        return ScriptedProvider(config)
    if kind in ("openai", "local"):
        return _remote_provider(kind, config)
    raise ValueError(f"unknown provider {kind!r}")


def _remote_provider(kind: str, config: dict[str, Any]) -> Provider:
    from apps.providers.local import LocalProvider
    from apps.providers.openai_compat import OpenAICompatibleProvider, api_key_for

    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None  # counting tokens only, from a thread: its client never sends a request
    api_key = api_key_for(config, _settings.key_env_allowed)
    # The key itself is part of the identity: a rotated key gets a new client.
    cache_key = json.dumps([kind, config, api_key], sort_keys=True, default=str)
    with _remote_lock:
        clients = _remote.setdefault(loop, {}) if loop is not None else _counting
        provider = clients.get(cache_key)
        if provider is None:
            if len(clients) >= MAX_REMOTE_CLIENTS:
                clients.clear()  # configurations come and go with edits; start afresh
            connections = _settings.remote_max_connections if loop is not None else 1
            if kind == "local":
                provider = LocalProvider(
                    {**config, "api_key": api_key}, max_connections=connections
                )
            else:
                provider = OpenAICompatibleProvider(
                    config, api_key=api_key, max_connections=connections
                )
            clients[cache_key] = provider
    return provider
