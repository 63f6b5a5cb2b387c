#!/usr/bin/env bash
# Serve pwd: the reaper, the pool keeper and the workshop provisioner in the background,
# daphne in the foreground.
# Ctrl-C stops them all.
set -euo pipefail
host=${1:-127.0.0.1}
port=${2:-8000}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
py="$root/.venv/bin/python"

# Nodes may not open anything on this host (its VXLAN carries every session's overlay) nor
# answer for one another on docker_gwbridge; both need root (docs/security.md).
export PWD_FW_APP_PORT="$port"
if ! bash scripts/firewall.sh --check >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    printf '\033[1m==> applying the host firewall (app port %s)\033[0m\n' "$port"
    bash scripts/firewall.sh || true
fi
if ! bash scripts/firewall.sh --check >/dev/null 2>&1; then
    printf '\033[31mwarning: the host firewall is NOT applied:\033[0m %s\n' \
        "nodes can reach this host's VXLAN (other sessions' overlays), swarm and app ports." \
        "Run: sudo PORT=$port scripts/firewall.sh; see what is missing: sudo scripts/firewall.sh --check" >&2
fi
[ "$(id -u)" != 0 ] || "$py" -m sessions_app.antispoof || true

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

if "$py" manage.py help reap >/dev/null 2>&1; then
    printf '\033[1m==> starting the reaper\033[0m\n'
    "$py" manage.py reap &
    pids+=($!)
fi
if "$py" manage.py help pool >/dev/null 2>&1; then
    printf '\033[1m==> starting the warm node pool\033[0m\n'
    "$py" manage.py pool &
    pids+=($!)
fi
if "$py" manage.py help workshops >/dev/null 2>&1; then
    printf '\033[1m==> starting the workshop seat provisioner\033[0m\n'
    "$py" manage.py workshops &
    pids+=($!)
fi
printf '\033[1m==> serving pwd at http://%s:%s/\033[0m\n' "$host" "$port"
# No --proxy-headers: daphne would believe any client's X-Forwarded-For; the app reads it
# only from PWD_TRUSTED_PROXIES. pwd_site.serve is daphne with session ids kept out of
# its access log.
"$py" -m pwd_site.serve -b "$host" -p "$port" pwd_site.asgi:application &
pids+=($!)
wait -n "${pids[@]}"
