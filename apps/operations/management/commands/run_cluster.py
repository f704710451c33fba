"""Several web processes behind nginx, and a worker pool, on this host:
`manage.py run_cluster --web 2 --workers 2 --port 8080`. Ctrl-C (or SIGTERM) stops all of it."""

import signal
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.operations.cluster import Cluster
from apps.operations.cluster_nginx import NginxError


class Command(BaseCommand):
    help = "Run nginx in front of N daphne processes, plus a pool of workers, until Ctrl-C."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--web", type=int, default=2, help="daphne processes (default 2)")
        parser.add_argument("--workers", type=int, default=settings.PLATFORM["WORKER_PROCESSES"])
        parser.add_argument(
            "--high-only",
            type=int,
            default=settings.PLATFORM["WORKER_HIGH_ONLY"],
            help="How many workers take only `high` work.",
        )
        parser.add_argument("--host", default="127.0.0.1", help="where nginx listens")
        parser.add_argument("--port", type=int, default=8080, help="nginx's port (default 8080)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["web"] < 1 or options["workers"] < 1:
            raise CommandError("--web and --workers must be at least 1")
        if not 0 <= options["high_only"] <= options["workers"]:
            raise CommandError("--high-only must be between 0 and --workers")
        stop = {"requested": False}

        def request_stop(signum: int, frame: object) -> None:
            stop["requested"] = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        cluster = Cluster(
            port=options["port"],
            web=options["web"],
            workers=options["workers"],
            high_only=options["high_only"],
            host=options["host"],
        )
        try:
            cluster.start()
        except NginxError as error:
            raise CommandError(str(error)) from error
        ports = ", ".join(str(web.port) for web in cluster.webs)
        self.stdout.write(
            f"Serving on {cluster.url}/ (nginx) with {options['web']} web processes"
            f" (daphne on {ports}) and {options['workers']} workers. Ctrl-C stops everything."
        )
        try:
            while not stop["requested"]:
                problem = cluster.supervise_once()
                if problem is not None:
                    self.stderr.write(f"{problem}; stopping")
                    break
                time.sleep(0.5)
        finally:
            self.stdout.write("Stopping (workers finish their current task)...")
            cluster.stop()
            self.stdout.write("Stopped.")
