# Two commands: `make run` serves the app, `make test` runs every test. Both install
# what is missing first (see scripts/prereqs.sh).
SHELL := /bin/bash
HOST ?= 127.0.0.1
PORT ?= 8000
PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)

.PHONY: run test prereqs test-prereqs lint format bench node-image migrate clean

prereqs:
	@scripts/prereqs.sh python npm docker swarm node-image

test-prereqs:
	@scripts/prereqs.sh python npm docker swarm node-image redis chromium

migrate: prereqs
	@$(PY) manage.py migrate --noinput -v 0

run: prereqs
	@$(PY) manage.py migrate --noinput -v 0
	@scripts/serve.sh "$(HOST)" "$(PORT)"

test: test-prereqs
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) -m pytest $(PYTEST_ARGS)

lint:
	@$(PY) -m ruff check . && $(PY) -m ruff format --check .

format:
	@$(PY) -m ruff check --fix . && $(PY) -m ruff format .

node-image:
	@node-image/build.sh --force

bench: prereqs
	@$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf .venv node_modules staticfiles .pytest_cache .ruff_cache
