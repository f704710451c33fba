"""Run a pool of workers plus the scheduler's housekeeping: `manage.py run_workers -n 2`."""

import signal
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.scheduling.housekeeping.pool import WorkerPool


class Command(BaseCommand):
    help = "Run N worker processes (restarted if they die) and the scheduler's housekeeping."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "-n", "--processes", type=int, default=settings.PLATFORM["WORKER_PROCESSES"]
        )
        parser.add_argument(
            "--high-only",
            type=int,
            default=settings.PLATFORM["WORKER_HIGH_ONLY"],
            help="How many of them take only `high`.",
        )
        parser.add_argument(
            "--no-maintenance", action="store_true", help="Leave housekeeping to another process."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        pool = WorkerPool(
            processes=options["processes"],
            high_only=options["high_only"],
            maintenance=not options["no_maintenance"],
        )
        stop = {"requested": False}

        def request_stop(signum: int, frame: object) -> None:
            stop["requested"] = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        pool.start()
        self.stdout.write(f"{options['processes']} workers running; Ctrl-C to stop.")
        while not stop["requested"]:
            pool.supervise_once()
            time.sleep(0.5)
        self.stdout.write("Stopping workers (each finishes its current task)...")
        pool.stop()
