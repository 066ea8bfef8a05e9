#!/usr/bin/env bash
# demo.sh: installs what spikehound needs, builds it, and runs the whole
# pipe on this machine: an aggregator with its embedded PostgreSQL, and an
# agent sending to it; then shows what spikehound found.
#
#   bash deploy/demo.sh                # run until Ctrl-C
#   DEMO_SECONDS=60 bash deploy/demo.sh  # stop by itself after 60 s
#
# State lives in $DEMO_DIR (default /var/tmp/spikehound-demo); the
# aggregator's query API is on http://127.0.0.1:7471, so the CLI works from
# another terminal while the demo runs: build/aggregator/spikehound hosts
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
dir=${DEMO_DIR:-/var/tmp/spikehound-demo}
seconds=${DEMO_SECONDS:-0}
bin=$top/build

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root (installs packages; the agent reads every process)" >&2
  exit 1
fi
bash deploy/install-deps.sh
echo "demo: building into $bin" >&2
cmake -S "$top" -B "$bin" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$bin" -j "$(nproc)" >/dev/null

mkdir -p "$dir"
agg_pid= agent_pid=
cleanup() {
  trap - EXIT INT TERM
  echo "demo: stopping" >&2
  [ -n "$agent_pid" ] && kill -TERM "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
  [ -n "$agg_pid" ] && kill -TERM "$agg_pid" 2>/dev/null && wait "$agg_pid" 2>/dev/null || true
  echo "demo: logs are in $dir" >&2
}
trap cleanup EXIT INT TERM

"$bin/aggregator/spikehound-aggregator" --data-dir "$dir/aggregator" \
  --listen tcp://127.0.0.1:7470 --http http://127.0.0.1:7471 >"$dir/aggregator.log" 2>&1 &
agg_pid=$!
for _ in $(seq 1 600); do
  grep -q ' ready' "$dir/aggregator.log" && break
  kill -0 "$agg_pid" 2>/dev/null || { cat "$dir/aggregator.log" >&2; exit 1; }
  sleep 0.1
done
echo "demo: aggregator ready (embedded PostgreSQL in $dir/aggregator/pg)" >&2

"$bin/node-agent/spikehound-agent" run --aggregator tcp://127.0.0.1:7470 --interval 5s \
  --spool-dir "$dir/spool" --label role=demo >"$dir/agent.log" 2>&1 &
agent_pid=$!
echo "demo: agent running; first summaries arrive within ~10 s" >&2
sleep 12

cli=$bin/aggregator/spikehound
echo
echo "=== spikehound hosts ==="
"$cli" hosts
echo
echo "=== spikehound top --host $(hostname) --at now --window 10s --limit 15 ==="
"$cli" top --host "$(hostname)" --at now --window 10s --limit 15
echo
echo "=== spikehound stacks --host $(hostname) --from -30s --limit 10 ==="
"$cli" stacks --host "$(hostname)" --from -30s --limit 10
echo
echo "=== spikehound stats ==="
"$cli" stats
echo
if [ "$seconds" -gt 0 ]; then
  sleep "$seconds"
else
  echo "demo: running; try '$cli hosts' in another terminal. Ctrl-C stops." >&2
  wait "$agent_pid"
fi
