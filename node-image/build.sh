#!/usr/bin/env bash
# Build the pwd node image (or, with --app, the pwd application image).
#
#   node-image/build.sh [--force] [--app]
#
# The base is the official Debian 13 image when a registry answers; on machines that reach
# no registry, a Debian 13 root filesystem is made with debootstrap from the machine's own
# Debian package mirror and imported as `pwd-base:trixie`. The choice is printed.
# The result is labelled with a hash of its build context, so an unchanged image is kept.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cache="$root/.cache"
force=0
target=node
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        --app) target=app ;;
        *) echo "usage: $0 [--force] [--app]" >&2; exit 2 ;;
    esac
done

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if [ "$target" = node ]; then
    image=${PWD_NODE_IMAGE:-pwd-node}
    context="$here"
    dockerfile="$here/Dockerfile"
    hash=$(cd "$here" && find Dockerfile rootfs -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
else
    image=${PWD_APP_IMAGE:-pwd-app}
    context="$root"
    dockerfile="$root/Dockerfile"
    hash=$(cd "$root" && cat Dockerfile pyproject.toml package.json package-lock.json | sha256sum | cut -c1-16)
fi

current=$(docker image inspect -f '{{ index .Config.Labels "pwd.image-hash" }}' "$image" 2>/dev/null || true)
if [ "$force" = 0 ] && [ "$current" = "$hash" ]; then
    say "image $image is up to date ($hash)"
    exit 0
fi

debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    local uri=""
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
        uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || die "no Debian mirror found in /etc/apt; set DEBIAN_MIRROR"
    echo "$uri"
}

pick_base() {
    local official=${PWD_BASE_IMAGE:-debian:trixie-slim}
    if docker image inspect "$official" >/dev/null 2>&1; then
        say "base image: $official (already present)" >&2; echo "$official"; return
    fi
    if [ "${PWD_BASE_MODE:-auto}" != debootstrap ] && timeout 30 docker pull -q "$official" >/dev/null 2>&1; then
        say "base image: $official (pulled from the registry)" >&2; echo "$official"; return
    fi
    local local_base=pwd-base:trixie
    if docker image inspect "$local_base" >/dev/null 2>&1; then
        say "base image: $local_base (no registry; made earlier with debootstrap)" >&2
        echo "$local_base"; return
    fi
    say "no registry reachable: making $local_base with debootstrap" >&2
    command -v debootstrap >/dev/null 2>&1 || {
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get install -y debootstrap >&2 || { apt-get update >&2 && apt-get install -y debootstrap >&2; }
        else
            die "debootstrap is needed (apt-get install debootstrap) to make a base image offline"
        fi
    }
    mkdir -p "$cache"
    local tarball="$cache/debian-trixie-rootfs.tar"
    if [ ! -s "$tarball" ]; then
        local mirror dir
        mirror=$(debian_mirror)
        dir=$(mktemp -d "$cache/rootfs.XXXXXX")
        trap 'rm -rf "$dir"' EXIT
        say "debootstrap trixie (minbase) from the configured Debian mirror" >&2
        debootstrap --variant=minbase --include=ca-certificates trixie "$dir" "$mirror" >&2 \
            || { tail -n 30 "$dir/debootstrap/debootstrap.log" >&2 2>/dev/null || true; die "debootstrap failed"; }
        rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/lib/apt/lists/"*
        tar -C "$dir" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$dir"; trap - EXIT
    else
        say "using cached root filesystem $tarball" >&2
    fi
    docker import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' "$tarball" "$local_base" >/dev/null
    echo "$local_base"
}

base=$(pick_base)
say "building $image from $base"
DOCKER_BUILDKIT=0 docker build --build-arg "BASE=$base" --label "pwd.image-hash=$hash" \
    -t "$image" -f "$dockerfile" "$context"
say "image $image is ready ($hash)"
