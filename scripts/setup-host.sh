#!/bin/sh
# Everything barerun needs on a fresh Debian 12 host, as root; idempotent.
#   - Debian packages: compilers and headers for the cffi module (libffi,
#     libseccomp) and python-prctl, busybox-static (the test/demo rootfs),
#     runc (the benchmark yardstick), iproute2;
#   - the clients the integration tests drive: containerd (ctr), Docker
#     (docker.io: dockerd, started privately by the tests), podman with
#     conmon, CNI plugins, catatonit and iptables;
#   - CRIU >= 4.2.1 built from Debian unstable's source (scripts/build-criu.sh).
set -eu
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "setup: barerun's set-up runs as root" >&2; exit 1; }

PKGS="build-essential pkg-config python3-dev python3-venv libffi-dev libcap-dev libseccomp-dev busybox-static runc iproute2 \
curl ca-certificates xz-utils \
containerd podman conmon containernetworking-plugins catatonit iptables docker.io"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
# the criu build script installs its own build dependencies; make sure the
# package lists are there for it on a machine that never ran apt-get update
if [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v -e lock -e partial -e auxfiles)" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
fi
scripts/build-criu.sh
