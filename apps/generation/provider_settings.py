"""The providers' settings, from Django's (providers themselves know nothing of Django), and the
client for a deployment."""

from typing import Any

from django.conf import settings

from apps.core.sealing import UnsealError, unseal
from apps.deployments.model_servers import local_model_api_key
from apps.deployments.models import ProviderKind
from apps.deployments.selectors import Endpoint
from apps.providers.base import Provider, ProviderError
from apps.providers.registry import ProviderSettings, provider_for


def provider_settings() -> ProviderSettings:
    platform = settings.PLATFORM
    return ProviderSettings(
        remote_max_connections=platform["WORKER_CONCURRENCY"],
        key_env_allowed=tuple(settings.PROVIDER_KEY_ENV_ALLOWED),
    )


def endpoint_config(endpoint: Endpoint) -> dict[str, Any]:
    """The deployment's settings as its provider takes them: its server, model and key (the
    sealed key opened in memory, never written into the JSON). The key goes with the base URL
    it was stored for, and nowhere else."""
    config = dict(endpoint.config)
    for secret in ("api_key", "api_key_env", "base_url"):
        config.pop(secret, None)
    config["base_url"] = endpoint.url
    if endpoint.provider == ProviderKind.LOCAL:
        config["api_key"] = local_model_api_key()
        return config
    if endpoint.api_key_env:
        config["api_key_env"] = endpoint.api_key_env
    if endpoint.api_key_sealed:
        try:
            config["api_key"] = unseal(endpoint.api_key_sealed)
        except UnsealError as error:
            raise ProviderError(
                f"deployment {endpoint.name}'s key cannot be opened: {error} "
                "(was SEALING_SECRETS changed?)",
                retryable=False,
                code="provider_not_initialize",
            ) from None
    return config


def endpoint_provider(endpoint: Endpoint) -> Provider:
    """The provider client for a deployment; ProviderError when its credentials are unusable."""
    return provider_for(kind=endpoint.provider, config=endpoint_config(endpoint))
