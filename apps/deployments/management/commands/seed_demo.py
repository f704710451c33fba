"""Create the operator account and demo apps, and print how to call them."""

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.deployments.demo import demo_seed

# The quick start's password on a developer machine; production refuses it.
DEFAULT_ADMIN_PASSWORD = "admin"


class Command(BaseCommand):
    help = "Create an operator account and demo chat/completion apps with fresh API keys."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--admin-user", default=os.environ.get("ADMIN_USER", "admin"))
        parser.add_argument(
            "--admin-password", default=os.environ.get("ADMIN_PASSWORD", DEFAULT_ADMIN_PASSWORD)
        )
        parser.add_argument(
            "--base-url", default=os.environ.get("PUBLIC_URL", "http://127.0.0.1:8000")
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.OPERATOR_PASSWORD_CHECKED:
            operator_password_check(options["admin_user"], options["admin_password"])
        demos = demo_seed(
            admin_username=options["admin_user"], admin_password=options["admin_password"]
        )
        base = options["base_url"].rstrip("/")
        chat, completion = demos
        self.stdout.write(
            f"""
  Admin:        {base}/admin/   (user {options["admin_user"]}, password {options["admin_password"]})
  Chat app key: {chat.clear_key}
  Completion:   {completion.clear_key}
  Chat page:    {base}/chat/{chat.app.web_share_code}   (each browser gets its own session)

  Try it:
    curl -s {base}/v1/chat-messages -H "Authorization: Bearer {chat.clear_key}" \\
      -H "Content-Type: application/json" \\
      -d '{{"inputs":{{}},"query":"Hello","user":"u1"}}'
    curl -s {base}/v1/completion-messages -H "Authorization: Bearer {completion.clear_key}" \\
      -H "Content-Type: application/json" \\
      -d '{{"inputs":{{}},"query":"Name three colours","user":"u1"}}'
    curl -s {base}/api/v1/ask -H "Authorization: Bearer {chat.clear_key}" -d '{{"query":"Hi"}}'
"""
        )


def operator_password_check(username: str, password: str) -> None:
    """Production refuses the quick start's default and any password Django's validators
    (length, common, numeric, like the username) refuse."""
    if password == DEFAULT_ADMIN_PASSWORD:
        raise CommandError(
            "ADMIN_PASSWORD is the default: set a strong password for the operator account."
        )
    try:
        password_validation.validate_password(password, User(username=username))
    except ValidationError as error:
        raise CommandError(f"ADMIN_PASSWORD is too weak: {' '.join(error.messages)}") from None
