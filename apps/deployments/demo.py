"""The demo apps `make run` creates, on the built-in model's deployment, so a new user can
chat within a minute."""

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from apps.applications.models import ApiKey, App, AppMode
from apps.applications.services import api_key_create
from apps.deployments.services import app_create_served, builtin_deployment

DEMO_CHAT = "Demo chat"
DEMO_COMPLETION = "Demo completion"
DEMO_KEY_NAME = "demo key"


@dataclass(frozen=True)
class DemoApp:
    app: App
    clear_key: str


def _demo_app(name: str, mode: str, **fields: Any) -> DemoApp:
    app = App.objects.filter(name=name).first() or app_create_served(
        name=name, mode=mode, deployments=[builtin_deployment()], **fields
    )
    if fields.get("web_chat_enabled") and not app.web_chat_enabled:
        app.web_chat_enabled = True  # a database from before the chat page needed turning on
        app.save(update_fields=["web_chat_enabled", "updated_at"])
    # Keys are stored hashed, so an old demo key cannot be shown again: replace it.
    ApiKey.objects.filter(app=app, name=DEMO_KEY_NAME).delete()
    _, clear_key = api_key_create(app=app, name=DEMO_KEY_NAME)
    return DemoApp(app=app, clear_key=clear_key)


@transaction.atomic
def demo_seed(*, admin_username: str, admin_password: str) -> list[DemoApp]:
    """Create (or refresh) the operator account and the demo apps, each with a fresh key."""
    user_model = get_user_model()
    if not user_model.objects.filter(username=admin_username).exists():
        user_model.objects.create_superuser(admin_username, "", admin_password)
    return [
        _demo_app(
            DEMO_CHAT,
            AppMode.CHAT,
            description="Chat with the built-in SmolLM2-135M-Instruct model.",
            system_prompt="You are a helpful assistant. Answer briefly.",
            opening_statement="Hello! Ask me anything.",
            max_tokens=128,
            web_chat_enabled=True,
        ),
        _demo_app(
            DEMO_COMPLETION,
            AppMode.COMPLETION,
            description="One-shot completions with the built-in model.",
            system_prompt="Answer the request below in one or two sentences.",
            max_tokens=128,
        ),
    ]
