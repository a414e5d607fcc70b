# apachews — see README.md. `make test` is what CI runs; `make demo` runs the main job end to end.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APACHE ?= 2.4.69

.PHONY: deps venv test lint demo bench clean

deps:
	bash scripts/install-host-deps.sh
	bash scripts/start-docker.sh

$(PY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(PY)

venv: $(PY)

lint: venv
	$(VENV)/bin/ruff check apachews tests benchmarks
	$(VENV)/bin/ruff format --check apachews tests benchmarks

test: deps venv lint
	$(VENV)/bin/pytest -ra tests

bench: deps venv
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
