# TradePilot — the two commands of the README, and a few helpers.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
WORKERS ?= 4

.PHONY: run test install install-dev migrate lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## make run: install, migrate, create the demo user (password printed), serve on :8008
run: $(VENV)/.installed
	$(PY) -m tradepilot migrate
	$(PY) -m tradepilot demo-user
	$(PY) -m tradepilot serve

## make test: install dev dependencies and run the whole suite in parallel
test: $(VENV)/.installed-dev
	$(PY) -m pytest -n $(WORKERS) --dist worksteal --durations=15 $(PYTEST_ARGS)

migrate: $(VENV)/.installed
	$(PY) -m tradepilot migrate

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
