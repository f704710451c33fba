"""Settings read from the environment, with defaults that work on a developer machine.

Every setting that an operator may change is read here and nowhere else.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEFAULT_SECRET_KEY = "insecure-dev-secret-change-me"
SECRET_KEY = env.str("SECRET_KEY", default=DEFAULT_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Proxies (addresses or networks) whose forwarded headers (X-Forwarded-For, -Proto) are
# believed: the client's address and scheme come from them (apps.interface.http.forwarded). Empty:
# nobody's, as when daphne faces clients itself (`make run`).
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
# Browser origins besides the served hosts that may open the WebSocket chat ("*": any).
WEBSOCKET_ALLOWED_ORIGINS = env.list("WEBSOCKET_ALLOWED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_rq",
    "apps.core",
    "apps.applications",
    "apps.deployments",
    "apps.conversations",
    "apps.scheduling",
    "apps.generation",
    "apps.gateway",
    "apps.streams",
    "apps.operations",
]

MIDDLEWARE = [
    "apps.core.middleware.request_id_middleware",
    "apps.operations.middleware.http_metrics_middleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dify_platform.urls"
ASGI_APPLICATION = "dify_platform.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/dify_platform"),
}
# A connection pool per process (psycopg's), not persistent connections: under ASGI Django runs
# each request's database work in a thread of its own, and persistent connections then pile up,
# one per finished thread, until PostgreSQL refuses new clients (seen here under load). The pool
# bounds them and still saves the connect on the hot path.
DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
    "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
    "max_size": env.int("DB_POOL_MAX_SIZE", default=8),
    "timeout": env.float("DB_POOL_TIMEOUT_S", default=10.0),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Threads a process runs database work from async code in (apps.core.db): as many as its pool
# has connections. 0: asgiref's one thread-sensitive thread (tests that hold a transaction).
DB_ASYNC_THREADS = env.int("DB_ASYNC_THREADS", default=env.int("DB_POOL_MAX_SIZE", default=8))

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Every key the platform writes (besides RQ's own `rq:` keys) starts with this prefix.
REDIS_KEY_PREFIX = env.str("REDIS_KEY_PREFIX", default="dp:")
# Connections a process's async code shares to Redis (callers wait for a free one: each command
# holds one briefly). Open answer streams hold none: a web process follows every task it relays on
# one pub/sub connection (apps.streams.feeds).
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", default=1000)

RQ_QUEUES = {name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600} for name in ("high", "medium", "low")}
# We enqueue from transaction.on_commit ourselves (see apps.scheduling.coordination.queues), so
# django-rq must not defer a second time.
RQ = {"COMMIT_MODE": "auto"}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{REDIS_KEY_PREFIX}asgi"},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# A new API key is shown to the operator once, in a message: keep messages server-side, not in
# a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

STATIC_URL = "static/"
# Whether daphne serves static files (the admin's CSS and JS) itself; a proxy serving the output
# of `collectstatic` from STATIC_ROOT can take that over.
SERVE_STATIC = env.bool("SERVE_STATIC", default=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

# Request bodies above this are refused with 413 before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BYTES", default=1024 * 1024)

# The /v1 routes are async views of our own (apps.interface.views); DRF serializers validate and
# render for them, and DRF serves only the OpenAPI document and its viewer.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "apps.core.exception_handler.envelope_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# --- The pipeline -----------------------------------------------------------------------------
PLATFORM = {
    # How long a blocking request waits for its answer before answering 504.
    "BLOCKING_TIMEOUT_S": env.float("BLOCKING_TIMEOUT_S", default=120.0),
    # Answer text that comes within this many ms of the last `message` event goes out with the
    # next one (the first piece always at once): fewer events for fast models, less CPU taken
    # from them (apps.generation.coalesce). 0 sends every piece as its own event.
    "STREAM_COALESCE_MS": env.float("STREAM_COALESCE_MS", default=20.0),
    # Allocations that start a young garbage collection in web and worker processes (Python's
    # default is 700); see apps.core.gc_tuning.
    "GC_GEN0_THRESHOLD": env.int("GC_GEN0_THRESHOLD", default=10_000),
    # How long a thread may hold the GIL while another waits (Python's default: 5 ms); see
    # apps.core.gc_tuning.
    "SWITCH_INTERVAL_MS": env.float("SWITCH_INTERVAL_MS", default=1.0),
    # How long a task's event log stays readable after its last event (resume, late clients).
    "EVENT_LOG_TTL_S": env.int("EVENT_LOG_TTL_S", default=3600),
    # Default number of attempts for a task (the first run plus retries).
    "TASK_MAX_ATTEMPTS": env.int("TASK_MAX_ATTEMPTS", default=4),
    "RETRY_BACKOFF_BASE_S": env.float("RETRY_BACKOFF_BASE_S", default=1.0),
    "RETRY_BACKOFF_MAX_S": env.float("RETRY_BACKOFF_MAX_S", default=60.0),
    # A job's hard time limit when the task has no deadline.
    "TASK_TIMEOUT_S": env.int("TASK_TIMEOUT_S", default=600),
    # A running task's lock lapses this long after its worker stopped renewing it (crash recovery).
    "TASK_LOCK_TTL_S": env.float("TASK_LOCK_TTL_S", default=15.0),
    # Apps and keys are cached per process and dropped at once on any change through the ORM;
    # a change made with raw SQL shows within this long.
    "CONFIG_CACHE_TTL_S": env.float("CONFIG_CACHE_TTL_S", default=60.0),
    # Queued tasks older than this with no job in Redis are pushed again by the reconciler.
    "RECONCILE_GRACE_S": env.float("RECONCILE_GRACE_S", default=10.0),
    # The load monitor: overloaded above the high marks, normal again only below the low marks.
    "LOAD": {
        "cpu_high": env.float("LOAD_CPU_HIGH", default=70.0),
        "cpu_low": env.float("LOAD_CPU_LOW", default=55.0),
        "queued_high": env.float("LOAD_QUEUED_HIGH", default=500),
        "queued_low": env.float("LOAD_QUEUED_LOW", default=250),
        "report_ttl_s": env.float("LOAD_REPORT_TTL_S", default=10.0),
    },
    # Under load, new `low` work waits this long before it is queued (again while still loaded).
    "DEFER_LOW_S": env.float("DEFER_LOW_S", default=30.0),
    # Aging: a task that waited longer than this in its class is promoted one class.
    "AGING_S": {
        "low": env.float("AGING_LOW_S", default=120.0),
        "medium": env.float("AGING_MEDIUM_S", default=120.0),
    },
    # PostgreSQL's synchronous_commit for worker connections. "off" saves a WAL flush (~3 ms here)
    # on each of a task's status writes; what a crash of PostgreSQL itself (not a restart) can lose
    # is the last ~0.6 s of those writes, after which the watchdog and reconciler run the task
    # again into the same message row. Tasks are accepted by the web tier with durable commits.
    "WORKER_SYNCHRONOUS_COMMIT": env.str("WORKER_SYNCHRONOUS_COMMIT", default="off"),
    # Worker liveness: heartbeats this often, presumed dead after the TTL.
    "WORKER_TTL_S": env.int("WORKER_TTL_S", default=30),
    "WORKER_MAINTENANCE_INTERVAL_S": env.int("WORKER_MAINTENANCE_INTERVAL_S", default=10),
    # Worker processes started by `run_workers` / `make run` when not told otherwise.
    "WORKER_PROCESSES": env.int("WORKER_PROCESSES", default=2),
    # Tasks one worker process runs at once (apps.scheduling.runtime.worker). Remote model
    # servers serve hundreds of sequences; a waiting answer costs the worker about 50 KB. What a
    # model serves at once is its deployment's max_concurrency (apps.deployments).
    "WORKER_CONCURRENCY": env.int("WORKER_CONCURRENCY", default=500),
    # Threads a worker process does its database work in (each holds a pooled connection only
    # during a call): no more than DB_POOL_MAX_SIZE.
    "WORKER_DB_THREADS": env.int(
        "WORKER_DB_THREADS", default=env.int("DB_POOL_MAX_SIZE", default=8)
    ),
    # On SIGTERM a worker takes nothing new and lets its running tasks finish for this long;
    # the rest go back to their queues (their retry budget untouched).
    "WORKER_SHUTDOWN_GRACE_S": env.float("WORKER_SHUTDOWN_GRACE_S", default=25.0),
    # Capacity kept from bulk work (a batch's requests), for live work: each worker's slots, and
    # each deployment's sequences (when it serves more than one).
    "BULK_RESERVED_SLOTS": env.int("BULK_RESERVED_SLOTS", default=50),
    "BULK_RESERVED_SEQUENCES": env.int("BULK_RESERVED_SEQUENCES", default=1),
    # Bulk tasks one worker runs at once at most (they are CPU for its event loop too).
    "BULK_MAX_RUNNING": env.int("BULK_MAX_RUNNING", default=64),
    # Of those, how many take only `high` work, so interactive requests always find a worker.
    "WORKER_HIGH_ONLY": env.int("WORKER_HIGH_ONLY", default=0),
    # The built-in model: threads per worker process and its context window (per sequence).
    "LOCAL_MODEL_THREADS": env.int("LOCAL_MODEL_THREADS", default=2),
    "LOCAL_MODEL_CONTEXT": env.int("LOCAL_MODEL_CONTEXT", default=2048),
    # Sequences one loaded model generates at once (llama.cpp's parallel slots; the context is
    # LOCAL_MODEL_CONTEXT per sequence). 4 gave about +25-50% tokens/s in all on 2 cores.
    "LOCAL_MODEL_PARALLEL": env.int("LOCAL_MODEL_PARALLEL", default=4),
    # Where the built-in model's server listens on each worker host (loopback), and the key it
    # asks for (empty: one derived from SECRET_KEY, so every process of the host knows it).
    "LOCAL_MODEL_PORT": env.int("LOCAL_MODEL_PORT", default=8091),
    "LOCAL_MODEL_API_KEY": env.str("LOCAL_MODEL_API_KEY", default=""),
    # Another GGUF file as the default local model (empty: the embedded SmolLM2-135M), and the
    # directory an app's own provider_config.model_path may name files in (empty: none).
    "LOCAL_MODEL_PATH": env.str("LOCAL_MODEL_PATH", default=""),
    "LOCAL_MODELS_DIR": env.str("LOCAL_MODELS_DIR", default=""),
    # Model deployments (apps.scheduling.coordination.capacity): how long a task a deployment
    # took may wait on its queue for a worker before its place lapses; how long a failing
    # deployment cools down (a 429's Retry-After at least; a failed probe doubles it, up to the
    # most); and when failures cool it down: this many in the window, and this share of its
    # calls there.
    "DEPLOYMENT_GRANT_TTL_S": env.float("DEPLOYMENT_GRANT_TTL_S", default=30.0),
    "DEPLOYMENT_COOLDOWN_S": env.float("DEPLOYMENT_COOLDOWN_S", default=5.0),
    "DEPLOYMENT_COOLDOWN_MAX_S": env.float("DEPLOYMENT_COOLDOWN_MAX_S", default=60.0),
    "DEPLOYMENT_FAILURE_WINDOW_S": env.float("DEPLOYMENT_FAILURE_WINDOW_S", default=60.0),
    "DEPLOYMENT_FAILURES_TO_COOL": env.int("DEPLOYMENT_FAILURES_TO_COOL", default=3),
    "DEPLOYMENT_FAILURE_RATIO": env.float("DEPLOYMENT_FAILURE_RATIO", default=0.5),
    # A task its deployments refuse for load (429) waits for another turn, without spending an
    # attempt, this many times at most; past that each refusal counts as a failed attempt.
    "DEPLOYMENT_REFUSALS_FREE": env.int("DEPLOYMENT_REFUSALS_FREE", default=20),
    # Largest `query` accepted, in characters.
    "MAX_QUERY_CHARS": env.int("MAX_QUERY_CHARS", default=8000),
}
# --- Input protections (apps.gateway) ---------------------------------------------------------
# Rate limits, concurrency caps, load shedding, the response cache, request limits, the OpenAPI
# document and XML output. Per-app and per-key values live on App / ApiKey rows; these are the
# platform-wide ceilings and the defaults for rows that leave a value empty (0 means no limit).
INSTALLED_APPS += ["drf_spectacular", "drf_spectacular_sidecar"]
# Right after the request id and HTTP metrics, so refusals are logged and counted, and before
# anything that could touch PostgreSQL.
MIDDLEWARE.insert(2, "apps.gateway.middleware.api_edge_middleware")
REST_FRAMEWORK.update(
    {
        "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
        # Responses are negotiated from Accept alone, as on the async routes; `?format=` is an
        # ordinary query parameter (the OpenAPI document view reads it itself).
        "URL_FORMAT_OVERRIDE": None,
    }
)
GATEWAY = {
    # Requests per second across every web process, refused with 429 before any database work.
    "GLOBAL_RATE_LIMIT_PER_S": env.float("GLOBAL_RATE_LIMIT_PER_S", default=1000.0),
    "GLOBAL_RATE_LIMIT_BURST": env.int("GLOBAL_RATE_LIMIT_BURST", default=0),  # 0: one second's
    # Defaults for keys and end users whose app (or key) sets no rate of its own: one key may
    # not take the whole ceiling from every other app, one end user not their app's whole budget.
    "KEY_RATE_LIMIT_PER_S": env.float("KEY_RATE_LIMIT_PER_S", default=500.0),
    "KEY_RATE_LIMIT_BURST": env.int("KEY_RATE_LIMIT_BURST", default=0),
    "USER_RATE_LIMIT_PER_S": env.float("USER_RATE_LIMIT_PER_S", default=20.0),
    "USER_RATE_LIMIT_BURST": env.int("USER_RATE_LIMIT_BURST", default=40),
    # Requests that carry no credential at all, per client address: counted apart from the
    # global ceiling, so an anonymous flood cannot spend the budget of every real client.
    "ANON_RATE_LIMIT_PER_S": env.float("ANON_RATE_LIMIT_PER_S", default=20.0),
    "ANON_RATE_LIMIT_BURST": env.int("ANON_RATE_LIMIT_BURST", default=40),
    # Answers served at once per app (Dify's max_active_requests) when the app sets none.
    "MAX_ACTIVE_REQUESTS": env.int("MAX_ACTIVE_REQUESTS", default=0),
    # A served answer's slot lapses this long after its web process stopped renewing it (crash).
    "CAP_LEASE_TTL_S": env.float("CAP_LEASE_TTL_S", default=30.0),
    # Load shedding: a request whose wait for a worker (queue depth ahead of it / recent
    # throughput) exceeds its deadline_ms, or this default wait for its priority, is refused with
    # 503 before anything is recorded. `high` is never shed.
    "SHED_ENABLED": env.bool("SHED_ENABLED", default=True),
    "SHED_MAX_WAIT_S": {
        "low": env.float("SHED_MAX_WAIT_LOW_S", default=30.0),
        "medium": env.float("SHED_MAX_WAIT_MEDIUM_S", default=120.0),
    },
    # Throughput assumed when too little was measured (tasks finished per second, cluster-wide).
    "SHED_MIN_THROUGHPUT_PER_S": env.float("SHED_MIN_THROUGHPUT_PER_S", default=1.0),
    "SHED_WINDOW_S": env.float("SHED_WINDOW_S", default=30.0),
    # Response cache (apps that opt in): how long an answer is served when the app sets no TTL.
    "CACHE_TTL_S": env.int("CACHE_TTL_S", default=3600),
    # Request limits (besides MAX_REQUEST_BYTES and MAX_QUERY_CHARS above).
    "MAX_JSON_DEPTH": env.int("MAX_JSON_DEPTH", default=32),
    "MAX_INPUTS": env.int("MAX_INPUTS", default=100),
    "MAX_INPUT_CHARS": env.int("MAX_INPUT_CHARS", default=100_000),
}

# --- Secrets, end-user sessions, operator endpoints -----------------------------------------
# Secrets that seal provider keys stored in PostgreSQL (apps.core.sealing), newest first; empty:
# SECRET_KEY. To rotate: put the new one first, run `manage.py reseal_secrets`, drop the old.
SEALING_SECRETS = env.list("SEALING_SECRETS", default=[])
# Environment variables an app may name as its provider key (exact names, or prefixes with `*`).
PROVIDER_KEY_ENV_ALLOWED = env.list(
    "PROVIDER_KEY_ENV_ALLOWED", default=["OPENAI_API_KEY", "PROVIDER_KEY_*"]
)
# The servers a deployment may send its key to (apps.deployments.base_urls): URL prefixes, each
# matched on scheme, host, port and path. By default OpenAI's API and model servers on this
# host's loopback (vLLM, Ollama, llama.cpp); add yours, e.g. http://vllm.internal:8000/v1.
PROVIDER_BASE_URL_ALLOWED = env.list(
    "PROVIDER_BASE_URL_ALLOWED",
    default=[
        "https://api.openai.com/v1",
        "http://127.0.0.1:*",
        "http://localhost:*",
        "http://[::1]:*",
    ],
)
# How long a browser's end-user session of a web chat lasts without a visit to the page.
WEB_SESSION_MAX_AGE_S = env.int("WEB_SESSION_MAX_AGE_S", default=30 * 24 * 3600)
WEB_SESSION_COOKIE_SECURE = env.bool("WEB_SESSION_COOKIE_SECURE", default=False)
# Refuse a default or weak password for the operator account seed_demo makes (production: on).
OPERATOR_PASSWORD_CHECKED = env.bool("OPERATOR_PASSWORD_CHECKED", default=False)
# A bearer token /metrics requires (empty: open, as Prometheus scrapes usually are inside a
# cluster), and how long /metrics and /readyz reuse their figures.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# How often each process sends what it recorded to the cluster's figures (apps.core.metrics).
METRICS_FLUSH_S = env.float("METRICS_FLUSH_S", default=1.0)
# Fields the cluster's metrics hash may hold (a label value is a field): past it, new ones are
# dropped and counted in dp_metrics_dropped_total. A deployment has a few hundred.
METRICS_MAX_FIELDS = env.int("METRICS_MAX_FIELDS", default=20_000)
OPERATIONS_FIGURES_CACHE_S = env.float("OPERATIONS_FIGURES_CACHE_S", default=1.0)

SPECTACULAR_SETTINGS = {
    "TITLE": "dify-platform API",
    "DESCRIPTION": "Dify-compatible Service API for chat and completion apps, with extensions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The document and its viewer are public; the API itself needs an app key.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Swagger UI from the drf-spectacular-sidecar package, served by the platform (no CDN).
    "SWAGGER_UI_DIST": "/api/docs/assets",
    "SWAGGER_UI_FAVICON_HREF": "/api/docs/assets/favicon-32x32.png",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.interface.openapi.add_response_components",
    ],
}
# --- end of input protections -----------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "apps.core.logging.ContextFilter"},
        "secret_paths": {"()": "apps.core.logging.SecretPathFilter"},
    },
    "formatters": {
        "json": {"()": "apps.core.logging.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Its warnings name the request's path ("Not Found: ..."): without secrets.
        "django.request": {"filters": ["secret_paths"]},
        "rq.worker": {"level": "WARNING"},
    },
}

# --- Batches (apps.batches): OpenAI's Batch API --------------------------------------------------
INSTALLED_APPS += ["apps.batches"]
BATCHES = {
    # OpenAI's limits: requests in one batch, and the size of its input file.
    "MAX_REQUESTS": env.int("BATCH_MAX_REQUESTS", default=50_000),
    "MAX_FILE_MB": env.int("BATCH_MAX_FILE_MB", default=200),
    # Requests of all batches queued at once (the rest are held in PostgreSQL and released in
    # turn, apps.batches.progress): enough to keep the workers' bulk capacity busy between two
    # rounds of housekeeping, few enough that live work is never queued behind a batch.
    "QUEUED_MAX": env.int("BATCH_QUEUED_MAX", default=64),
    # How often the housekeeping moves batches on (requests are released on every round).
    "HOUSEKEEPING_S": env.float("BATCH_HOUSEKEEPING_S", default=1.0),
    # Batches an app may have open at once (validating, in progress, finalizing, cancelling):
    # past it, creating one is refused with 429 `too_many_open_batches`.
    "MAX_OPEN_PER_APP": env.int("BATCH_MAX_OPEN_PER_APP", default=20),
    # Open batches the housekeeping moves on per round (the least recently moved first), and
    # apps whose batches get requests released per round (in turn): its work per round stays
    # bounded, so it keeps pushing every app's retries on time.
    "ADVANCE_PER_ROUND": env.int("BATCH_ADVANCE_PER_ROUND", default=20),
    "RELEASE_APPS_PER_ROUND": env.int("BATCH_RELEASE_APPS_PER_ROUND", default=16),
    # Batch input, output and error files are kept this long (OpenAI's default: 30 days).
    "FILE_EXPIRE_S": env.int("BATCH_FILE_EXPIRE_S", default=30 * 24 * 3600),
}

# --- Files (apps.files) ------------------------------------------------------------------------
# Files with chat requests (Dify's /v1/files/upload, files by URL) and the platform's other files,
# stored where every web and worker process on every host can read them.
INSTALLED_APPS += ["apps.files"]
# Where new content goes: "database" (PostgreSQL, in chunks: nothing more to run), "directory"
# (FILE_STORAGE_DIR, a volume every host mounts), or the dotted path of a backend class
# (apps.files.backends). Files keep the backend they were written to.
FILE_STORAGE_BACKEND = env.str("FILE_STORAGE_BACKEND", default="database")
FILE_STORAGE_DIR = env.str("FILE_STORAGE_DIR", default=str(BASE_DIR / "var" / "files"))
# Content streams in and out in pieces of this size (one row each in the database backend).
FILE_STORAGE_CHUNK_BYTES = env.int("FILE_STORAGE_CHUNK_BYTES", default=1024 * 1024)
# The largest upload whatever an app allows (each app sets its image and document limits below it).
FILE_UPLOAD_MAX_MB = env.int("FILE_UPLOAD_MAX_MB", default=50)
# Files by URL (`remote_url`) are fetched by the workers, never by the web processes, within these
# limits. Addresses that are not public (private, loopback, link-local, ...) are refused, checked
# after DNS and again on every redirect, unless they are in FILE_REMOTE_ALLOWED_NETWORKS (CIDRs,
# e.g. 10.0.0.0/8 for an intranet's files).
FILE_REMOTE_TIMEOUT_S = env.float("FILE_REMOTE_TIMEOUT_S", default=15.0)
FILE_REMOTE_MAX_REDIRECTS = env.int("FILE_REMOTE_MAX_REDIRECTS", default=3)
FILE_REMOTE_ALLOWED_NETWORKS = env.list("FILE_REMOTE_ALLOWED_NETWORKS", default=[])
# A document's text is read (PDFs in a process of their own, apps.files.extract) only within
# these: its size, its pages, the CPU seconds and the memory the reading may take. Past one, the
# question that carried it fails with a clear error (400), and nothing else does.
FILE_EXTRACT_MAX_MB = env.int("FILE_EXTRACT_MAX_MB", default=50)
FILE_EXTRACT_MAX_PAGES = env.int("FILE_EXTRACT_MAX_PAGES", default=500)
FILE_EXTRACT_CPU_S = env.int("FILE_EXTRACT_CPU_S", default=10)
FILE_EXTRACT_MEMORY_MB = env.int("FILE_EXTRACT_MEMORY_MB", default=512)
# `manage.py files_purge` takes content no file points to for an orphan once it is this old.
FILE_ORPHAN_GRACE_S = env.float("FILE_ORPHAN_GRACE_S", default=3600.0)
# Chat uploads (and the copies of files fetched by URL for a question) are kept this long, as
# Dify keeps them for a set time; 0 keeps them until deleted.
FILE_UPLOAD_EXPIRE_S = env.int("FILE_UPLOAD_EXPIRE_S", default=30 * 24 * 3600)
# What an app's clients may keep (uploads, files by URL, batch input; apps.files.quotas), and
# each end user of its uploads: files and MB (0: no limit). Past it: 403 file_quota_exceeded.
FILE_QUOTA_APP_FILES = env.int("FILE_QUOTA_APP_FILES", default=100_000)
FILE_QUOTA_APP_MB = env.int("FILE_QUOTA_APP_MB", default=50 * 1024)
FILE_QUOTA_END_USER_FILES = env.int("FILE_QUOTA_END_USER_FILES", default=200)
FILE_QUOTA_END_USER_MB = env.int("FILE_QUOTA_END_USER_MB", default=1024)
# The scheduler's housekeeping deletes expired files this often, at most this many a round (the
# rest on the next ones); `manage.py files_purge` does it all at once, and takes orphans too.
FILE_PURGE_EVERY_S = env.float("FILE_PURGE_EVERY_S", default=60.0)
FILE_PURGE_MAX_FILES = env.int("FILE_PURGE_MAX_FILES", default=500)
# --- end of files -------------------------------------------------------------------------------
