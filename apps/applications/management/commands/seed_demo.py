"""Create the operator account and demo apps, and print how to call them."""

import os
from typing import Any

from django.core.management.base import BaseCommand

from apps.applications.demo import demo_seed


class Command(BaseCommand):
    help = "Create an operator account and demo chat/completion apps with fresh API keys."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--admin-user", default=os.environ.get("ADMIN_USER", "admin"))
        parser.add_argument("--admin-password", default=os.environ.get("ADMIN_PASSWORD", "admin"))
        parser.add_argument(
            "--base-url", default=os.environ.get("PUBLIC_URL", "http://127.0.0.1:8000")
        )

    def handle(self, *args: Any, **options: Any) -> None:
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
