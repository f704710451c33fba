"""Choosing the provider client for an app's settings."""

from typing import Any

from apps.providers.base import Provider
from apps.providers.local import LocalModel, LocalProvider
from apps.providers.scripted import ScriptedProvider

_local = LocalProvider()


def provider_for(*, kind: str, config: dict[str, Any]) -> Provider:
    if kind == "local":
        return _local
    if kind == "scripted":
        return ScriptedProvider(config)
    if kind == "openai":
        from apps.providers.openai_compat import OpenAICompatibleProvider

        return OpenAICompatibleProvider(config)
    raise ValueError(f"unknown provider {kind!r}")


def providers_warm_up() -> None:
    """Load the built-in model before the first job, so no request pays for it."""
    LocalModel.shared()
