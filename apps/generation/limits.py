"""How many answers of one app may be generated at once: the app's model server's capacity.

Set per app as `provider_config["max_concurrency"]` (a vLLM server serves so many sequences; an
API plan allows so many parallel requests). Answers over the limit wait for a slot, in priority
order, instead of failing.
"""

from apps.generation.attempt import attempt_message
from apps.scheduling.models import Task


def provider_concurrency(task: Task) -> tuple[str, int] | None:
    if task.app_id is None:
        return None
    # The app as the attempt's message holds it: read once for the whole attempt.
    app = attempt_message(task, task.attempts).app
    limit = (app.provider_config or {}).get("max_concurrency")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        return None
    return f"app:{task.app_id}", limit
