#!/usr/bin/env bash
# Host firewall for pwd nodes (root; iptables). Idempotent: run it again after a change.
#
#   scripts/firewall.sh            install or refresh the rules
#   scripts/firewall.sh --check    exit 0 when every rule is in place, 1 (listing) when not
#   scripts/firewall.sh --remove   take them all away
#
# Nodes are privileged containers run by strangers. Two chains keep them in:
#   PWD-FORWARD (jumped to first from DOCKER-USER, which Docker consults before its own
#     rules for all forwarded traffic): nodes may not reach PWD_FW_BLOCK, by default the
#     cloud metadata address, which hands out the host's cloud credentials.
#   PWD-INPUT (jumped to first from INPUT): nothing arriving from a Docker bridge may open a
#     connection to the host's PWD_FW_HOST_PORTS (the app, a Docker TCP socket, Redis,
#     PostgreSQL), whichever host address it is sent to.
# Docker recreates DOCKER-USER but never empties it, so the rules survive an engine restart;
# run this at boot (after dockerd) to survive a reboot.
set -euo pipefail

block=${PWD_FW_BLOCK:-169.254.169.254}
host_ports=${PWD_FW_HOST_PORTS:-8000,2375,2376,6379,5432}
bridges=${PWD_FW_BRIDGES:-docker0,docker_gwbridge}
ipt=${IPTABLES:-iptables}

split() { tr ',' ' ' <<<"$1"; }

# Each rule as "chain|arguments", in order.
rules() {
    local address bridge
    for address in $(split "$block"); do
        [[ $address == */* ]] || address="$address/32"
        echo "PWD-FORWARD|-d $address -j DROP"
    done
    for bridge in $(split "$bridges"); do
        echo "PWD-INPUT|-i $bridge -p tcp -m multiport --dports $host_ports -m conntrack --ctstate NEW -j DROP"
    done
}

jumps() {
    echo "DOCKER-USER|-j PWD-FORWARD"
    echo "INPUT|-j PWD-INPUT"
}

has_chain() { "$ipt" -S "$1" >/dev/null 2>&1; }

check() {
    local missing=0 line chain args
    while IFS='|' read -r chain args; do
        # shellcheck disable=SC2086
        if ! "$ipt" -C "$chain" $args 2>/dev/null; then
            echo "missing: $ipt -A $chain $args"
            missing=1
        fi
    done < <(rules; jumps)
    return $missing
}

install() {
    if ! has_chain DOCKER-USER; then
        echo "no DOCKER-USER chain: start dockerd first (it creates the chain)" >&2
        exit 1
    fi
    local chain args
    for chain in PWD-FORWARD PWD-INPUT; do
        has_chain "$chain" || "$ipt" -N "$chain"
        "$ipt" -F "$chain"
    done
    while IFS='|' read -r chain args; do
        # shellcheck disable=SC2086
        "$ipt" -A "$chain" $args
    done < <(rules)
    while IFS='|' read -r chain args; do
        # shellcheck disable=SC2086
        "$ipt" -C "$chain" $args 2>/dev/null || "$ipt" -I "$chain" 1 $args
    done < <(jumps)
    echo "pwd firewall: nodes may not reach ${block}; bridges ${bridges} may not reach host ports ${host_ports}"
}

remove() {
    local chain args
    while IFS='|' read -r chain args; do
        # shellcheck disable=SC2086
        while "$ipt" -C "$chain" $args 2>/dev/null; do "$ipt" -D "$chain" $args; done
    done < <(jumps)
    for chain in PWD-FORWARD PWD-INPUT; do
        if has_chain "$chain"; then
            "$ipt" -F "$chain"
            "$ipt" -X "$chain"
        fi
    done
    echo "pwd firewall: removed"
}

case "${1:-}" in
    "") install ;;
    --check) check ;;
    --remove) remove ;;
    *) echo "usage: $0 [--check|--remove]" >&2; exit 2 ;;
esac
