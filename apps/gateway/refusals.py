"""Counting early refusals in `dp_requests_refused_total` (by reason), never failing the request.

Recording adds to this process's sums in memory (apps.core.metrics): cheap enough for the event
loop, so a flood's refusals cost no thread hop and no Redis call of their own."""

from apps.core.metrics import metric_inc

METRIC = "dp_requests_refused_total"


def refusal_count(reason: str) -> None:
    metric_inc(METRIC, {"reason": reason})
