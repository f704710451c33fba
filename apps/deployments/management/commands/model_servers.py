"""Serve this host's built-in model deployments until stopped: `manage.py model_servers`.

The worker pool (run_workers, run_platform) runs it and restarts it when it exits; it exits by
itself when the deployments it serves change, so the pool starts it afresh with the new ones."""

import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from apps.deployments.model_servers import local_model_api_key, local_server_specs
from apps.providers.base import ProviderError
from apps.providers.local import ModelServer

logger = logging.getLogger(__name__)

RECHECK_S = 5.0


class Command(BaseCommand):
    help = "Serve the enabled built-in model deployments whose address is this host's loopback."

    def handle(self, *args: Any, **options: Any) -> None:
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        signal.signal(signal.SIGINT, lambda *_: stopped.set())
        specs = local_server_specs()
        servers = []
        for spec in specs:
            try:
                server = ModelServer(
                    spec.settings, api_key=local_model_api_key(), port=spec.port, host=spec.host
                )
            except ProviderError as error:
                logger.error("cannot serve deployment %s: %s", spec.deployment, error)
                continue
            servers.append(server)
            logger.warning(
                "model server ready",
                extra={
                    "deployment": spec.deployment,
                    "url": server.url,
                    "parallel": spec.settings.parallel,
                    "context": spec.settings.context,
                },
            )
        while not stopped.wait(RECHECK_S):
            if local_server_specs() != specs:
                logger.warning("built-in model deployments changed; serving them afresh")
                return
