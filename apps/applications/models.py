"""AI apps and the API keys that call them."""

import secrets
import uuid
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.applications.config_cache import config_changed
from apps.applications.validators import (
    extensions_validate,
    keywords_validate,
    patterns_validate,
)
from apps.core.file_formats import FORMATS, FileKind
from apps.core.models import TimestampedModel
from apps.core.priorities import Priority, PriorityGrant, priority_grant


class AppMode(models.TextChoices):
    CHAT = "chat", "Chat"
    COMPLETION = "completion", "Completion"


class ConfigQuerySet(models.QuerySet):  # type: ignore[type-arg]
    """Bulk writes tell every process's config cache, as saves and deletes do (signals)."""

    def update(self, **kwargs: Any) -> int:
        changed = super().update(**kwargs)
        config_changed()
        return changed

    def delete(self) -> tuple[int, dict[str, int]]:
        deleted = super().delete()
        config_changed()
        return deleted


def share_code_new() -> str:
    return secrets.token_urlsafe(12)


class ImageDetail(models.TextChoices):
    LOW = "low", "Low (fewer tokens)"
    HIGH = "high", "High"
    AUTO = "auto", "Auto (the model decides)"


MAX_FILES_PER_REQUEST = 20


def extension_list(value: str) -> list[str]:
    """The extensions in App.file_upload_extensions: lower case, each with its dot."""
    words = value.replace(",", " ").split()
    return [word.lower() if word.startswith(".") else f".{word.lower()}" for word in words]


class App(TimestampedModel):
    """An AI app: how it is prompted and how its work is scheduled; the deployments that answer
    for it are apps.deployments' (AppDeployment).

    `settings_version` grows on every change of what shapes an answer, so caches keyed on it
    go stale by themselves.
    """

    name = models.CharField(max_length=255)
    description = models.TextField(blank=True, default="")
    mode = models.CharField(max_length=16, choices=AppMode.choices, default=AppMode.CHAT)
    enabled = models.BooleanField(default=True)
    # The web chat page (apps.interface.pages): off until the operator turns it on, reached at
    # /chat/<web_share_code>; rotating the code cuts off the old link and every session it issued.
    web_chat_enabled = models.BooleanField(
        default=False, help_text="Serve this app's chat page at /chat/<share code>."
    )
    web_share_code = models.CharField(
        max_length=32,
        unique=True,
        default=share_code_new,
        help_text="The public code in the chat page's URL. Rotate it to cut off the old link.",
    )
    web_chat_private = models.BooleanField(
        default=False,
        help_text="Only signed-in accounts may chat (their username is the end user).",
    )
    author_name = models.CharField(max_length=255, blank=True, default="")
    tags = models.JSONField(default=list, blank=True)

    system_prompt = models.TextField(blank=True, default="")
    opening_statement = models.TextField(blank=True, default="")
    suggested_questions = models.JSONField(default=list, blank=True)
    # Dify's user_input_form: a list of {"text-input": {"label", "variable", "required", ...}}.
    user_input_form = models.JSONField(default=list, blank=True)

    max_tokens = models.PositiveIntegerField(default=256)
    temperature = models.FloatField(default=0.7)
    top_p = models.FloatField(default=0.95)
    stop = models.JSONField(default=list, blank=True)

    share_weight = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1)],
        help_text="This app's share of the deployments it uses when apps wait for them at the "
        "same priority: an app of weight 2 gets twice the answers of an app of weight 1.",
    )
    default_priority = models.CharField(
        max_length=8, choices=Priority.choices, default=Priority.MEDIUM
    )
    max_attempts = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Attempts per task (first run plus retries); empty: the default.",
    )
    settings_version = models.PositiveIntegerField(default=1)

    # Input protections (apps.gateway). Empty: the platform's default (settings.GATEWAY); 0: none.
    rate_limit_per_s = models.FloatField(
        null=True,
        blank=True,
        help_text="Requests per second for each of this app's keys (unless the key sets its own); "
        "empty: the platform default; 0: no limit.",
    )
    rate_limit_burst = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Requests a key may send at once above its rate; empty: one second's worth.",
    )
    user_rate_limit_per_s = models.FloatField(
        null=True,
        blank=True,
        help_text="Requests per second for each end user (`user`); empty: the platform default; "
        "0: no limit.",
    )
    user_rate_limit_burst = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Requests a user may send at once above the rate; empty: one second's worth.",
    )
    max_active_requests = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Answers being served at once (blocking or streaming); beyond: 429. "
        "Empty: the platform default; 0: no limit.",
    )
    cache_enabled = models.BooleanField(
        default=False,
        help_text="Answer identical blocking completion requests from a cache.",
    )
    cache_ttl_s = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="How long a cached answer is served, in seconds; empty: the platform default.",
    )

    # The processing pipeline (apps.generation): moderation, prices.
    moderation_input_keywords = models.TextField(
        blank=True,
        default="",
        validators=[keywords_validate],
        help_text="One per line, case-insensitive, matched anywhere in the query and inputs: a "
        "match is answered with the preset reply, without calling the model.",
    )
    moderation_input_patterns = models.TextField(
        blank=True,
        default="",
        validators=[patterns_validate],
        help_text="Regular expressions (Python syntax), one per line, like the input keywords. "
        "Case-sensitive unless the pattern starts with (?i).",
    )
    moderation_input_reply = models.TextField(
        blank=True,
        default="",
        help_text="The answer to a question that matched the input rules; empty: a standard "
        "refusal.",
    )
    moderation_output_keywords = models.TextField(
        blank=True,
        default="",
        validators=[keywords_validate],
        help_text="One per line, case-insensitive: redacted from answers as they stream.",
    )
    moderation_output_patterns = models.TextField(
        blank=True,
        default="",
        validators=[patterns_validate],
        help_text="Regular expressions (Python syntax), one per line, redacted from answers. "
        "Case-sensitive unless the pattern starts with (?i).",
    )
    moderation_output_replacement = models.CharField(
        max_length=64,
        blank=True,
        default="***",
        help_text="What a redacted match in an answer is replaced with.",
    )
    prompt_unit_price = models.DecimalField(
        max_digits=20,
        decimal_places=10,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        help_text="Price of prompt tokens, per price unit (Dify's input price).",
    )
    completion_unit_price = models.DecimalField(
        max_digits=20,
        decimal_places=10,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        help_text="Price of completion tokens, per price unit (Dify's output price).",
    )
    price_unit = models.DecimalField(
        max_digits=20,
        decimal_places=10,
        default=Decimal("0.000001"),
        validators=[MinValueValidator(Decimal(0))],
        help_text="The tokens a unit price is for, as a fraction: 0.000001 prices per million "
        "tokens, 0.001 per thousand (Dify's price unit).",
    )
    currency = models.CharField(max_length=8, default="USD")

    # Files with chat and completion requests: Dify's `file_upload` feature (apps.applications.
    # file_rules reads these; /v1/parameters reports them).
    file_upload_enabled = models.BooleanField(
        default=False,
        help_text="Take files with chat and completion requests (uploaded first, or by URL).",
    )
    file_upload_images = models.BooleanField(
        default=True,
        help_text="Images (PNG, JPEG, GIF, WebP): for a model that reads them (vision, below).",
    )
    file_upload_documents = models.BooleanField(
        default=True,
        help_text="Documents (text, Markdown, CSV, PDF): their text reaches the prompt, within "
        "the context window.",
    )
    file_upload_extensions = models.CharField(
        max_length=255,
        blank=True,
        default="",
        validators=[extensions_validate],
        help_text="Only these extensions, separated by spaces or commas (e.g. .pdf .md); "
        "empty: every extension of the kinds above.",
    )
    file_upload_local = models.BooleanField(
        default=True,
        help_text="Files uploaded first (POST /v1/files/upload, then `local_file`).",
    )
    file_upload_remote = models.BooleanField(
        default=True,
        help_text="Files by URL (`remote_url`), fetched by the workers: public addresses only, "
        "unless the operator allows more (FILE_REMOTE_ALLOWED_NETWORKS).",
    )
    file_upload_number_limit = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_FILES_PER_REQUEST)],
        help_text="Files per request.",
    )
    file_image_size_limit_mb = models.PositiveIntegerField(
        default=10,
        validators=[MinValueValidator(1)],
        help_text="Largest image, in MB (the platform's FILE_UPLOAD_MAX_MB caps it).",
    )
    file_document_size_limit_mb = models.PositiveIntegerField(
        default=15,
        validators=[MinValueValidator(1)],
        help_text="Largest document, in MB (the platform's FILE_UPLOAD_MAX_MB caps it).",
    )
    vision_enabled = models.BooleanField(
        default=False,
        verbose_name="vision",
        help_text="The model reads images: they reach it as image parts (OpenAI-compatible "
        "vision models). The built-in model does not.",
    )
    image_detail = models.CharField(
        max_length=8,
        choices=ImageDetail.choices,
        default=ImageDetail.HIGH,
        help_text="How closely a vision model looks at images (high costs more tokens).",
    )
    suggested_questions_after_answer = models.BooleanField(
        default=False,
        help_text="After each chat answer, the app's model suggests follow-up questions "
        "(GET /v1/messages/{id}/suggested), as low-priority work.",
    )

    # The web app's presentation, as Dify's /v1/site reports it (title and description are the
    # app's name and description).
    site_icon = models.CharField(max_length=64, blank=True, default="🤖", help_text="An emoji.")
    site_icon_background = models.CharField(max_length=16, blank=True, default="#FFEAD5")
    site_chat_color_theme = models.CharField(
        max_length=16, blank=True, default="", help_text="A CSS color, e.g. #1C64F2."
    )
    site_chat_color_theme_inverted = models.BooleanField(default=False)
    site_copyright = models.CharField(max_length=255, blank=True, default="")
    site_privacy_policy = models.URLField(max_length=512, blank=True, default="")
    site_custom_disclaimer = models.TextField(blank=True, default="")
    site_default_language = models.CharField(max_length=16, default="en-US")
    site_input_placeholder = models.CharField(max_length=255, blank=True, default="")
    site_use_icon_as_answer_icon = models.BooleanField(default=False)

    objects = ConfigQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def clean(self) -> None:
        """Settings that contradict each other: files the model could never take."""
        super().clean()
        errors: dict[str, str] = {}
        if self.file_upload_enabled:
            if not (self.file_upload_images or self.file_upload_documents):
                errors["file_upload_documents"] = "Take images, documents or both."
            elif self.file_upload_images and not self.vision_enabled:
                errors["file_upload_images"] = (
                    "Images need a model that reads them: turn vision on, or take documents only."
                )
            if not (self.file_upload_local or self.file_upload_remote):
                errors["file_upload_local"] = "Take files uploaded, by URL, or both."
        kinds = {
            kind
            for kind, taken in (
                (FileKind.IMAGE, self.file_upload_images),
                (FileKind.DOCUMENT, self.file_upload_documents),
            )
            if taken
        }
        stray = [
            extension
            for extension in extension_list(self.file_upload_extensions)
            if extension in FORMATS and FORMATS[extension].kind not in kinds
        ]
        if stray and "file_upload_extensions" not in errors:
            errors["file_upload_extensions"] = (
                f"{', '.join(stray)}: not of a kind this app takes (images, documents above)."
            )
        if errors:
            raise ValidationError(errors)

    def __str__(self) -> str:
        return f"{self.name} ({self.mode})"


class ApiKey(TimestampedModel):
    """An app's API key. Only a SHA-256 digest is stored; the clear key is shown once.

    The one key per app `for_web_sessions` is never given out: requests of the chat page's
    end-user sessions run under it, so its priority ceiling and rate limit are the browsers'.
    """

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="api_keys")
    for_web_sessions = models.BooleanField(default=False, editable=False)
    name = models.CharField(max_length=255, blank=True, default="")
    prefix = models.CharField(
        max_length=16, help_text="The key's first characters, to recognise it."
    )
    digest = models.CharField(max_length=64, unique=True)
    max_priority = models.CharField(
        max_length=8,
        choices=Priority.choices,
        default=Priority.HIGH,
        help_text="The most urgent priority requests with this key may ask for.",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    rate_limit_per_s = models.FloatField(
        null=True,
        blank=True,
        help_text="Requests per second with this key; empty: the app's limit; 0: no limit.",
    )
    rate_limit_burst = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Requests this key may send at once above its rate; empty: one second's worth.",
    )

    objects = ConfigQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.app.name})"

    def priority_grant(self, requested: str | None) -> PriorityGrant:
        """What a request with this key runs at: the priority it asked for, else its app's
        default, capped by the key's maximum."""
        return priority_grant(requested or self.app.default_priority, self.max_priority)


class EndUser(models.Model):
    """An end user of an app, as Dify names them to clients: a UUID for the `user` string the
    app sends. The id is derived from the two (`id_for`), so every process names an end user
    alike without a lookup; the row says the id was handed out (with an upload's `created_by`,
    a feedback's `from_end_user_id`), so GET /v1/end-users/{id} finds it."""

    id = models.UUIDField(primary_key=True, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="end_users")
    external_id = models.CharField(max_length=255, help_text="The `user` the app sends.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["app", "external_id"], name="applications_end_user_per_app"
            )
        ]

    def __str__(self) -> str:
        return self.external_id

    @staticmethod
    def id_for(app_id: uuid.UUID, external_id: str) -> uuid.UUID:
        return uuid.uuid5(app_id, external_id)
