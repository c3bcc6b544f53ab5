# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   - venv, install, emulator, the example DAGs through Airflow, a report
#   make test   - venv, install, Redis if missing, lint (ruff + mypy), the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo demo-celery test lint unit integration e2e fidelity bench constraints system-deps clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

# Tests start a real redis-server, validate docker-compose.yaml with docker-compose, drive the
# emulator's pages in headless chromium and run the Celery stack on Debian's PostgreSQL server (its
# binaries are in /usr/lib/postgresql/<version>/bin, not on PATH). Install Debian's packages when
# missing (never skip the tests that need them).
SYSTEM_TOOLS := redis-server:redis-server docker-compose:docker-compose chromium:chromium
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: $(STAMP) system-deps lint
	$(PY) -m pytest tests

unit: $(STAMP)
	$(PY) -m pytest tests/unit

integration: $(STAMP) system-deps
	$(PY) -m pytest tests/integration

e2e: $(STAMP) system-deps
	$(PY) -m pytest tests/e2e

# The real neptune client against the emulator, item by item of what a real server does (README,
# "Fidelity"); nothing is fetched at run time. Also part of `make test`.
fidelity: $(STAMP)
	$(PY) -m pytest tests/fidelity

demo: $(STAMP)
	$(PY) -m tests.e2e.demo

# docker-compose.yaml's CeleryExecutor stack as processes (no Docker): PostgreSQL, Redis, the
# emulator, Airflow and two Celery workers; runs the example DAGs on it and prints a report.
demo-celery: $(STAMP) system-deps
	$(PY) -m tests.e2e.demo_celery

bench: $(STAMP) system-deps
	$(PY) -m benchmarks --quick

# Refresh the tested pins after changing dependencies (as Airflow publishes its constraints).
constraints:
	$(PY) -m pip freeze --exclude-editable | grep -v '^airflow-provider-neptune' > constraints.txt

clean:
	rm -rf $(VENV) .demo .demo-celery .pytest_cache .mypy_cache .ruff_cache
