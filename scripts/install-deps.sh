#!/usr/bin/env bash
# Install the host tools swarmlite needs on Debian 12, only those missing.
#
#   etcd-server   the raft store each manager runs (skipped if `etcd` is on PATH)
#   wrk           load generator for the benchmarks
#   nginx-light   the proxy we compare against in the benchmarks
#   debootstrap   builds the distro-based images (swarmlite/nginx, swarmlite/python)
#   iproute2      `ip netns` for the multi-node tests
#   curl          scripts/demo.sh
#   python3-venv  `make install` creates .venv
#
# busybox-static is NOT installed here: scripts/build-images.sh downloads the
# .deb and unpacks it into .cache/ for the swarmlite/busybox image.
#
# Idempotent and fast when everything is present: no `apt-get update` then.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

have() { command -v "$1" >/dev/null 2>&1; }

missing=()
have etcd || missing+=(etcd-server)
have wrk || missing+=(wrk)
have nginx || missing+=(nginx-light)
# debootstrap lives in /usr/sbin, which may not be on a user's PATH.
have debootstrap || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
have ip || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
have curl || missing+=(curl)
"${PYTHON:-python3}" -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)

if have docker; then
    docker info >/dev/null 2>&1 || echo "install-deps: warning: docker is installed but the engine is not reachable" >&2
else
    echo "install-deps: warning: docker is not installed; swarmlite needs a running Docker engine" >&2
fi

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all host dependencies present"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing: ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

# Debian starts etcd-server as a system service on install; swarmlite runs its
# own etcd members, so a system one listening on 2379 would only get in the way.
if printf '%s\n' "${missing[@]}" | grep -qx etcd-server && have systemctl \
    && systemctl is-active --quiet etcd 2>/dev/null; then
    echo "install-deps: stopping and disabling the system etcd service (swarmlite runs its own)"
    $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true
fi
echo "install-deps: done"
