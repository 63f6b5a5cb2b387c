# Two commands: `make run` serves the app, `make test` runs every test. Both install
# what is missing first (see scripts/prereqs.sh).
SHELL := /bin/bash
HOST ?= 127.0.0.1
PORT ?= 8000
PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)

.PHONY: run test prereqs test-prereqs lint format bench soak node-image migrate clean lock \
	clean-machine

prereqs:
	@scripts/prereqs.sh python npm docker swarm node-image firewall

test-prereqs:
	@scripts/prereqs.sh python npm docker swarm node-image firewall redis postgres chromium

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
	@$(PY) bench/profiles.py
	@$(PY) bench/swarm_setup.py
	@$(PY) bench/stats.py
	@$(PY) bench/browser_throughput.py
	@$(PY) bench/ports.py
	@$(PY) bench/files.py
	@$(PY) bench/workshops.py
	@$(PY) bench/hot_start.py

# Hours of a class's churn on one server (bench/soak.py): SOAK_CLIENTS clients for
# SOAK_MINUTES minutes; writes docs/benchmarks.md's soak section and docs/soak.png.
SOAK_CLIENTS ?= 3
SOAK_MINUTES ?= 30
soak: prereqs
	@$(PY) bench/soak.py --clients $(SOAK_CLIENTS) --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

clean:
	rm -rf .venv node_modules staticfiles .pytest_cache .ruff_cache

# Resolve requirements.lock again from pyproject.toml's ranges (dev extra included, for
# every platform, with hashes). Pins still allowed by the ranges are kept; UPGRADE=1 moves
# every pin to the newest allowed. tests/test_lockfile.py runs this into a copy.
LOCK_FILE ?= requirements.lock
lock:
	@[ -x $(PY) ] || scripts/prereqs.sh python
	@UV_CACHE_DIR=$${UV_CACHE_DIR:-$(CURDIR)/.cache/uv} $(PY) -m uv pip compile pyproject.toml \
		--extra dev --universal --generate-hashes --custom-compile-command 'make lock' -q \
		$(if $(UPGRADE),--upgrade) $(LOCK_ARGS) -o $(LOCK_FILE)

# Remove what `make run` and `make test` installed or cached for this project, so the next
# run starts as on a new machine (docs/deploy.md): every container, network and volume
# labelled pwd.instance, the project's images (pwd-*), .cache (by build.sh, which first unmounts
# what an interrupted debootstrap left in it), .venv, node_modules, staticfiles and the
# SQLite database. System packages and the engine's swarm mode stay. DRY_RUN=1 only lists.
clean-machine:
	@set -uo pipefail; dry="$(DRY_RUN)"; \
	act() { if [ -n "$$dry" ]; then echo "would run: $$*"; else echo "+ $$*"; "$$@"; fi; }; \
	if command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; then \
		ids=$$(docker ps -aq --filter label=pwd.instance); \
		[ -z "$$ids" ] || act docker rm -f -v $$ids; \
		ids=$$(docker network ls -q --filter label=pwd.instance); \
		[ -z "$$ids" ] || act docker network rm $$ids; \
		ids=$$(docker volume ls -q --filter label=pwd.instance); \
		[ -z "$$ids" ] || act docker volume rm -f $$ids; \
		ids=$$(docker images --format '{{.Repository}}:{{.Tag}}' \
			| grep -E '^pwd-[a-z0-9._-]+:' | sort -u); \
		[ -z "$$ids" ] || act docker rmi -f $$ids; \
		ids=$$(docker images -q --filter dangling=true --filter label=pwd.image-hash); \
		[ -z "$$ids" ] || act docker rmi -f $$ids; \
	else \
		echo "no Docker engine answers: containers and images left as they are"; \
	fi; \
	disks="$${PWD_DISK_DIR:-/var/lib/pwd/disks}"; \
	for m in $$(awk -v d="$$disks/" 'index($$5, d) == 1 {print $$5}' /proc/self/mountinfo); do \
		act umount -l "$$m"; \
	done; \
	[ ! -d "$$disks" ] || act rm -rf --one-file-system "$$disks"; \
	pidfile="$${PWD_LOG_DIR:-/var/log/pwd}/dockerd.pid"; \
	if [ -f "$$pidfile" ] && kill -0 "$$(cat "$$pidfile")" 2>/dev/null; then \
		echo "stopping the Docker engine that make run / make test started"; \
		act kill "$$(cat "$$pidfile")"; \
		[ -n "$$dry" ] || for i in $$(seq 1 30); do kill -0 "$$(cat "$$pidfile")" 2>/dev/null || break; sleep 1; done; \
		act rm -f "$$pidfile"; \
	fi; \
	node-image/build.sh --remove-cache $(if $(DRY_RUN),--dry-run); \
	files=$$(ls -d .venv node_modules staticfiles db.sqlite3 db.sqlite3-* .pytest_cache \
		.ruff_cache pwd.egg-info test-artifacts 2>/dev/null); \
	[ -z "$$files" ] || act rm -rf $$files; \
	echo "clean-machine: done$(if $(DRY_RUN), (dry run: nothing removed)). System packages stay installed."
