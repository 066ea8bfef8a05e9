#!/usr/bin/env bash
# install-deps.sh: installs every Debian package spikehound needs to build,
# run and test, and creates the unprivileged user the embedded PostgreSQL
# runs as. Idempotent: safe to run again.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config clang llvm
  libbpf-dev bpftool libelf-dev libdw-dev zlib1g-dev
  libnng-dev protobuf-c-compiler libprotobuf-c-dev
  libuv1-dev libpq-dev postgresql-15 postgresql-client-15
  libjansson-dev libinih-dev uthash-dev libzstd-dev libssl-dev libcap-dev libcmocka-dev
  linux-perf procps util-linux iproute2 curl libc6-dbg
  # the kernel report's browser test: headless Chromium renders the HTML
  # page, libpng reads its screenshot (tests/integration/test_kernels_report.c)
  chromium libpng-dev
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: must run as root (apt-get, useradd)" >&2
  exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's postgresql package starts a cluster on 5432; spikehound runs its
# own embedded cluster and does not need it, but leaves it alone.

# The embedded PostgreSQL refuses to run as root: it runs as this user.
if ! id -u spikehound >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/spikehound --shell /usr/sbin/nologin spikehound
fi
# nng with spikehound's fix for a pipe-close race of 1.5.2 (deploy/nng/),
# static, in /opt/spikehound/nng: the build links it when it is there
bash "$(dirname "$0")/build-nng.sh"
echo "install-deps.sh: dependencies ready" >&2
