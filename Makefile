# apachews — see README.md. `make test` is what CI runs; `make demo` runs the main job end to end.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APACHE ?= 2.4.69
# Where demo sources come from: PyPI's mod-wsgi-httpd works offline-from-Apache; for 2.2.x use
# SOURCE='--git /path/to/httpd.git' or SOURCE='--mirror https://archive.apache.org/dist/httpd/'.
SOURCE ?= --from-pypi

.PHONY: deps venv test test-all lint demo bench clean patches apps apps-homeassistant

deps: apps
	bash scripts/install-host-deps.sh
	bash scripts/start-docker.sh

# The real applications of tests/test_apps.py (cockpit-ws, chromium, node-red, socket.io's browser client).
apps:
	bash scripts/install-apps.sh

# Home Assistant too (heavy, optional: its test skips without it).
apps-homeassistant:
	bash scripts/install-apps.sh --homeassistant

$(PY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(PY)

venv: $(PY)

lint: venv
	$(VENV)/bin/ruff check apachews tests benchmarks
	$(VENV)/bin/ruff format --check apachews tests benchmarks

# What CI runs (.ci/run): every test but the slow ones (well under 30 minutes on 2 cores).
test: deps venv lint
	$(VENV)/bin/pytest -ra -m "not slow" tests

# Every test, the slow ones too: every preset on Debian 11, the real applications, a browser, builds at once.
test-all: deps venv lint
	$(VENV)/bin/pytest -ra tests

# The main job end to end: base image, build of our module in Docker, config checked by that httpd,
# and the WebSocket suite through it.
demo: deps venv
	$(VENV)/bin/apachews image bootstrap
	$(VENV)/bin/apachews matrix --apache $(APACHE) $(SOURCE) --backport -o dist

# CAPACITY_ARGS: e.g. "--install-peers --dist dist/httpd-2.2.31" (nginx, haproxy and strace as root; a built httpd).
CAPACITY_ARGS ?=
# The matrix of every 2.2.x and 2.4.1-2.4.4 tag, every MPM, every preset, cold then warm (about an hour on
# 2 cores); it needs an apache/httpd clone in APACHEWS_HTTPD_GIT. MATRIX_ARGS="--apache 2.2.3,2.4.4" for less.
MATRIX_ARGS ?= --apache all-2.2,2.4.1-2.4.4 --mpms all --preset all --jobs 4 --markdown
bench: deps venv
	$(PY) benchmarks/build_bench.py
	$(PY) benchmarks/bench_proxy.py
	$(PY) benchmarks/capacity_bench.py $(CAPACITY_ARGS)
	@if [ -n "$$APACHEWS_HTTPD_GIT" ]; then $(PY) benchmarks/matrix_bench.py --git "$$APACHEWS_HTTPD_GIT" $(MATRIX_ARGS); \
	else echo "matrix_bench: skipped, set APACHEWS_HTTPD_GIT to an apache/httpd clone"; fi

# The series' creation patch is generated from the C files in module/.
patches: venv
	$(PY) -m apachews.module

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
