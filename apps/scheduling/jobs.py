"""RQ entry points: fetch by id, call a service.

Our worker (apps.scheduling.runtime.worker) runs these jobs' tasks on its event loop without calling
this; it is what a plain RQ worker on our queues runs, one attempt at a time.
"""

from django.db import close_old_connections
from rq import get_current_job

from apps.scheduling.runtime.runner import task_execute


def task_run_job(task_id: str) -> None:
    job = get_current_job()
    worker_name = (job.worker_name if job else None) or "unknown"
    # Workers live for days; drop connections that broke or aged out while the worker waited.
    close_old_connections()
    try:
        task_execute(task_id=task_id, worker_name=worker_name)
    finally:
        close_old_connections()
