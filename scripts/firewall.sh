#!/usr/bin/env bash
# Host firewall for pwd nodes (root; iptables and ip6tables). Idempotent: run it again
# after a change. `make run` (scripts/serve.sh), `make test` (scripts/prereqs.sh firewall)
# and the compose stack's `firewall` service apply it.
#
#   scripts/firewall.sh            install or refresh the rules
#   scripts/firewall.sh --check    exit 0 when every rule is in place, 1 (listing) when not
#   scripts/firewall.sh --remove   take them all away
#
# Nodes are containers run by strangers, root inside. Two chains keep them in:
#   PWD-FORWARD (jumped to first from DOCKER-USER, which Docker consults before its own
#     rules for all forwarded traffic): nodes may not reach PWD_FW_BLOCK, by default the
#     cloud metadata address, which hands out the host's cloud credentials.
#   PWD-INPUT (jumped to first from INPUT, in iptables and ip6tables):
#     - nothing arriving from a sealed bridge (PWD_FW_SEALED_BRIDGES, docker_gwbridge: the
#       only bridge nodes are on) may open anything on the host itself, whichever host
#       address it is sent to: not the VXLAN port 4789 that carries every session's
#       overlay (a node could inject frames with another session's VNI), not swarm's 2377
#       and 7946, not the app. Only replies to what the host started pass. Nodes' own
#       traffic out (FORWARD) and between the nodes of a session (inside the overlay's
#       namespace) never passes here.
#     - from every Docker bridge (PWD_FW_BRIDGES), the app port, PWD_FW_HOST_PORTS (TCP)
#       and PWD_FW_HOST_UDP_PORTS are closed too, for containers on docker0.
# Docker recreates DOCKER-USER but never empties it, so the rules survive an engine restart;
# run this at boot (after dockerd) to survive a reboot. MAC/IP anti-spoofing on the bridge
# is the app's (sessions_app/antispoof.py), since it follows the nodes as they come and go.
set -euo pipefail

block=${PWD_FW_BLOCK:-169.254.169.254}
app_port=${PWD_FW_APP_PORT:-${PORT:-8000}}
host_ports=${PWD_FW_HOST_PORTS:-8000,2375,2376,2377,7946,6379,5432}
udp_ports=${PWD_FW_HOST_UDP_PORTS:-4789,7946}
bridges=${PWD_FW_BRIDGES:-docker0,docker_gwbridge}
sealed=${PWD_FW_SEALED_BRIDGES:-docker_gwbridge}
ipt=${IPTABLES:-iptables}
ipt6=${IP6TABLES:-ip6tables}

split() { tr ',' ' ' <<<"$1"; }

# The TCP ports with the app's own first, each once (multiport takes at most 15).
tcp_ports() {
    local port seen="" out=""
    for port in $app_port $(split "$host_ports"); do
        [[ ,$seen, == *,$port,* ]] && continue
        seen="$seen,$port"
        out="${out:+$out,}$port"
    done
    echo "$out"
}

has_ipv6() { command -v "$ipt6" >/dev/null 2>&1 && "$ipt6" -S INPUT >/dev/null 2>&1; }

# Each rule as "family|chain|arguments", in order; family 4 is iptables, 6 ip6tables.
rules() {
    local address bridge family tcp
    tcp=$(tcp_ports)
    for address in $(split "$block"); do
        [[ $address == */* ]] || address="$address/32"
        echo "4|PWD-FORWARD|-d $address -j DROP"
    done
    for family in 4 6; do
        [ "$family" = 4 ] || has_ipv6 || continue
        for bridge in $(split "$sealed"); do
            echo "$family|PWD-INPUT|-i $bridge -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP"
        done
        for bridge in $(split "$bridges"); do
            echo "$family|PWD-INPUT|-i $bridge -p tcp -m multiport --dports $tcp -m conntrack --ctstate NEW -j DROP"
            [ -z "$udp_ports" ] ||
                echo "$family|PWD-INPUT|-i $bridge -p udp -m multiport --dports $udp_ports -j DROP"
        done
    done
}

jumps() {
    echo "4|DOCKER-USER|-j PWD-FORWARD"
    echo "4|INPUT|-j PWD-INPUT"
    if has_ipv6; then echo "6|INPUT|-j PWD-INPUT"; fi
}

tables() { if [ "$1" = 6 ]; then echo "$ipt6"; else echo "$ipt"; fi; }

has_chain() { "$(tables "$1")" -S "$2" >/dev/null 2>&1; }

check() {
    local missing=0 family chain args
    if [ "$(id -u)" != 0 ]; then
        echo "not root: cannot read the firewall (run: sudo $0 --check)"
        return 1
    fi
    while IFS='|' read -r family chain args; do
        # shellcheck disable=SC2086
        if ! "$(tables "$family")" -C "$chain" $args 2>/dev/null; then
            echo "missing: $(tables "$family") -A $chain $args"
            missing=1
        fi
    done < <(rules; jumps)
    return $missing
}

install() {
    if ! has_chain 4 DOCKER-USER; then
        echo "no DOCKER-USER chain: start dockerd first (it creates the chain)" >&2
        exit 1
    fi
    local family chain args
    for family in 4 6; do
        [ "$family" = 4 ] || has_ipv6 || continue
        for chain in PWD-FORWARD PWD-INPUT; do
            [ "$family/$chain" = 6/PWD-FORWARD ] && continue
            has_chain "$family" "$chain" || "$(tables "$family")" -N "$chain"
            "$(tables "$family")" -F "$chain"
        done
    done
    while IFS='|' read -r family chain args; do
        # shellcheck disable=SC2086
        "$(tables "$family")" -A "$chain" $args
    done < <(rules)
    while IFS='|' read -r family chain args; do
        # shellcheck disable=SC2086
        "$(tables "$family")" -C "$chain" $args 2>/dev/null ||
            "$(tables "$family")" -I "$chain" 1 $args
    done < <(jumps)
    echo "pwd firewall: nodes may not reach ${block}; ${sealed} may open nothing on this host;" \
        "${bridges} may not reach host ports tcp $(tcp_ports), udp ${udp_ports:-none}"
}

remove() {
    local family chain args
    while IFS='|' read -r family chain args; do
        # shellcheck disable=SC2086
        while "$(tables "$family")" -C "$chain" $args 2>/dev/null; do
            "$(tables "$family")" -D "$chain" $args
        done
    done < <(jumps)
    for family in 4 6; do
        [ "$family" = 4 ] || has_ipv6 || continue
        for chain in PWD-FORWARD PWD-INPUT; do
            if has_chain "$family" "$chain"; then
                "$(tables "$family")" -F "$chain"
                "$(tables "$family")" -X "$chain"
            fi
        done
    done
    echo "pwd firewall: removed"
}

case "${1:-}" in
    "") install ;;
    --check) check ;;
    --remove) remove ;;
    *) echo "usage: $0 [--check|--remove]" >&2; exit 2 ;;
esac
