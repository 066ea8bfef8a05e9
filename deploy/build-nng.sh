#!/usr/bin/env bash
# build-nng.sh: builds Debian's nng 1.5.2 source with spikehound's fix for a
# pipe-close race (deploy/nng/*.patch: a closed pipe could wedge nng's reaper,
# so an agent never reconnected after an aggregator restart) and installs a
# static library with TLS into PREFIX (default /opt/spikehound/nng). The
# CMake build links it when it is there (SH_NNG_PREFIX) and warns otherwise.
# Idempotent: does nothing when PREFIX already holds a build of these patches.
#
#   bash deploy/build-nng.sh [PREFIX]
#
# Needs root the first time (it adds a deb-src entry for bookworm and
# installs dpkg-dev); the source comes from Debian's archive.
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
prefix=${1:-/opt/spikehound/nng}
version=1.5.2-2
patches=("$here"/nng/*.patch)
stamp_want=$(cat "${patches[@]}" | sha256sum | cut -d' ' -f1)

if [ -f "$prefix/.spikehound-stamp" ] && [ "$(cat "$prefix/.spikehound-stamp")" = "$version $stamp_want" ] &&
  [ -f "$prefix/lib/libnng.a" ]; then
  echo "build-nng.sh: $prefix already holds nng $version with spikehound's patches" >&2
  exit 0
fi

log() { echo "build-nng.sh: $*" >&2; }
[ "$(id -u)" -eq 0 ] || { log "must run as root the first time (apt-get)"; exit 1; }

# the source package: Debian's archive, as every other dependency
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src ' /etc/apt/sources.list; then
  log "adding a deb-src entry for bookworm (/etc/apt/sources.list.d/spikehound-deb-src.sources)"
  cat >/etc/apt/sources.list.d/spikehound-deb-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt-get update -qq
fi
if ! dpkg-query -W -f='${Status}' dpkg-dev 2>/dev/null | grep -q 'install ok installed'; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dpkg-dev >/dev/null
fi

work=$(mktemp -d /tmp/sh-nng.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
log "fetching the nng $version source package"
if ! apt-get source -qq "nng=$version" >apt.log 2>&1; then
  # apt may have no deb-src index yet
  apt-get update -qq && apt-get source -qq "nng=$version" >apt.log 2>&1 ||
    { cat apt.log >&2; log "could not fetch nng $version's source from Debian"; exit 1; }
fi
src=$(find . -maxdepth 1 -type d -name 'nng-*' | head -1)
[ -n "$src" ] || { log "no source tree after apt-get source"; exit 1; }
cd "$src"
for p in "${patches[@]}"; do
  log "applying $(basename "$p")"
  patch -p1 -s --no-backup-if-mismatch <"$p"
done

log "building (static, TLS with Debian's mbedtls) into $prefix"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_SHARED_LIBS=OFF \
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DNNG_ENABLE_TLS=ON -DNNG_TESTS=OFF \
  -DNNG_TOOLS=OFF -DNNG_ENABLE_NNGCAT=OFF -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DCMAKE_INSTALL_LIBDIR=lib >cmake.log 2>&1 || { tail -20 cmake.log >&2; exit 1; }
cmake --build build -j "$(nproc)" >build.log 2>&1 || { tail -30 build.log >&2; exit 1; }
rm -rf "$prefix"
cmake --install build >install.log 2>&1 || { tail -20 install.log >&2; exit 1; }
echo "$version $stamp_want" >"$prefix/.spikehound-stamp"
log "nng $version with spikehound's patches installed in $prefix"
