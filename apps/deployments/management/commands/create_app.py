"""Create an app served by deployments and print its API key:
`manage.py create_app "Support bot" --deployment vllm-a --deployment vllm-b --fallback openai`."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.applications.models import AppMode
from apps.applications.services import api_key_create
from apps.core.priorities import Priority
from apps.deployments.models import Deployment
from apps.deployments.services import app_create_served, builtin_deployment


class Command(BaseCommand):
    help = (
        "Create an AI app and print its API key (shown once). Without --deployment it is "
        "served by the built-in model."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name")
        parser.add_argument("--mode", choices=AppMode.values, default=AppMode.CHAT)
        parser.add_argument(
            "--deployment",
            action="append",
            default=[],
            help="A deployment that serves it (repeat: answers go to the least busy).",
        )
        parser.add_argument(
            "--fallback",
            action="append",
            default=[],
            help="A deployment that serves while every primary fails (repeat, in order).",
        )
        parser.add_argument("--system-prompt", default="")
        parser.add_argument("--max-tokens", type=int, default=256)
        parser.add_argument("--priority", choices=Priority.values, default=Priority.MEDIUM)
        parser.add_argument("--weight", type=int, default=1, help="Its fair-share weight.")

    def handle(self, *args: Any, **options: Any) -> None:
        primaries = _named(options["deployment"]) or [builtin_deployment()]
        fallbacks = _named(options["fallback"])
        try:
            app = app_create_served(
                name=options["name"],
                mode=options["mode"],
                deployments=primaries,
                fallbacks=fallbacks,
                system_prompt=options["system_prompt"],
                max_tokens=options["max_tokens"],
                default_priority=options["priority"],
                share_weight=max(1, options["weight"]),
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        _, clear_key = api_key_create(app=app, name="created by create_app")
        served = ", ".join(d.name for d in primaries)
        if fallbacks:
            served += f"; fallbacks {', '.join(d.name for d in fallbacks)}"
        self.stdout.write(f"app {app.id} ({app.mode}) served by {served}\napi key: {clear_key}")


def _named(names: list[str]) -> list[Deployment]:
    found = {d.name: d for d in Deployment.objects.filter(name__in=names)}
    missing = [name for name in names if name not in found]
    if missing:
        raise CommandError(f"no deployment named {', '.join(missing)} (see create_deployment)")
    return [found[name] for name in names]
