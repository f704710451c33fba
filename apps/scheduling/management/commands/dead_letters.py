"""List, retry or purge dead letters: `manage.py dead_letters list|retry|purge [filters]`."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.scheduling.coordination.queues import QUEUE_ORDER
from apps.scheduling.models import TaskStatus
from apps.scheduling.tasks.selectors import dead_letters
from apps.scheduling.tasks.services import task_purge, task_requeue


class Command(BaseCommand):
    help = "Dead letters (tasks past their last attempt): list, retry with a fresh budget, purge."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("action", choices=["list", "retry", "purge"])
        parser.add_argument("--id", action="append", default=[], help="A task id (repeatable).")
        parser.add_argument("--kind", default=None)
        parser.add_argument("--app", default=None, help="App id.")
        parser.add_argument(
            "--status",
            default=TaskStatus.DEAD,
            choices=[s.value for s in TaskStatus],
            help="Which final status counts (default: dead).",
        )
        parser.add_argument("--queue", default=None, help="Retry on this queue instead.")
        parser.add_argument("--limit", type=int, default=1000)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["queue"] and options["queue"] not in QUEUE_ORDER:
            raise CommandError(f"--queue must be one of {list(QUEUE_ORDER)}")
        tasks = dead_letters(kind=options["kind"], app_id=options["app"]).filter(
            status=options["status"]
        )
        if options["id"]:
            tasks = tasks.filter(id__in=options["id"])
        tasks = tasks[: options["limit"]]
        if options["action"] == "list":
            for task in tasks:
                self.stdout.write(
                    f"{task.id} {task.kind} {task.status} attempts={task.attempts}"
                    f" {task.error_type}: {task.error_message[:80]}"
                )
            return
        done = 0
        for task in tasks:
            if options["action"] == "retry":
                done += bool(
                    task_requeue(
                        task_id=task.id, actor="manage.py dead_letters", priority=options["queue"]
                    )
                )
            else:
                done += task_purge(task_id=task.id, actor="manage.py dead_letters")
        self.stdout.write(f"{options['action']}: {done} task(s)")
