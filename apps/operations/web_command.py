"""The platform's web server as the run commands start it: daphne with the platform's request
class (apps.interface.http.web_server), which refuses a body over its route's limit while it
arrives."""

import os
import sys

WEB_SERVER_MODULE = "apps.interface.http.web_server"


def web_command(*, host: str, port: int, access_log: str = os.devnull) -> list[str]:
    """The web server's command line, for this interpreter. Requests are logged as JSON by the
    platform's middleware, with their request ids: daphne's own access log is off by default."""
    return [
        sys.executable,
        "-m",
        WEB_SERVER_MODULE,
        "-b",
        host,
        "-p",
        str(port),
        "--access-log",
        access_log,
        "dify_platform.asgi:application",
    ]
