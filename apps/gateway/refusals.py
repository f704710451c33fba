"""Counting early refusals in `dp_requests_refused_total` (by reason), never failing the request."""

from asgiref.sync import sync_to_async

from apps.core.metrics import metric_inc

METRIC = "dp_requests_refused_total"


def refusal_count(reason: str) -> None:
    metric_inc(METRIC, {"reason": reason})


# Off the event loop, in any thread: metric_inc is a blocking Redis call that logs its own errors.
refusal_count_async = sync_to_async(refusal_count, thread_sensitive=False)
