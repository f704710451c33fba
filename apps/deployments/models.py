"""Model deployments: the endpoints that answer, each with the capacity it serves, and which apps
each one serves.

A deployment is the scarce resource the scheduler shares out (apps.scheduling.coordination.
capacity): answers wait for room in one, strictly by priority, then in fair shares between the
apps it serves. It holds a credential, so only superusers manage deployments; staff who edit an
app choose among them.
"""

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from apps.applications.models import App, ConfigQuerySet
from apps.core.models import TimestampedModel
from apps.deployments.base_urls import BaseUrlRefused, base_url_check
from apps.providers.credentials import key_env_allowed

BUILTIN_DEPLOYMENT = "builtin"
# Keys that would put a secret in the JSON box, where the admin shows it to every viewer.
SECRET_CONFIG_KEYS = ("api_key", "apikey", "key", "token", "secret", "password", "bearer")


class ProviderKind(models.TextChoices):
    LOCAL = "local", "Built-in model server (llama.cpp)"
    OPENAI = "openai", "OpenAI-compatible server"
    SCRIPTED = "scripted", "Scripted (tests and benchmarks)"


def config_validate(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError("Provider settings must be a JSON object.")
    for name in value:
        if str(name).lower().replace("-", "_") in SECRET_CONFIG_KEYS:
            raise ValidationError(
                f"{name!r} would store a secret in plain text: set the key in the 'API key' "
                "field (kept encrypted), or name an allowed environment variable."
            )


class Deployment(TimestampedModel):
    """One model endpoint and the capacity it serves.

    `max_concurrency` is the sequences it serves at once (a vLLM server's batch, an API plan's
    parallel requests, the built-in model server's slots); answers over it wait their turn. The
    built-in model (`provider=local`) is a llama.cpp server of its own that the worker pool of
    each host starts at `base_url` (loopback by default) with `max_concurrency` slots of
    `context_window` tokens.
    """

    name = models.SlugField(max_length=64, unique=True)
    enabled = models.BooleanField(
        default=True, help_text="Disabled: serves nothing; its apps use their other deployments."
    )
    provider = models.CharField(
        max_length=16, choices=ProviderKind.choices, default=ProviderKind.OPENAI
    )
    base_url = models.CharField(
        max_length=512,
        blank=True,
        default="",
        help_text="The server's OpenAI-compatible API, e.g. http://vllm.internal:8000/v1 "
        "(within PROVIDER_BASE_URL_ALLOWED). Built-in model: where its server listens "
        "(empty: http://127.0.0.1:LOCAL_MODEL_PORT/v1).",
    )
    model = models.CharField(
        max_length=255, help_text="The model name the server is asked for (`model`)."
    )
    # The key, encrypted (apps.core.sealing); only its first characters are shown.
    api_key_sealed = models.TextField(blank=True, default="", editable=False)
    api_key_hint = models.CharField(max_length=16, blank=True, default="", editable=False)
    api_key_env = models.CharField(
        max_length=128,
        blank=True,
        default="",
        help_text="Or: the environment variable that holds the key (PROVIDER_KEY_ENV_ALLOWED).",
    )
    config = models.JSONField(
        default=dict,
        blank=True,
        validators=[config_validate],
        help_text='Further settings: {"timeout_s": 60} for servers; the built-in model\'s '
        '{"model_path": "file.gguf"} (inside LOCAL_MODELS_DIR); the scripted provider\'s text.',
    )
    context_window = models.PositiveIntegerField(
        default=8192,
        validators=[MinValueValidator(16)],
        help_text="Tokens of context per sequence. A prompt that does not fit goes to a "
        "deployment of the app whose window fits, or is refused.",
    )
    max_concurrency = models.PositiveIntegerField(
        default=8,
        validators=[MinValueValidator(1)],
        help_text="Sequences served at once; answers beyond wait their turn.",
    )
    reserved_for_high = models.PositiveIntegerField(
        default=0,
        help_text="Of those, how many only `high` work may use: a live chat then never waits "
        "for lower-priority work to finish.",
    )
    rpm_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests started per minute at most; empty: no limit."
    )
    tpm_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Tokens (prompt + answer) per minute; empty: no limit."
    )
    vision = models.BooleanField(
        default=False, help_text="The model reads images (OpenAI image parts)."
    )

    objects = ConfigQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        errors: dict[str, str] = {}
        if self.reserved_for_high >= self.max_concurrency:
            errors["reserved_for_high"] = "Leave at least one sequence to all priorities."
        if self.provider == ProviderKind.OPENAI:
            if not self.base_url:
                errors["base_url"] = "An OpenAI-compatible deployment needs its server's URL."
            else:
                try:
                    base_url_check(self.base_url, settings.PROVIDER_BASE_URL_ALLOWED)
                except BaseUrlRefused as refused:
                    errors["base_url"] = str(refused)
        if self.provider == ProviderKind.LOCAL and self.vision:
            errors["vision"] = "The built-in model does not read images."
        if self.api_key_env and not key_env_allowed(
            self.api_key_env, tuple(settings.PROVIDER_KEY_ENV_ALLOWED)
        ):
            errors["api_key_env"] = (
                f"{self.api_key_env!r} is not an allowed key variable (PROVIDER_KEY_ENV_ALLOWED)."
            )
        if errors:
            raise ValidationError(errors)


class DeploymentRole(models.TextChoices):
    PRIMARY = "primary", "Primary"
    FALLBACK = "fallback", "Fallback"


class AppDeployment(models.Model):
    """A deployment that serves an app: a primary (answers go to the least busy primary) or a
    fallback (serves, in `position` order, while every primary fails or cools down)."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="deployment_links")
    deployment = models.ForeignKey(Deployment, on_delete=models.PROTECT, related_name="app_links")
    role = models.CharField(
        max_length=8, choices=DeploymentRole.choices, default=DeploymentRole.PRIMARY
    )
    position = models.PositiveSmallIntegerField(default=0)
    weight = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1)],
        help_text="Among primaries: a deployment of weight 2 takes twice the share of load.",
    )

    objects = ConfigQuerySet.as_manager()

    class Meta:
        ordering = ["role", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["app", "deployment"], name="app_deployment_once")
        ]
        verbose_name = "deployment serving this app"
        verbose_name_plural = "deployments serving this app"

    def __str__(self) -> str:
        return f"{self.deployment} ({self.role})"
