"""Run everything on this host: daphne (web) and a worker pool. Ctrl-C stops all of it."""

import os
import signal
import subprocess
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.operations.web_command import web_command
from apps.scheduling.housekeeping.pool import WorkerPool


class Command(BaseCommand):
    help = "Run the web server (daphne) and the workers until Ctrl-C."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--workers", type=int, default=settings.PLATFORM["WORKER_PROCESSES"])
        parser.add_argument(
            "--high-only",
            type=int,
            default=settings.PLATFORM["WORKER_HIGH_ONLY"],
            help="How many workers take only `high` work.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = {"requested": False}

        def request_stop(signum: int, frame: object) -> None:
            stop["requested"] = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        web = subprocess.Popen(web_command(host=options["host"], port=options["port"]))
        pool = WorkerPool(processes=options["workers"], high_only=options["high_only"])
        pool.start()
        self.stdout.write(
            f"Serving on http://{options['host']}:{options['port']}/"
            f" with {options['workers']} workers. Ctrl-C stops everything."
        )
        while not stop["requested"]:
            if web.poll() is not None:
                self.stderr.write(f"the web server exited with code {web.returncode}; stopping")
                break
            pool.supervise_once()
            time.sleep(0.5)
        self.stdout.write("Stopping...")
        if web.poll() is None:
            web.send_signal(signal.SIGTERM)
        pool.stop()
        try:
            web.wait(timeout=10)
        except subprocess.TimeoutExpired:
            web.kill()
        self.stdout.write("Stopped.")
