#!/usr/bin/env bash
# Build the pwd node image (or, with --app, the pwd application image).
#
#   node-image/build.sh [--force] [--app] [--base-only]
#   node-image/build.sh --remove-cache [--dry-run]
#
# The base is the official Debian 13 image when a registry answers; on machines that reach
# no registry, a Debian 13 root filesystem is made with debootstrap from the machine's own
# Debian package mirror and imported as `pwd-base:trixie`. The choice is printed.
# The result is labelled with a hash of its build context, so an unchanged image is kept.
# --base-only makes sure the base image is there and stops. --remove-cache removes the
# cache folder (make clean-machine), unmounting first what an interrupted run left in it.
#
# Every step stops the build when it fails, naming the step and showing its log's last
# lines. Debootstrap may leave file systems (proc) mounted inside its target: they are
# unmounted before the root is archived or removed, and so are those of an earlier,
# interrupted run. PWD_BUILD_CACHE (the folder for the root-filesystem tarball and the
# logs), PWD_LOCAL_BASE (the tag of the debootstrapped base) and PWD_DEBOOTSTRAP (the
# debootstrap command) let a test build a throwaway base beside the real one.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cache=${PWD_BUILD_CACHE:-$root/.cache}
local_base=${PWD_LOCAL_BASE:-pwd-base:trixie}
debootstrap=${PWD_DEBOOTSTRAP:-debootstrap}
force=0
target=node
base_only=0
remove_cache=0
dry_run=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        --app) target=app ;;
        --base-only) base_only=1 ;;
        --remove-cache) remove_cache=1 ;;
        --dry-run) dry_run=1 ;;
        *) echo "usage: $0 [--force] [--app] [--base-only] | --remove-cache [--dry-run]" >&2; exit 2 ;;
    esac
done

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The advice depends on the step: a mirror can be retried or replaced, the rest has a log.
advice() {
    local step=$1 log=$2
    case "$step" in
        debootstrap)
            echo "What to do: a Debian mirror that does not answer is often a passing" \
                "failure: run the build again (make node-image). To use another mirror," \
                "set DEBIAN_MIRROR=http://<mirror>/debian. The whole log: $log" ;;
        apt-get*)
            echo "What to do: apt-get could not install debootstrap: check the machine's" \
                "apt sources (apt-get update), then run the build again. The whole log: $log" ;;
        *)
            echo "What to do: run the build again (make node-image); if it fails the same" \
                "way, read the whole log: $log" ;;
    esac
}

fail_step() {
    local step=$1 status=$2 log=$3
    {
        printf 'error: step "%s" failed (exit status %s). Last lines of %s:\n' "$step" "$status" "$log"
        if [ -s "$log" ]; then tail -n 25 "$log" | sed 's/^/    | /'; else echo "    (the log is empty)"; fi
        printf '%s\n' "$(advice "$step" "$log")"
    } >&2
    exit 1
}

# run_step [--show] NAME LOG CMD...: run one external command with its output in LOG (and
# on the terminal with --show); stop the build if it fails.
run_step() {
    local show=0 status=0
    if [ "$1" = --show ]; then show=1; shift; fi
    local step=$1 log=$2
    shift 2
    printf -- '--- %s: %s\n' "$step" "$*" >>"$log"
    if [ "$show" = 1 ]; then
        "$@" 2>&1 | tee -a "$log" || status=$?
    else
        "$@" >>"$log" 2>&1 || status=$?
    fi
    [ "$status" = 0 ] || fail_step "$step" "$status" "$log"
}

# Mount points at or under $1 (a path without symlinks), deepest first, NUL-separated.
# /proc/self/mountinfo writes space, tab, newline and backslash as \040 \011 \012 \134;
# `printf %b` decodes them once each backslash is made `\0`.
mounts_under() {
    local dir=$1 line raw path i
    local -a found=()
    while IFS= read -r line; do
        read -r _ _ _ _ raw _ <<<"$line"
        printf -v path '%b' "${raw//\\/\\0}"
        if [ "$path" = "$dir" ] || [[ "$path" == "$dir"/* ]]; then
            found+=("$path")
        fi
    done </proc/self/mountinfo
    # Longest path first is deepest first; among equal paths the last mounted goes first.
    for ((i = ${#found[@]} - 1; i >= 0; i--)); do
        printf '%s\t%s\0' "${#found[i]}" "${found[i]}"
    done | sort -z -s -t $'\t' -k1,1nr | cut -z -f2-
}

# Unmount everything under $1: plainly, deepest first, a few rounds (a busy mount may
# let go), then lazily (`umount -l`) as a last resort. Fails if anything is still there.
unmount_under() {
    local dir=$1 round point
    local -a points
    for round in 1 2 3 lazy; do
        mapfile -d '' points < <(mounts_under "$dir")
        [ "${#points[@]}" -gt 0 ] || return 0
        for point in "${points[@]}"; do
            if [ "$round" = lazy ]; then
                printf 'warning: %s is busy; detaching it lazily\n' "$point" >&2
                umount -l "$point" 2>/dev/null || true
            else
                umount "$point" 2>/dev/null || true
            fi
        done
        [ "$round" = lazy ] || [ "$round" = 1 ] || sleep 1
    done
    mapfile -d '' points < <(mounts_under "$dir")
    [ "${#points[@]}" = 0 ] || { printf 'error: still mounted: %s\n' "${points[@]}" >&2; return 1; }
}

# Remove a temporary root: never while anything is mounted under it, never across into
# another file system.
remove_root() {
    local dir=$1
    [ -e "$dir" ] || return 0
    dir=$(cd "$dir" && pwd -P)
    unmount_under "$dir" || return 1
    rm -rf --one-file-system "$dir"
}

# Leftovers of a run that was killed before its trap ran (its mounts may still be there).
remove_leftovers() {
    local old
    for old in "$cache"/rootfs.*; do
        [ -d "$old" ] || continue
        say "removing the temporary root of an interrupted earlier run: $old"
        remove_root "$old" || die "could not remove $old; unmount what is under it (grep $old /proc/self/mountinfo) and remove it"
    done
}

if [ "$remove_cache" = 1 ]; then
    [ -d "$cache" ] || { say "no build cache at $cache"; exit 0; }
    cache=$(cd "$cache" && pwd -P)
    if [ "$dry_run" = 1 ]; then
        say "would remove $cache ($(du -shx "$cache" 2>/dev/null | cut -f1))"
        mounts_under "$cache" | tr '\0' '\n' | sed 's/^/    would unmount first: /'
        exit 0
    fi
    say "removing $cache"
    remove_root "$cache" || die "could not remove $cache"
    exit 0
fi

mkdir -p "$cache/log"
cache=$(cd "$cache" && pwd -P)
logdir="$cache/log"

rootfs=""
tartmp=""
cleanup() {
    local status=$?
    if [ -n "$rootfs" ]; then
        remove_root "$rootfs" || printf 'error: could not remove %s\n' "$rootfs" >&2
    fi
    [ -z "$tartmp" ] || rm -f "$tartmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    local uri=""
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
        uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
    fi
    echo "$uri"
}

ensure_debootstrap() {
    command -v "$debootstrap" >/dev/null 2>&1 && return
    [ "$debootstrap" = debootstrap ] || die "PWD_DEBOOTSTRAP=$debootstrap is not a command"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing debootstrap with apt-get"
        local log="$logdir/apt-debootstrap.log"
        : >"$log"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >>"$log" 2>&1; then
            run_step "apt-get update" "$log" apt-get update -q
            run_step "apt-get install debootstrap" "$log" env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -q debootstrap
        fi
    else
        die "debootstrap is needed (apt-get install debootstrap) to make a base image offline"
    fi
}

# Make $tarball: debootstrap into a temporary root, unmount what it left, archive it.
make_rootfs_tarball() {
    local tarball=$1 mirror log="$logdir/debootstrap.log"
    mirror=$(debian_mirror)
    [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt; set DEBIAN_MIRROR=http://<mirror>/debian"
    ensure_debootstrap
    rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
    : >"$log"
    say "debootstrap trixie (minbase) from the configured Debian mirror (log: $log)"
    local status=0
    "$debootstrap" --variant=minbase --include=ca-certificates trixie "$rootfs" "$mirror" \
        >>"$log" 2>&1 || status=$?
    if [ "$status" != 0 ]; then
        if [ -s "$rootfs/debootstrap/debootstrap.log" ]; then
            { echo "--- debootstrap's own log (debootstrap/debootstrap.log in its target):"; cat "$rootfs/debootstrap/debootstrap.log"; } >>"$log"
        fi
        fail_step debootstrap "$status" "$log"
    fi
    say "unmounting what debootstrap left mounted in its target"
    unmount_under "$rootfs" || die "could not unmount everything under $rootfs"
    rm -rf --one-file-system "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
    say "archiving the root filesystem to $tarball"
    # The pseudo-filesystems' mount points stay, empty: the engine fills them at run time.
    tartmp="$tarball.tmp"
    : >"$logdir/tar.log"
    run_step "archive the root filesystem" "$logdir/tar.log" \
        tar -C "$rootfs" --one-file-system --exclude='./proc/*' --exclude='./sys/*' \
        --exclude='./dev/*' -cf "$tartmp" .
    mv "$tartmp" "$tarball"
    tartmp=""
    remove_root "$rootfs" || die "could not remove $rootfs"
    rootfs=""
}

# Sets `base` to the image the build starts from.
pick_base() {
    local official=${PWD_BASE_IMAGE:-debian:trixie-slim} mode=${PWD_BASE_MODE:-auto}
    if [ "$mode" != debootstrap ]; then
        if docker image inspect "$official" >/dev/null 2>&1; then
            say "base image: $official (already present)"; base=$official; return
        fi
        if timeout 30 docker pull -q "$official" >/dev/null 2>&1; then
            say "base image: $official (pulled from the registry)"; base=$official; return
        fi
    fi
    if docker image inspect "$local_base" >/dev/null 2>&1; then
        say "base image: $local_base (no registry; made earlier with debootstrap)"
        base=$local_base; return
    fi
    if [ "$mode" = debootstrap ]; then
        say "PWD_BASE_MODE=debootstrap: making $local_base with debootstrap"
    else
        say "no registry reachable: making $local_base with debootstrap"
    fi
    # One build at a time makes the base; a second one waits, then finds it made.
    exec 9>"$cache/build.lock"
    flock 9
    if docker image inspect "$local_base" >/dev/null 2>&1; then
        say "base image: $local_base (made meanwhile by another build)"
        base=$local_base; exec 9>&-; return
    fi
    remove_leftovers
    local tarball="$cache/debian-trixie-rootfs.tar"
    if [ -s "$tarball" ]; then
        say "using cached root filesystem $tarball"
    else
        make_rootfs_tarball "$tarball"
    fi
    say "importing $tarball as $local_base"
    : >"$logdir/import.log"
    run_step "docker import" "$logdir/import.log" \
        docker import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' "$tarball" "$local_base"
    docker image inspect "$local_base" >/dev/null 2>&1 \
        || die "docker import reported success but $local_base is not there (log: $logdir/import.log)"
    exec 9>&-
    base=$local_base
}

if [ "$base_only" = 1 ]; then
    pick_base
    say "base image $base is ready"
    exit 0
fi

if [ "$target" = node ]; then
    image=${PWD_NODE_IMAGE:-pwd-node}
    context="$here"
    dockerfile="$here/Dockerfile"
    hash=$(cd "$here" && find Dockerfile rootfs -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
else
    image=${PWD_APP_IMAGE:-pwd-app}
    context="$root"
    dockerfile="$root/Dockerfile"
    hash=$(cd "$root" && cat Dockerfile pyproject.toml requirements.lock package.json package-lock.json | sha256sum | cut -c1-16)
fi

current=$(docker image inspect -f '{{ index .Config.Labels "pwd.image-hash" }}' "$image" 2>/dev/null || true)
if [ "$force" = 0 ] && [ "$current" = "$hash" ]; then
    say "image $image is up to date ($hash)"
    exit 0
fi

base=""
pick_base
say "building $image from $base (log: $logdir/build-$target.log)"
: >"$logdir/build-$target.log"
run_step --show "docker build" "$logdir/build-$target.log" \
    env DOCKER_BUILDKIT=0 docker build --build-arg "BASE=$base" --label "pwd.image-hash=$hash" \
    -t "$image" -f "$dockerfile" "$context"
say "image $image is ready ($hash)"
