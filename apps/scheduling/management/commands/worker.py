"""Run one worker process: `manage.py worker [high medium low] [--burst]`."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.core.gc_tuning import gc_tune_for_serving
from apps.scheduling.coordination.queues import QUEUE_ORDER
from apps.scheduling.housekeeping.load import LoadReporter
from apps.scheduling.runtime.worker import worker_build, worker_connections_configure


class Command(BaseCommand):
    help = "Run one worker that takes tasks from the given queues, most urgent first."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "queues", nargs="*", help=f"Queues to take from (default: {' '.join(QUEUE_ORDER)})."
        )
        parser.add_argument("--burst", action="store_true", help="Stop when the queues are empty.")
        parser.add_argument("--name", default=None, help="Worker name (default: host.pid).")
        parser.add_argument(
            "--concurrency",
            type=int,
            default=settings.PLATFORM["WORKER_CONCURRENCY"],
            help="Tasks run at once (default: WORKER_CONCURRENCY).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        unknown = set(options["queues"]) - set(QUEUE_ORDER)
        if unknown:
            raise CommandError(f"unknown queues {sorted(unknown)}; choose from {list(QUEUE_ORDER)}")
        queues = sorted(set(options["queues"] or QUEUE_ORDER), key=QUEUE_ORDER.index)
        worker_connections_configure()
        worker = worker_build(
            queue_names=queues, name=options["name"], concurrency=options["concurrency"]
        )
        gc_tune_for_serving()
        reporter = LoadReporter()
        reporter.start()
        try:
            worker.work(burst=options["burst"], logging_level="WARNING")
        finally:
            reporter.stop()
