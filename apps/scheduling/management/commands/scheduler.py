"""Run the scheduler's housekeeping alone (when workers run without `run_workers`)."""

import signal
from typing import Any

from django.core.management.base import BaseCommand

from apps.scheduling.housekeeping.maintenance import Maintainer


class Command(BaseCommand):
    help = (
        "Move delayed tasks to their queues, evaluate the load, expire and age waiting tasks, "
        "re-push lost jobs and recover tasks of dead workers. Safe to run on several hosts: "
        "one at a time holds the lease."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--interval", type=float, default=0.2, help="Seconds between rounds.")

    def handle(self, *args: Any, **options: Any) -> None:
        maintainer = Maintainer(interval_s=options["interval"])

        def request_stop(signum: int, frame: object) -> None:
            maintainer.stop()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        maintainer.start()
        while maintainer.is_alive():
            maintainer.join(timeout=0.5)
