# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   - venv, install, emulator, the example DAGs through Airflow, a report
#   make test   - venv, install, Redis if missing, lint (ruff + mypy), the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit integration e2e bench constraints redis clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

# Tests that need Redis start a real redis-server; install Debian's package when missing.
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "redis-server missing: installing Debian's redis-server package"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: $(STAMP) redis lint
	$(PY) -m pytest tests

unit: $(STAMP)
	$(PY) -m pytest tests/unit

integration: $(STAMP) redis
	$(PY) -m pytest tests/integration

e2e: $(STAMP)
	$(PY) -m pytest tests/e2e

demo: $(STAMP)
	$(PY) -m tests.e2e.demo

bench: $(STAMP) redis
	$(PY) -m benchmarks --quick

# Refresh the tested pins after changing dependencies (as Airflow publishes its constraints).
constraints:
	$(PY) -m pip freeze --exclude-editable | grep -v '^airflow-provider-neptune' > constraints.txt

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
