"""Validators of the App model's fields that need more than a type."""

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from apps.providers.credentials import key_env_allowed

# Keys that would put a secret in the JSON box, where the admin shows it to every viewer.
SECRET_CONFIG_KEYS = ("api_key", "apikey", "key", "token", "secret", "password", "bearer")


def provider_config_validate(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError("Provider settings must be a JSON object.")
    for name in value:
        if str(name).lower().replace("-", "_") in SECRET_CONFIG_KEYS:
            raise ValidationError(
                f"{name!r} would store a secret in plain text: set the provider key in the "
                "'Provider API key' field (kept encrypted), or name an allowed environment "
                "variable in api_key_env."
            )
    env_name = value.get("api_key_env")
    if env_name in (None, ""):
        return
    allowed = tuple(settings.PROVIDER_KEY_ENV_ALLOWED)
    if not isinstance(env_name, str) or not key_env_allowed(env_name, allowed):
        raise ValidationError(
            f"api_key_env {env_name!r} is not an allowed provider key variable: the operator "
            f"allows {', '.join(allowed) or 'none'} (PROVIDER_KEY_ENV_ALLOWED)."
        )
