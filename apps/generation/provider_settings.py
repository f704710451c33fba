"""The providers' settings, from Django's (providers themselves know nothing of Django)."""

from django.conf import settings

from apps.providers.local import LocalSettings
from apps.providers.registry import ProviderSettings


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
    )
