#!/usr/bin/env bash
# Build swarmlite's local images. Nothing is pulled: there is no registry.
#
#   scripts/build-images.sh [--force] [NAME...]     NAME: busybox demo-web nginx python node all
#
# Default: busybox demo-web (the fast ones, a few seconds). nginx and python are
# debootstrap (minbase) root filesystems, kept in .cache/rootfs/ and docker
# import-ed (~1 minute each the first time); so is node (tests/cluster's node
# containers: a userland only, Python and the repository are mounted at run time).
#
# Each image carries the label org.swarmlite.inputs = a hash of its build inputs
# (the files under images/NAME/, the busybox binary, the parent image, the
# debootstrap suite and packages, the recipe version below). An image whose tag
# exists with the same hash is skipped; --force (or FORCE=1) rebuilds anyway.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SWARMLITE_CACHE:-$ROOT/.cache}"
IMAGES="$ROOT/images"
LABEL=org.swarmlite.inputs
RECIPE_VERSION=2           # bump when this script changes how images are assembled
export DOCKER_BUILDKIT=0   # classic builder: no buildx here, and it never pulls a local FROM

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

log() { printf 'build-images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

tag_of() { echo "swarmlite/$1:1"; }

# sha256 of a directory's files: relative path, mode and content of each.
hash_dir() {
    (cd "$1" && find . -type f -printf '%p %m\n' | LC_ALL=C sort \
        && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) | sha256sum | cut -c1-64
}

hash_str() { printf '%s\n' "$@" | sha256sum | cut -c1-64; }

current_hash() {
    docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true
}

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

# Remove the image a rebuild replaced, if it was ours and is now untagged.
drop_old() {
    local old="$1" tag="$2"
    [ -n "$old" ] && [ "$old" != "$(image_id "$tag")" ] || return 0
    if [ -z "$(docker image inspect -f '{{join .RepoTags ","}}' "$old" 2>/dev/null)" ]; then
        docker image rm "$old" >/dev/null 2>&1 || true
    fi
}

# docker build, quiet: its output (and the legacy builder's deprecation notice)
# is shown only when the build fails.
docker_build() {
    local out
    if ! out="$(docker build "$@" 2>&1)"; then
        printf '%s\n' "$out" >&2
        die "docker build $* failed"
    fi
}

up_to_date() {
    local tag="$1" want="$2"
    if [ "${FORCE:-0}" != 1 ] && [ "$(current_hash "$tag")" = "$want" ]; then
        log "$tag is up to date (inputs ${want:0:12}), skipped"
        return 0
    fi
    return 1
}

# --- busybox ---------------------------------------------------------------

# Debian's static busybox, unpacked once into .cache/busybox/.
fetch_busybox() {
    local dir="$CACHE/busybox"
    [ -x "$dir/root/bin/busybox" ] && return 0
    log "downloading busybox-static into $dir"
    rm -rf "$dir" && mkdir -p "$dir/deb"
    chmod 777 "$dir/deb"   # so apt's _apt user can write there (no warning)
    if ! (cd "$dir/deb" && apt-get download busybox-static >/dev/null 2>&1); then
        log "apt-get download failed; running apt-get update and retrying"
        $SUDO apt-get update -qq
        (cd "$dir/deb" && apt-get download busybox-static >/dev/null)
    fi
    dpkg-deb -x "$dir"/deb/busybox-static_*.deb "$dir/root"
    [ -x "$dir/root/bin/busybox" ] || die "no bin/busybox in the busybox-static package"
}

build_busybox() {
    local tag bb want ctx rootfs old
    tag="$(tag_of busybox)"
    fetch_busybox
    bb="$CACHE/busybox/root/bin/busybox"
    want="$(hash_str "recipe=$RECIPE_VERSION" "dir=$(hash_dir "$IMAGES/busybox")" \
        "busybox=$(sha256sum <"$bb" | cut -c1-64)")"
    up_to_date "$tag" "$want" && return 0

    ctx="$CACHE/build/busybox"
    rootfs="$ctx/rootfs"
    rm -rf "$ctx" && mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,tmp,www,root,var/run}
    cp "$bb" "$rootfs/bin/busybox"
    # One symlink per applet, where busybox itself would install it. wget is
    # left out: it segfaults in this build (use nc, or /usr/local/bin/fetch in demo-web).
    local applet
    while read -r applet; do
        case "$applet" in bin/busybox | */wget) continue ;; esac
        ln -sf /bin/busybox "$rootfs/$applet"
    done < <("$bb" --list-full)
    for applet in sh httpd nc hostname cat echo sleep nslookup ls mkdir printf date kill \
        env id true false grep head tr seq timeout; do
        [ -L "$rootfs/bin/$applet" ] || [ -L "$rootfs/usr/bin/$applet" ] \
            || [ -L "$rootfs/usr/sbin/$applet" ] || [ -L "$rootfs/sbin/$applet" ] \
            || die "busybox has no applet $applet"
    done
    cp -r "$IMAGES/busybox/files/." "$rootfs/"
    chmod 1777 "$rootfs/tmp"
    chmod 700 "$rootfs/root"
    tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -cf "$ctx/rootfs.tar" .
    cp "$IMAGES/busybox/Dockerfile" "$ctx/"
    old="$(image_id "$tag")"
    docker_build -q --label "$LABEL=$want" -t "$tag" "$ctx" >/dev/null
    drop_old "$old" "$tag"
    rm -rf "$ctx"
    built "$tag"
}

# --- demo-web --------------------------------------------------------------

build_demo_web() {
    local tag parent want old
    tag="$(tag_of demo-web)"
    parent="$(tag_of busybox)"
    want="$(hash_str "recipe=$RECIPE_VERSION" "dir=$(hash_dir "$IMAGES/demo-web")" \
        "parent=$(image_id "$parent")")"
    up_to_date "$tag" "$want" && return 0
    old="$(image_id "$tag")"
    docker_build -q --label "$LABEL=$want" -t "$tag" "$IMAGES/demo-web" >/dev/null
    drop_old "$old" "$tag"
    built "$tag"
}

# --- debootstrap images (nginx, python) ------------------------------------

# The first Debian mirror configured on this host (deb822 or one-line format),
# or $DEBIAN_MIRROR.
debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    local m=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        m="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
            /etc/apt/sources.list.d/debian.sources)"
    fi
    if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
        m="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { if ($i !~ /security/) { print $i; exit } } }' \
            /etc/apt/sources.list)"
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

# A minbase root filesystem with $include, made once and kept in .cache/rootfs/NAME.
ensure_rootfs() {
    local name="$1" suite="$2" include="$3"
    local dir="$CACHE/rootfs/$name" stamp="$CACHE/rootfs/$name.stamp"
    local want="suite=$suite include=$include variant=minbase"
    if [ -d "$dir" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    local debootstrap mirror t0
    debootstrap="$(command -v debootstrap || echo /usr/sbin/debootstrap)"
    [ -x "$debootstrap" ] || die "debootstrap is missing: run scripts/install-deps.sh"
    mirror="$(debian_mirror)"
    log "debootstrap $suite (+$include) from $mirror into $dir"
    t0=$SECONDS
    $SUDO rm -rf "$dir" "$dir.tmp" "$stamp"
    mkdir -p "$CACHE/rootfs"
    $SUDO "$debootstrap" --variant=minbase --include="$include" "$suite" "$dir.tmp" "$mirror" \
        >"$CACHE/rootfs/$name.log" 2>&1 \
        || die "debootstrap failed, see $CACHE/rootfs/$name.log"
    # Trim what a container never needs.
    $SUDO chroot "$dir.tmp" apt-get clean
    $SUDO rm -rf "$dir.tmp"/var/lib/apt/lists/* "$dir.tmp"/usr/share/doc/* \
        "$dir.tmp"/usr/share/man/* "$dir.tmp"/usr/share/info/* "$dir.tmp"/var/log/*.log \
        "$dir.tmp"/var/cache/debconf/*-old
    $SUDO mv "$dir.tmp" "$dir"
    echo "$want" >"$stamp"
    log "debootstrap of $name took $((SECONDS - t0)) s"
}

build_debootstrap_image() {
    local name="$1" tag conf SUITE INCLUDE CHANGES want old files=()
    tag="$(tag_of "$name")"
    conf="$IMAGES/$name/image.conf"
    [ -f "$conf" ] || die "missing $conf"
    SUITE=bookworm INCLUDE="" CHANGES=()
    # shellcheck source=/dev/null
    . "$conf"
    want="$(hash_str "recipe=$RECIPE_VERSION" "dir=$(hash_dir "$IMAGES/$name")" \
        "suite=$SUITE" "include=$INCLUDE")"
    up_to_date "$tag" "$want" && return 0
    ensure_rootfs "$name" "$SUITE" "$INCLUDE"

    local args=(-c "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") c
    for c in "${CHANGES[@]}"; do args+=(-c "$c"); done
    args+=(-c "LABEL $LABEL=$want")
    if [ -d "$IMAGES/$name/files" ]; then
        mapfile -t files < <(cd "$IMAGES/$name/files" && find . -type f | LC_ALL=C sort)
    fi
    old="$(image_id "$tag")"
    # A hard-linked copy of the cached rootfs with images/NAME/files/ on top
    # (each file unlinked before it is replaced, so the cache is never changed).
    local stage="$CACHE/build/$name" f
    $SUDO rm -rf "$stage" && mkdir -p "$CACHE/build"
    $SUDO cp -al "$CACHE/rootfs/$name" "$stage"
    for f in "${files[@]}"; do
        $SUDO mkdir -p "$stage/$(dirname "$f")"
        $SUDO rm -f "$stage/$f"
        $SUDO cp "$IMAGES/$name/files/$f" "$stage/$f"
        $SUDO chown 0:0 "$stage/$f"
    done
    $SUDO tar --numeric-owner -C "$stage" -cf - . | docker import "${args[@]}" - "$tag" >/dev/null
    $SUDO rm -rf "$stage"
    drop_old "$old" "$tag"
    built "$tag"
}

# --- main ------------------------------------------------------------------

T0=0
built() { log "$1 built in $((SECONDS - T0)) s"; }

build() {
    local name="$1"
    T0=$SECONDS
    case "$name" in
        busybox) build_busybox ;;
        demo-web) build_demo_web ;;
        nginx | python | node) build_debootstrap_image "$name" ;;
        *) die "unknown image '$name' (known: busybox demo-web nginx python node all)" ;;
    esac
}

main() {
    local names=() n
    for n in "$@"; do
        case "$n" in
            --force | -f) FORCE=1 ;;
            -h | --help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
            all) names+=(busybox demo-web nginx python node) ;;
            *) names+=("$n") ;;
        esac
    done
    [ ${#names[@]} -gt 0 ] || names=(busybox demo-web)
    command -v docker >/dev/null || die "docker is not installed"
    docker info >/dev/null 2>&1 || die "the Docker engine is not reachable"
    # demo-web is built FROM swarmlite/busybox:1, so that one comes first.
    if printf '%s\n' "${names[@]}" | grep -qx demo-web; then
        names=(busybox "${names[@]}")
    fi
    local seen=" "
    for n in "${names[@]}"; do
        case "$seen" in *" $n "*) continue ;; esac
        seen+="$n "
        build "$n"
    done
}

main "$@"
