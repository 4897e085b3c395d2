#!/bin/sh
# Build CRIU from Debian unstable's source package and install it as
# /usr/local/sbin/criu (ahead of Debian's criu 3.17 on PATH, which fails on
# current kernels), plus its python package source for pycriu.
#
# Usage: scripts/build-criu.sh [BUILD_DIR]
# Skips everything when /usr/local/sbin/criu is already >= the wanted version.
set -eu

WANT_MIN=4.2.1
BUILD_DIR=${1:-/var/cache/barerun/criu}
PREFIX=/usr/local

have_version() {
    # prints "x.y.z" of $1 (a criu binary) or nothing
    "$1" --version 2>/dev/null | sed -n 's/^Version: *\([0-9.]*\).*/\1/p'
}

version_ge() {  # $1 >= $2 ?
    [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$2" ]
}

if [ -x $PREFIX/sbin/criu ] && [ -d "$BUILD_DIR/src/lib" ]; then
    v=$(have_version $PREFIX/sbin/criu)
    if [ -n "$v" ] && version_ge "$v" "$WANT_MIN"; then
        echo "criu $v already installed at $PREFIX/sbin/criu"
        exit 0
    fi
fi

DEPS="build-essential pkg-config libprotobuf-dev libprotobuf-c-dev \
protobuf-c-compiler protobuf-compiler python3-protobuf libnl-3-dev libnet1-dev \
libcap-dev libbsd-dev libnftables-dev libgnutls28-dev uuid-dev libaio-dev \
curl ca-certificates xz-utils"
missing=""
for p in $DEPS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing criu build dependencies:$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

# A private apt view of Debian unstable's sources, derived from the
# machine's own Debian mirror URI; the system's apt lists stay untouched.
MIRROR=$(sed -n 's/^URIs: *\(.*\/debian\)\/*$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
if [ -z "$MIRROR" ]; then
    MIRROR=$(sed -n 's/^deb \(http[^ ]*\/debian\)\/* .*/\1/p' /etc/apt/sources.list 2>/dev/null | head -n1)
fi
[ -n "$MIRROR" ] || { echo "build-criu: no Debian mirror found in apt sources" >&2; exit 1; }

APT_DIR="$BUILD_DIR/apt"
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/archives/partial"
echo "deb-src $MIRROR unstable main" > "$APT_DIR/sources.list"
APT_OPTS="-o Dir::Etc::SourceList=$APT_DIR/sources.list -o Dir::Etc::SourceParts=/dev/null \
-o Dir::State::Lists=$APT_DIR/lists -o Dir::Cache::Archives=$APT_DIR/archives \
-o APT::Get::List-Cleanup=0"
echo "fetching the source index of Debian unstable from $MIRROR"
# shellcheck disable=SC2086
apt-get $APT_OPTS -q update >/dev/null

# shellcheck disable=SC2086
SRC=$(apt-cache $APT_OPTS showsrc criu)
# pick the newest version's record
VERSION=$(printf '%s\n' "$SRC" | sed -n 's/^Version: //p' | sort -V | tail -n1)
RECORD=$(printf '%s\n' "$SRC" | awk -v v="$VERSION" '
    /^Package: /{rec=""} {rec=rec $0 "\n"} /^$/{ if (rec ~ "\nVersion: " v "\n") {print rec; exit} }
    END { if (rec ~ "\nVersion: " v "\n") print rec }' | awk 'NF||p{print; p=1}')
DIRECTORY=$(printf '%s\n' "$RECORD" | sed -n 's/^Directory: //p' | head -n1)
ORIG_LINE=$(printf '%s\n' "$RECORD" | awk '/^Checksums-Sha256:/{f=1; next} /^[^ ]/{f=0} f && /\.orig\.tar/ {print; exit}')
SHA=$(echo "$ORIG_LINE" | awk '{print $1}')
FILE=$(echo "$ORIG_LINE" | awk '{print $3}')
UPSTREAM=${VERSION%-*}
UPSTREAM=${UPSTREAM#*:}
version_ge "$UPSTREAM" "$WANT_MIN" || { echo "build-criu: unstable has criu $UPSTREAM < $WANT_MIN" >&2; exit 1; }
[ -n "$FILE" ] && [ -n "$DIRECTORY" ] || { echo "build-criu: no .orig tarball for criu $VERSION" >&2; exit 1; }

TARBALL="$BUILD_DIR/$FILE"
if ! echo "$SHA  $TARBALL" | sha256sum -c - >/dev/null 2>&1; then
    echo "downloading $FILE (criu $VERSION)"
    curl -fsSL --retry 3 -o "$TARBALL.part" "$MIRROR/$DIRECTORY/$FILE"
    echo "$SHA  $TARBALL.part" | sha256sum -c - >/dev/null
    mv "$TARBALL.part" "$TARBALL"
fi

rm -rf "$BUILD_DIR/src"
mkdir -p "$BUILD_DIR/src"
tar -xf "$TARBALL" -C "$BUILD_DIR/src" --strip-components=1
echo "building criu $UPSTREAM"
make -C "$BUILD_DIR/src" -j"$(nproc)" criu lib >"$BUILD_DIR/build.log" 2>&1 || {
    tail -n 30 "$BUILD_DIR/build.log" >&2; echo "build-criu: make failed, see $BUILD_DIR/build.log" >&2; exit 1; }
install -D -m 0755 "$BUILD_DIR/src/criu/criu" $PREFIX/sbin/criu
echo "installed $($PREFIX/sbin/criu --version | head -n1) at $PREFIX/sbin/criu"
