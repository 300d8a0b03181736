# spendctl: `make demo` and `make test` do all the set-up on a fresh machine (Python 3.11+, Node/npm, make).
SHELL := /bin/bash
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON := $(shell command -v $(PYTHON))

.PHONY: install demo serve test lint format clean chromium

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error

install: $(UV) node_modules/.package-lock.json
	$(UV) sync --frozen --quiet

# A local .env with freshly generated keys for the demo (never committed; real environment variables win).
.env: | $(UV)
	@printf 'DEBUG=1\nALLOW_PRIVATE_URLS=1\nSECRET_KEY=%s\nFIELD_ENCRYPTION_KEY=%s\n' \
	  "$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" \
	  "$$($(PYTHON) -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')" > .env
	@echo "wrote .env (demo settings)"

demo: install .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo
	$(PY) manage.py runserver 127.0.0.1:8000

serve: install .env
	$(PY) manage.py runserver 127.0.0.1:8000

# Chromium drives the browser tests; install Debian's when we may (root with apt), never a downloaded build.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Browser tests need /usr/bin/chromium: sudo apt-get install chromium"; fi; \
	fi

test: install chromium
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) $(TOOLS) node_modules var .pytest_cache .ruff_cache
