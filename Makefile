# dify-platform developer entry points. `make` alone lists them.
#
# Every target that needs the virtualenv or the services first runs scripts/bootstrap.sh, which
# is idempotent and takes well under a second when nothing changed, so targets work on a fresh
# clone and never run against a stale venv.

# Interpreter used to *create* the venv. Only handed to bootstrap when you set it yourself
# (`make test PYTHON=python3.12` or in the environment); otherwise bootstrap prefers python3.11
# and falls back to python3 if that is 3.11+.
PYTHON ?= python3
VENV ?= .venv
# Extra pytest arguments, e.g. make test PYTEST_ARGS='-k chat -x'
PYTEST_ARGS ?=

PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# $(origin PYTHON) is "file" when the default above applies, so it is then not passed on.
BOOTSTRAP := $(strip VENV=$(VENV) $(if $(filter-out file,$(origin PYTHON)),PYTHON=$(PYTHON)) bash scripts/bootstrap.sh)

.DEFAULT_GOAL := help
.PHONY: help bootstrap bootstrap-dev tools run worker migrate test check check-format check-lint \
	check-types check-migrations lint typecheck bench soak drills clean cluster

help:
	@echo "dify-platform make targets:"
	@echo "  run            bootstrap, migrate, seed demo data, serve the platform"
	@echo "  worker         run the background job workers only (manage.py run_workers)"
	@echo "  cluster        nginx in front of 2 web processes, plus 2 workers, on port 8080"
	@echo "                 (CLUSTER_ARGS='--web 3 --workers 4 --port 8080'; needs nginx)"
	@echo "  migrate        apply database migrations"
	@echo "  test           run the test suite (extra args: PYTEST_ARGS='-k foo -x')"
	@echo "  check          what CI checks: ruff format --check, ruff check, mypy, missing migrations"
	@echo "                 (make -k check runs them all even if one fails)"
	@echo "  lint           reformat and autofix (ruff format, ruff check --fix)"
	@echo "  typecheck      mypy only"
	@echo "  drills         failure drills (workers and web processes killed, Redis/PostgreSQL restarted)"
	@echo "  bench          benchmarks against plain RQ and the raw model (BENCH_ARGS='--quick')"
	@echo "  soak           5-minute steady load through nginx with failures (SOAK_ARGS=...)"
	@echo "  bootstrap      venv with runtime deps, PostgreSQL + Redis up, database created"
	@echo "  bootstrap-dev  same, with the dev/test tools"
	@echo "  clean          remove $(VENV) and tool caches"
	@echo "Variables: PYTHON=$(PYTHON) VENV=$(VENV) PYTEST_ARGS; DATABASE_URL and REDIS_URL"
	@echo "from the environment (defaults: see scripts/bootstrap.sh)."

bootstrap:
	@$(BOOTSTRAP) run

bootstrap-dev:
	@$(BOOTSTRAP) dev

# Dev venv only: formatting and type checking need no database, so they work without services.
tools:
	@BOOTSTRAP_SERVICES=0 $(BOOTSTRAP) dev

# exec: the server replaces the recipe shell, so Ctrl-C / SIGTERM reach it directly.
run: bootstrap
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	exec $(PY) manage.py run_platform

worker: bootstrap
	exec $(PY) manage.py run_workers

# Several web processes behind nginx and a worker pool, as on a small multi-process deployment.
# BOOTSTRAP_NGINX=1: bootstrap installs Debian's nginx if it is missing.
CLUSTER_ARGS ?= --web 2 --workers 2 --port 8080
cluster:
	@BOOTSTRAP_NGINX=1 $(BOOTSTRAP) run
	$(PY) manage.py migrate --noinput
	exec $(PY) manage.py run_cluster $(CLUSTER_ARGS)

migrate: bootstrap
	$(PY) manage.py migrate --noinput

# The whole suite, the failure drills (tests/drills) included; `make drills` runs those alone.
test: bootstrap-dev
	$(PY) -m pytest $(PYTEST_ARGS)

drills: bootstrap-dev
	$(PY) -m pytest tests/drills $(PYTEST_ARGS)

# Read-only: fails instead of fixing, so it is safe for CI; `make lint` fixes what it can.
# One target per check so `make -k check` (what CI runs) reports every failing check at once.
check: check-format check-lint check-types check-imports check-migrations

check-format: bootstrap-dev
	$(BIN)/ruff format --check .

check-lint: bootstrap-dev
	$(BIN)/ruff check .

check-types: bootstrap-dev
	$(BIN)/mypy .

check-imports: bootstrap-dev
	$(BIN)/lint-imports

# Model changes without a migration.
check-migrations: bootstrap-dev
	$(PY) manage.py makemigrations --check --dry-run

lint: tools
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Benchmarks bring up their own processes on loopback, with their own database and Redis db.
bench:
	@BOOTSTRAP_WRK=1 $(BOOTSTRAP) dev
	$(PY) -m bench.run $(BENCH_ARGS)

# The soak run: nginx, 2 daphne, 2 workers at a steady rate with failures (bench/soak.py).
SOAK_ARGS ?= --minutes 5 --rate 20
soak: bootstrap-dev
	$(PY) -m bench.soak $(SOAK_ARGS)

typecheck: tools
	$(BIN)/mypy .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
