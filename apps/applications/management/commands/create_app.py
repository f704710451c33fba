"""Create an app and an API key: `manage.py create_app "Support bot" --mode chat`."""

from typing import Any

from django.core.management.base import BaseCommand

from apps.applications.models import AppMode, ProviderKind
from apps.applications.services import api_key_create, app_create
from apps.core.priorities import Priority


class Command(BaseCommand):
    help = "Create an AI app and print its API key (shown once)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name")
        parser.add_argument("--mode", choices=AppMode.values, default=AppMode.CHAT)
        parser.add_argument("--provider", choices=ProviderKind.values, default=ProviderKind.LOCAL)
        parser.add_argument("--model", default="SmolLM2-135M-Instruct")
        parser.add_argument("--base-url", default="", help="For --provider openai.")
        parser.add_argument(
            "--api-key-env", default="", help="Env variable with the provider's key."
        )
        parser.add_argument("--system-prompt", default="")
        parser.add_argument("--max-tokens", type=int, default=256)
        parser.add_argument("--priority", choices=Priority.values, default=Priority.MEDIUM)

    def handle(self, *args: Any, **options: Any) -> None:
        config = {}
        if options["base_url"]:
            config["base_url"] = options["base_url"]
        if options["api_key_env"]:
            config["api_key_env"] = options["api_key_env"]
        app = app_create(
            name=options["name"],
            mode=options["mode"],
            provider=options["provider"],
            model_name=options["model"],
            provider_config=config,
            system_prompt=options["system_prompt"],
            max_tokens=options["max_tokens"],
            default_priority=options["priority"],
        )
        _, clear_key = api_key_create(app=app, name="created by create_app")
        self.stdout.write(f"app {app.id} ({app.mode})\napi key: {clear_key}")
