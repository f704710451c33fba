"""Show queues, workers, load and dead letters: `manage.py scheduler_status`."""

from typing import Any

from django.core.management.base import BaseCommand

from apps.scheduling.status import scheduler_status


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


class Command(BaseCommand):
    help = "Show queue depth and oldest age, workers, load and the downgrade state, dead letters."

    def handle(self, *args: Any, **options: Any) -> None:
        status = scheduler_status()
        self.stdout.write("queue     depth  oldest")
        for queue in status.queues:
            self.stdout.write(f"{queue.name:<8} {queue.depth:>6}  {_seconds(queue.oldest_age_s)}")
        self.stdout.write(
            f"delayed  {status.delayed:>6}  (retries waiting, work deferred under load)"
        )
        load = status.load
        state = f"OVERLOADED ({load.reason})" if load.overloaded else "normal"
        self.stdout.write(f"\nload: {state}; {load.summary}")
        for host, cpu in sorted(status.hosts_cpu.items()):
            self.stdout.write(f"  host {host}: cpu {cpu:.0f}%")
        self.stdout.write(f"\nworkers: {len(status.workers)}")
        for worker in status.workers:
            self.stdout.write(
                f"  {worker.name} [{','.join(worker.queues)}] {worker.state}"
                f" task={worker.current_task or '-'}"
                f" heartbeat {_seconds(worker.heartbeat_age_s)} ago"
            )
        self.stdout.write(f"\ndead letters: {status.dead_letters}")
