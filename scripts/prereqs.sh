#!/usr/bin/env bash
# Make sure what pwd needs is installed and running. Each step says what it does and
# skips what is already done, so re-running on a ready machine costs a few seconds.
#
#   scripts/prereqs.sh STEP...   steps: python npm docker swarm node-image firewall redis postgres
#                                chromium
#
# On a root Debian/Ubuntu machine missing packages are installed with apt-get; elsewhere
# a missing prerequisite stops with a message saying what to do. With CI=true a missing
# prerequisite is always a failure, never a silent skip.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
logdir=${PWD_LOG_DIR:-/var/log/pwd}
[ -w "$(dirname "$logdir")" ] || logdir="$root/.cache/log"
mkdir -p "$logdir"
venv="$root/.venv"
userns_remap=${PWD_USERNS_REMAP:-default}
python=${PYTHON:-python3}
# uv keeps its downloads with the project's other caches (make clean-machine removes them)
# and never fetches a Python of its own.
export UV_CACHE_DIR=${UV_CACHE_DIR:-$root/.cache/uv} UV_PYTHON_DOWNLOADS=never

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

apt_updated=0
apt_install() {
    can_apt || die "missing $*; install it (apt-get install $*) or run as root on Debian/Ubuntu"
    say "installing $* with apt-get"
    if [ "$apt_updated" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The Python dependencies come from requirements.lock (made from pyproject.toml's ranges by
# `make lock`), hash-checked, installed by the uv that the lock itself pins.
step_python() {
    local stamp="$venv/.pwd-installed" want lock="$root/requirements.lock" uv="$venv/bin/uv"
    want=$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
        say "python dependencies are up to date (requirements.lock)"
        return
    fi
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        die "Python 3.11 or newer is needed as '$python' (set PYTHON=/path/to/python3.11)"
    fi
    if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
        apt_install python3-venv
    fi
    if [ ! -x "$venv/bin/python" ]; then
        say "creating the virtualenv in .venv"
        "$python" -m venv "$venv"
    fi
    local uv_pin
    uv_pin=$(awk '/^uv==/ {print $1; exit}' "$lock")
    [ -n "$uv_pin" ] || die "requirements.lock pins no uv; run 'make lock'"
    if [ "$("$uv" --version 2>/dev/null | cut -d' ' -f2)" != "${uv_pin#uv==}" ]; then
        say "installing $uv_pin (the installer) into .venv with pip"
        # Only uv's entry of the lock, hashes included, so pip checks what it downloads.
        awk '/^uv==/ {p = 1} p {print} p && !/\\$/ {exit}' "$lock" >"$venv/uv-requirement.txt"
        "$venv/bin/python" -m pip install -q --no-cache-dir --require-hashes \
            -r "$venv/uv-requirement.txt"
    fi
    say "installing the Python dependencies from requirements.lock into .venv"
    "$uv" pip sync -q --python "$venv/bin/python" --require-hashes "$lock"
    "$uv" pip install -q --python "$venv/bin/python" --no-deps -e .
    echo "$want" >"$stamp"
}

step_npm() {
    local stamp="node_modules/.pwd-installed" want
    want=$(sha256sum package-lock.json | cut -c1-16)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        say "npm packages are up to date"
        return
    fi
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    say "installing npm packages (xterm.js)"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" > "$stamp"
}

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

step_docker() {
    # Node disks (sessions_app/disks.py) are ext4 images made on this host.
    command -v mkfs.ext4 >/dev/null 2>&1 || apt_install e2fsprogs
    if command -v docker >/dev/null 2>&1 && engine_answers; then
        say "the Docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
        warn_without_userns
        return
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        can_apt || die "no Docker engine answers. Install Docker (https://docs.docker.com/engine/install/) and start it, or run this as root on Debian/Ubuntu."
        apt_install docker.io
    fi
    command -v docker >/dev/null 2>&1 || apt_install docker.io
    if engine_answers; then return; fi
    [ "$(id -u)" = 0 ] || die "no Docker engine answers. Start it (sudo systemctl start docker) or add yourself to the docker group."
    if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
        say "starting the Docker engine with systemctl"
        systemctl start docker || true
    fi
    if ! engine_answers; then
        # Nodes are root only in a user namespace of their own when the engine remaps
        # users (the userns profile, docs/security.md); PWD_USERNS_REMAP=off turns it off.
        local remap=()
        [ "$userns_remap" = off ] || remap=(--userns-remap="$userns_remap")
        say "starting dockerd ${remap[*]} in the background (log: $logdir/dockerd.log)"
        nohup dockerd "${remap[@]}" >>"$logdir/dockerd.log" 2>&1 &
        echo $! >"$logdir/dockerd.pid"
    fi
    for _ in $(seq 1 60); do
        engine_answers && { say "the Docker engine answers"; warn_without_userns; return; }
        sleep 1
    done
    tail -n 20 "$logdir/dockerd.log" >&2 || true
    die "dockerd did not start within 60 s (log: $logdir/dockerd.log)"
}

warn_without_userns() {
    [ "$userns_remap" = off ] && return
    docker info --format '{{json .SecurityOptions}}' 2>/dev/null | grep -q 'name=userns' && return
    printf '\033[33mwarning:\033[0m %s\n' \
        "the running Docker engine does not remap users (no --userns-remap): root in a node" \
        "can become root on this host. Restart dockerd with --userns-remap=default (or stop it" \
        "and run this again, which starts it so), or use Sysbox; see docs/security.md." >&2
}

step_swarm() {
    local state
    state=$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo unknown)
    case "$state" in
        active)
            say "the engine is in swarm mode already (left as it is)" ;;
        inactive)
            say "enabling swarm mode (single node, 127.0.0.1) for attachable overlay networks"
            docker swarm init --advertise-addr 127.0.0.1 >/dev/null ;;
        *)
            die "the engine's swarm state is '$state'; overlay networks need an active swarm. Fix it by hand (docker info) and re-run." ;;
    esac
}

step_node_image() {
    bash node-image/build.sh
}

# The host firewall (scripts/firewall.sh) and nft, which the app's MAC/IP anti-spoofing on
# docker_gwbridge needs (sessions_app/antispoof.py). PORT is the app's port. Needs root.
step_firewall() {
    if [ "$(id -u)" != 0 ]; then
        [ "${CI:-}" != true ] || die "the host firewall needs root (scripts/firewall.sh)"
        printf '\033[33mwarning:\033[0m %s\n' \
            "not root: the host firewall is NOT applied, so nodes can reach this host's VXLAN" \
            "(other sessions' overlays), swarm and app ports. Run: sudo PORT=${PORT:-8000}" \
            "scripts/firewall.sh (docs/security.md)." >&2
        return
    fi
    command -v iptables >/dev/null 2>&1 || apt_install iptables
    command -v nft >/dev/null 2>&1 || apt_install nftables
    say "applying the host firewall (scripts/firewall.sh, app port ${PORT:-8000})"
    PWD_FW_APP_PORT=${PORT:-8000} bash scripts/firewall.sh
}

redis_answers() {
    local port=${PWD_TEST_REDIS_PORT:-6379}
    command -v redis-cli >/dev/null 2>&1 && timeout 5 redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG
}

step_redis() {
    local port=${PWD_TEST_REDIS_PORT:-6379}
    if redis_answers; then
        say "Redis answers on 127.0.0.1:$port"
        return
    fi
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    say "starting redis-server on 127.0.0.1:$port (log: $logdir/redis.log)"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize yes \
        --logfile "$logdir/redis.log"
    for _ in $(seq 1 30); do redis_answers && return; sleep 0.5; done
    die "redis-server did not answer (log: $logdir/redis.log)"
}

step_postgres() {
    # The tests start PostgreSQL servers of their own (tests/postgres_helpers.py); only
    # the binaries are needed here.
    if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
        say "PostgreSQL is installed ($(ls -d /usr/lib/postgresql/*/ | tail -1))"
        return
    fi
    apt_install postgresql
}

step_chromium() {
    if [ -x /usr/bin/chromium ] && command -v chromedriver >/dev/null 2>&1; then
        say "Chromium is installed ($(/usr/bin/chromium --version 2>/dev/null | head -1))"
        return
    fi
    apt_install chromium chromium-driver fonts-dejavu-core
}

[ $# -gt 0 ] || die "usage: $0 STEP... (python npm docker swarm node-image firewall redis postgres chromium)"
for step in "$@"; do
    case "$step" in
        python) step_python ;;
        npm) step_npm ;;
        docker) step_docker ;;
        swarm) step_swarm ;;
        node-image) step_node_image ;;
        firewall) step_firewall ;;
        redis) step_redis ;;
        postgres) step_postgres ;;
        chromium) step_chromium ;;
        *) die "unknown step: $step" ;;
    esac
done
