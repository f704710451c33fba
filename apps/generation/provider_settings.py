"""The providers' settings, from Django's (providers themselves know nothing of Django)."""

from typing import Any

from django.conf import settings

from apps.applications.models import App
from apps.core.sealing import UnsealError, unseal
from apps.providers.base import Provider, ProviderError
from apps.providers.local import LocalSettings
from apps.providers.registry import ProviderSettings, provider_for


def provider_settings() -> ProviderSettings:
    platform = settings.PLATFORM
    return ProviderSettings(
        local=LocalSettings(
            threads=platform["LOCAL_MODEL_THREADS"],
            context=platform["LOCAL_MODEL_CONTEXT"],
            parallel=platform["LOCAL_MODEL_PARALLEL"],
            model_path=platform["LOCAL_MODEL_PATH"],
            models_dir=platform["LOCAL_MODELS_DIR"],
        ),
        remote_max_connections=platform["WORKER_CONCURRENCY"],
        key_env_allowed=tuple(settings.PROVIDER_KEY_ENV_ALLOWED),
    )


def app_provider_config(app: App) -> dict[str, Any]:
    """The app's provider settings as its provider takes them: its sealed key opened in memory
    (never a key written into the JSON, which the validators refuse anyway)."""
    config = dict(app.provider_config or {})
    config.pop("api_key", None)
    if app.provider_api_key_sealed:
        try:
            config["api_key"] = unseal(app.provider_api_key_sealed)
        except UnsealError as error:
            raise ProviderError(
                f"the app's provider key cannot be opened: {error} (was SEALING_SECRETS changed?)",
                retryable=False,
                code="provider_not_initialize",
            ) from None
    return config


def app_provider(app: App) -> Provider:
    """The provider client for the app; ProviderError when its credentials are unusable."""
    return provider_for(kind=app.provider, config=app_provider_config(app))
