"""Serve one model over HTTP, without a deployment row: `manage.py model_server --port 8091
--parallel 4 --context 2048` (tests, benchmarks, a host of its own for the built-in model)."""

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.deployments.model_servers import local_model_api_key
from apps.providers.local import LocalSettings, ModelServer


class Command(BaseCommand):
    help = "Serve a GGUF model (default: the built-in SmolLM2) with llama.cpp until stopped."

    def add_arguments(self, parser: Any) -> None:
        platform = settings.PLATFORM
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=platform["LOCAL_MODEL_PORT"])
        parser.add_argument("--parallel", type=int, default=platform["LOCAL_MODEL_PARALLEL"])
        parser.add_argument("--context", type=int, default=platform["LOCAL_MODEL_CONTEXT"])
        parser.add_argument("--threads", type=int, default=platform["LOCAL_MODEL_THREADS"])
        parser.add_argument("--model-path", default=platform["LOCAL_MODEL_PATH"])

    def handle(self, *args: Any, **options: Any) -> None:
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        signal.signal(signal.SIGINT, lambda *_: stopped.set())
        server = ModelServer(
            LocalSettings(
                threads=options["threads"],
                context=options["context"],
                parallel=options["parallel"],
                model_path=options["model_path"],
            ),
            api_key=local_model_api_key(),
            port=options["port"],
            host=options["host"],
        )
        self.stdout.write(f"model server at {server.url}", ending="\n")
        self.stdout.flush()
        stopped.wait()
