"""One JSON object per log line, naming the request and task it belongs to; request paths with
their secrets (a chat's share code) left out."""

import json
import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

from apps.core.context import request_id_var, task_id_var

_HOST = socket.gethostname()
_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get()
        if not getattr(record, "task_id", None):
            record.task_id = task_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "host": _HOST,
            "pid": os.getpid(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and value is not None and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


# URL arguments that are secrets: a chat's share code lets anyone who reads it chat as a new end
# user, so it must not land in a log that operators ship elsewhere.
SECRET_PATH_ARGUMENTS = frozenset({"share_code"})


def path_for_log(request: Any) -> str:
    """The request's path with the value of each secret URL argument replaced by its name."""
    path = str(request.path)
    match = getattr(request, "resolver_match", None)
    if match is None:
        return path
    for name in SECRET_PATH_ARGUMENTS & set(match.kwargs):
        value = str(match.kwargs[name])
        if value:
            path = path.replace(value, f"<{name}>")
    return path


class SecretPathFilter(logging.Filter):
    """For Django's own request warnings ("Not Found: /chat/..."): the path as `path_for_log`
    writes it, in the message and in the request it names."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        if request is None or not hasattr(request, "path"):
            return True
        shown = path_for_log(request)
        if shown != request.path:
            if isinstance(record.args, tuple):
                record.args = tuple(shown if arg == request.path else arg for arg in record.args)
            record.request = f"<{request.method} {shown}>"
        return True
