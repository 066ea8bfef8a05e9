#!/usr/bin/env bash
# test.sh: installs what spikehound needs, builds it twice (normal, and with
# AddressSanitizer + UndefinedBehaviorSanitizer) and runs the whole test
# suite in both builds. Tests start their own PostgreSQL; BPF tests need
# root and a kernel with BTF, and say SKIP with the reason otherwise.
#
#   bash deploy/test.sh            # everything (what CI runs)
#   SH_TEST_LABELS=unit bash deploy/test.sh   # only tests with that label
#   SH_TEST_BUILDS=normal bash deploy/test.sh # only the normal build
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
jobs=$(nproc)

if [ "$(id -u)" -eq 0 ]; then
  bash deploy/install-deps.sh
else
  echo "test.sh: not root: skipping deploy/install-deps.sh (BPF tests will SKIP)" >&2
fi

builds=${SH_TEST_BUILDS:-"normal asan"}
labels=${SH_TEST_LABELS:-}
status=0
for b in $builds; do
  case $b in
    normal) dir=build; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
    asan) dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=Debug -DSH_SANITIZE=ON) ;;
    tsan) dir=build-tsan; flags=(-DCMAKE_BUILD_TYPE=Debug -DSH_TSAN=ON) ;;
    *) echo "test.sh: unknown build \"$b\"" >&2; exit 2 ;;
  esac
  echo "=== $b build ($dir) ==="
  cmake -S "$top" -B "$top/$dir" "${flags[@]}" >/dev/null
  cmake --build "$top/$dir" -j "$jobs" >/dev/null
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  args=(--test-dir "$top/$dir" --output-on-failure --timeout 900)
  [ -n "$labels" ] && args+=(-L "$labels")
  # incident reproducers load the real kernel, and the long end-to-end runs
  # (label slow: fleet-size correlation, the mixed real+simulated capture,
  # the full-disk database) take minutes: once, in the normal build
  [ "$b" != normal ] && args+=(-LE 'scenario|slow')
  if ! ctest "${args[@]}"; then
    status=1
  fi
done
exit $status
