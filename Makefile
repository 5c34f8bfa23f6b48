# Two commands on a fresh machine: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench soak clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv

# One resolver call for the whole stack (a second install can silently downgrade python-dateutil).
$(STAMP): $(PY) pyproject.toml
	$(PY) -m uv pip install -q --python $(PY) -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) -m airflow_provider_openai_usage.testing.demo

test: setup
	$(PY) -m pytest -q

# The lint/type gate (config in pyproject.toml). To join `make test` once main is clean (issue #13).
lint: setup
	$(PY) -m ruff check airflow_provider_openai_usage
	$(PY) -m mypy airflow_provider_openai_usage

bench: setup
	$(PY) -m uv pip install -q --python $(PY) -e '.[test,bench]'
	$(PY) benchmarks/run.py

soak: setup
	$(PY) benchmarks/soak.py --schedules 1000

clean:
	rm -rf $(VENV) demo-output .demo-airflow
