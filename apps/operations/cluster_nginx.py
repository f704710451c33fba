"""nginx in front of several daphne processes: deploy/nginx/dify-platform.conf rendered with the
actual upstream addresses, wrapped in a main configuration that keeps every file nginx writes
(pid, logs, temporary files) under one directory, so it never touches the system's nginx."""

import os
import re
import shutil
import subprocess
from pathlib import Path

from django.conf import settings

SITE_FILE = Path(settings.BASE_DIR) / "deploy" / "nginx" / "dify-platform.conf"
_UPSTREAM = re.compile(r"(upstream dify_web \{\n)(.*?)(\n\})", re.DOTALL)
_SERVER_LINE = re.compile(r"^\s*server \S+ (.*);$", re.MULTILINE)
_LISTEN = re.compile(r"^(\s*)listen \S+;$", re.MULTILINE)
_ACCESS_LOG = re.compile(r"^(\s*)access_log \S+ \S+;$", re.MULTILINE)
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class NginxError(RuntimeError):
    """nginx is missing or refused the configuration."""


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else ""
    )
    if not found:
        raise NginxError("nginx is not installed: apt-get install nginx")
    return found


def site_render(
    *,
    upstreams: list[str],
    listen: str,
    template: str | None = None,
    access_log: str | None = None,
) -> str:
    """The site file with `upstreams` ("host:port") as the daphne servers and `listen` as the
    address nginx listens on, and with `access_log` (a whole directive's arguments) for its
    access log if given; every other line stays as written in deploy/nginx."""
    text = template if template is not None else SITE_FILE.read_text()
    block = _UPSTREAM.search(text)
    if block is None:
        raise NginxError("the site file has no `upstream dify_web { ... }` block")
    body = block.group(2)
    server_lines = list(_SERVER_LINE.finditer(body))
    if not server_lines or not _LISTEN.search(text):
        raise NginxError("the site file needs `server` lines in its upstream and a `listen` line")
    options = server_lines[0].group(1)
    indent = re.match(r"\s*", server_lines[0].group(0))
    pad = indent.group(0) if indent else "    "
    servers = "\n".join(f"{pad}server {address} {options};" for address in upstreams)
    start, end = server_lines[0].start(), server_lines[-1].end()
    body = body[:start] + servers + body[end:]
    text = text[: block.start(2)] + body + text[block.end(2) :]
    text = _LISTEN.sub(lambda match: f"{match.group(1)}listen {listen};", text, count=1)
    if access_log is not None:
        text = _ACCESS_LOG.sub(lambda m: f"{m.group(1)}access_log {access_log};", text, count=1)
    return text


def main_config_render(*, runtime_dir: Path, site_path: Path) -> str:
    """A complete nginx.conf for a foreground nginx whose files all live in `runtime_dir`."""
    temp = "\n".join(f"    {name}_temp_path {runtime_dir / 'temp' / name};" for name in TEMP_DIRS)
    # As root, nginx's workers would run as `nobody` and could not write under a private
    # temporary directory; the directory is made readable and its temp dirs theirs (prepare).
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}worker_processes 1;\n"
        f"pid {runtime_dir / 'nginx.pid'};\n"
        f"error_log {runtime_dir / 'error.log'} warn;\n"
        "events {\n    worker_connections 4096;\n}\n"
        "http {\n"
        "    include /etc/nginx/mime.types;\n"
        "    default_type application/octet-stream;\n"
        # Which web process served each request, and for how long: the drills and the soak
        # run read this to see the load spread (the site's access_log names this format; its
        # map leaves the chat's share codes out of the path).
        "    log_format cluster '$remote_addr [$time_local] "
        '"$request_method $dify_loggable_uri $server_protocol" $status'
        " $body_bytes_sent upstream=$upstream_addr time=$request_time';\n"
        f"{temp}\n"
        f"    include {site_path};\n"
        "}\n"
    )


def runtime_prepare(*, runtime_dir: Path, upstreams: list[str], listen: str) -> Path:
    """Write the site and main configuration under `runtime_dir`; returns the main file."""
    runtime_dir.mkdir(parents=True, exist_ok=True)
    for name in TEMP_DIRS:
        (runtime_dir / "temp" / name).mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        import pwd

        nobody = pwd.getpwnam("nobody")
        runtime_dir.chmod(0o755)
        for name in TEMP_DIRS:
            os.chown(runtime_dir / "temp" / name, nobody.pw_uid, nobody.pw_gid)
    site_path = runtime_dir / "dify-platform.conf"
    access_log = f"{runtime_dir / 'access.log'} cluster"
    site_path.write_text(site_render(upstreams=upstreams, listen=listen, access_log=access_log))
    main_path = runtime_dir / "nginx.conf"
    main_path.write_text(main_config_render(runtime_dir=runtime_dir, site_path=site_path))
    return main_path


def nginx_command(main_path: Path, *extra: str) -> list[str]:
    # -e: errors before the configuration is read go to our file too, not to /var/log/nginx.
    return [
        nginx_binary(),
        "-c",
        str(main_path),
        "-p",
        str(main_path.parent),
        "-e",
        str(main_path.parent / "error.log"),
        *extra,
    ]


def nginx_config_check(main_path: Path) -> str:
    """`nginx -t` on the rendered files; raises NginxError with nginx's own words."""
    result = subprocess.run(
        nginx_command(main_path, "-t"), capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise NginxError(result.stderr.strip() or result.stdout.strip())
    return result.stderr.strip()
