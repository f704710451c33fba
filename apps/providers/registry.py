"""Choosing the provider client for an app's settings."""

import json
import threading
from typing import Any

from apps.providers.base import Provider
from apps.providers.local import LocalModel, LocalProvider
from apps.providers.scripted import ScriptedProvider

_local = LocalProvider()
# OpenAI-compatible clients by configuration: each keeps a connection pool, worth reusing from one
# task to the next instead of opening (and leaking) one per task.
_remote: dict[str, Provider] = {}
_remote_lock = threading.Lock()
MAX_REMOTE_CLIENTS = 64


def provider_for(*, kind: str, config: dict[str, Any]) -> Provider:
    if kind == "local":
        return _local
    if kind == "scripted":
        return ScriptedProvider(config)
    if kind == "openai":
        return _remote_provider(config)
    raise ValueError(f"unknown provider {kind!r}")


def _remote_provider(config: dict[str, Any]) -> Provider:
    from apps.providers.openai_compat import OpenAICompatibleProvider, api_key_for

    # The key itself is part of the identity: a rotated key gets a new client.
    cache_key = json.dumps([config, api_key_for(config)], sort_keys=True, default=str)
    with _remote_lock:
        provider = _remote.get(cache_key)
        if provider is None:
            if len(_remote) >= MAX_REMOTE_CLIENTS:
                _remote.clear()  # configurations come and go with app edits; start afresh
            provider = _remote[cache_key] = OpenAICompatibleProvider(config)
    return provider


def providers_warm_up() -> None:
    """Load the built-in model before the first job, so no request pays for it."""
    LocalModel.shared()
