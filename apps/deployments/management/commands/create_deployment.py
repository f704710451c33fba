"""Create a model deployment: `manage.py create_deployment vllm-a --base-url
http://vllm.internal:8000/v1 --model Qwen2.5-7B-Instruct --max-concurrency 32`."""

import os
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.deployments.models import ProviderKind
from apps.deployments.services import deployment_create


class Command(BaseCommand):
    help = (
        "Create a deployment: one model endpoint and the sequences it serves at once. The key "
        "is read from --api-key-env (the variable's name is stored) or from the environment "
        "variable DEPLOYMENT_API_KEY (sealed and stored), never from the command line."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name")
        parser.add_argument("--provider", choices=ProviderKind.values, default=ProviderKind.OPENAI)
        parser.add_argument("--base-url", default="")
        parser.add_argument("--model", default="")
        parser.add_argument("--api-key-env", default="")
        parser.add_argument("--max-concurrency", type=int, default=8)
        parser.add_argument("--reserved-for-high", type=int, default=0)
        parser.add_argument("--rpm", type=int, default=None)
        parser.add_argument("--tpm", type=int, default=None)
        parser.add_argument("--context-window", type=int, default=None)
        parser.add_argument("--vision", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        provider = options["provider"]
        model = options["model"] or (
            "SmolLM2-135M-Instruct" if provider == ProviderKind.LOCAL else ""
        )
        if not model:
            raise CommandError("--model is required")
        fields: dict[str, Any] = {
            "base_url": options["base_url"],
            "api_key_env": options["api_key_env"],
            "max_concurrency": options["max_concurrency"],
            "reserved_for_high": options["reserved_for_high"],
            "rpm_limit": options["rpm"],
            "tpm_limit": options["tpm"],
            "vision": options["vision"],
        }
        if options["context_window"]:
            fields["context_window"] = options["context_window"]
        try:
            deployment = deployment_create(
                name=options["name"],
                provider=provider,
                model=model,
                api_key=os.environ.get("DEPLOYMENT_API_KEY", ""),
                **fields,
            )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        self.stdout.write(
            f"deployment {deployment.name}: {deployment.provider} {deployment.model}"
            f" at {deployment.base_url or 'this host'}, {deployment.max_concurrency} at once"
        )
