# Two commands on a fresh machine: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup system demo test lint bench soak e2e-prod clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv

# One resolver call for the whole stack (a second install can silently downgrade python-dateutil).
$(STAMP): $(PY) pyproject.toml
	$(PY) -m uv pip install -q --python $(PY) -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# System packages the tests start as real services (PostgreSQL, Redis, Chromium), one list in
# scripts/system-packages: installed with apt-get when root on Debian/Ubuntu; anyone else is told the
# exact command before any test starts.
system:
	@scripts/system-packages install

# Catches up from 2025-01-01, the daily DAG's start date: costs by API key cross OpenAI's 2025-12-01 floor.
demo: setup
	$(PY) -m airflow_provider_openai_usage.testing.demo --since 2025-01-01

# Lint and types first (seconds), then the suite.
test: system lint
	$(PY) -m pytest -q

# The lint/type gate (config in pyproject.toml), part of `make test`.
lint: setup
	$(PY) -m ruff check airflow_provider_openai_usage
	$(PY) -m mypy airflow_provider_openai_usage

bench: system setup
	$(PY) -m uv pip install -q --python $(PY) -e '.[test,bench]'
	$(PY) benchmarks/run.py

soak: setup
	$(PY) benchmarks/soak.py --schedules 1000

# Production-shaped Airflow (PostgreSQL, Redis, api-server, scheduler, dag-processor, triggerer, two
# Celery workers) catching up 30 days of all endpoints with faults, a killed worker and a restarted
# triggerer; its PostgreSQL and Redis come from `make system`.
e2e-prod: system setup
	E2E_DAYS=30 E2E_ENDPOINTS=all $(PY) -m pytest -q -s -n 0 tests/integration/test_production_shaped.py

clean:
	rm -rf $(VENV) demo-output .demo-airflow
