#!/bin/bash
# fleet_ingest.sh: sustained ingest of a simulated fleet in live mode —
# N hosts (default 10,000) each sending a summary every 10 s plus their
# spike events, through the real aggregator into a throwaway PostgreSQL on
# this machine. Prints, over the measured window (after a warm-up): the
# summaries and rows stored per second against the offered rate, the
# aggregator's and PostgreSQL's CPU (% of one core), ack latency p50/p99
# from the aggregator's /api/stats, and whether the backlog grew. The goal
# stated in issue 5: 10,000 hosts at 10 s with the aggregator under half a
# core. It prints figures; it does not fail on time.
#
# usage: tests/bench/fleet_ingest.sh [HOSTS] [SECONDS]   (from a built tree; root)
set -eu

HOSTS=${1:-10000}
SECONDS_RUN=${2:-120}
WARMUP=20
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${SH_BUILD:-$top/build}
SIM=${SH_FLEET_SIM:-$build/deploy/fleet-sim/fleet-sim}
AGG=$build/aggregator/spikehound-aggregator
for b in "$SIM" "$AGG"; do [ -x "$b" ] || { echo "fleet_ingest: build first ($b missing)"; exit 2; }; done
DIR=$(mktemp -d /tmp/sh-fleetingest.XXXXXX)
cleanup() {
	set +e
	[ -n "${SIM_PID:-}" ] && kill -TERM "$SIM_PID" 2>/dev/null
	[ -n "${AGG_PID:-}" ] && kill -TERM "$AGG_PID" 2>/dev/null
	sleep 3
	sh "$top/tests/integration/pg_fixture.sh" stop "$DIR/pg" >/dev/null 2>&1
	rm -rf "$DIR"
}
trap cleanup EXIT
sh "$top/tests/integration/pg_fixture.sh" start "$DIR/pg" >/dev/null
DSN=$(cat "$DIR/pg/dsn")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
hport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$AGG" --db "$DSN" --listen "tcp://127.0.0.1:$port" --http "http://127.0.0.1:$hport" --control-listen off \
	--data-dir "$DIR/agg" --stats-interval 10s >"$DIR/agg.log" 2>&1 &
AGG_PID=$!
for _ in $(seq 1 300); do grep -q ' ready' "$DIR/agg.log" && break; sleep 0.1; done
"$SIM" --aggregator "tcp://127.0.0.1:$port" --hosts "$HOSTS" --interval 10s \
	--duration "$((SECONDS_RUN + WARMUP + 15))s" --progress 0 >"$DIR/sim.out" 2>"$DIR/sim.log" &
SIM_PID=$!

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
pg_cpu_s() { # CPU seconds of this cluster's postmaster and its children
	local pm
	pm=$(head -n 1 "$(psql "$DSN" -qAt -c 'SHOW data_directory')/postmaster.pid")
	ps -o cputimes= -p "$(echo "$pm" $(pgrep -P "$pm") | tr ' ' ',')" | awk '{ s += $1 } END { print s + 0 }'
}
count() { psql "$DSN" -qAt -c "SELECT (SELECT count(*) FROM summaries), (SELECT count(*) FROM spike_events)"; }
hz=$(getconf CLK_TCK)

sleep "$WARMUP"
read -r s0 e0 <<<"$(count | tr '|' ' ')"
a0=$(cpu_ticks "$AGG_PID")
pgsum0=$(pg_cpu_s)
t0=$(date +%s.%N)
sleep "$SECONDS_RUN"
read -r s1 e1 <<<"$(count | tr '|' ' ')"
a1=$(cpu_ticks "$AGG_PID")
pgsum1=$(pg_cpu_s)
t1=$(date +%s.%N)
stats=$(curl -s "http://127.0.0.1:$hport/api/stats")

awk -v hosts="$HOSTS" -v s0="$s0" -v s1="$s1" -v e0="$e0" -v e1="$e1" -v a0="$a0" -v a1="$a1" \
	-v p0="$pgsum0" -v p1="$pgsum1" -v t0="$t0" -v t1="$t1" -v hz="$hz" 'BEGIN {
	dt = t1 - t0
	printf "fleet_ingest: %d simulated hosts, a summary every 10 s each, measured %.0f s after %d s of warm-up\n", hosts, dt, '"$WARMUP"'
	printf "  offered:  %8.0f summaries/s\n", hosts / 10
	printf "  stored:   %8.0f summaries/s, %.0f spike events/s\n", (s1 - s0) / dt, (e1 - e0) / dt
	printf "  aggregator CPU: %5.1f%% of one core\n", 100 * (a1 - a0) / hz / dt
	printf "  PostgreSQL CPU: %5.1f%% of one core (the throwaway cluster; backends that lived through the window)\n", 100 * (p1 - p0) / dt
}'
echo "$stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("  ack latency p50/p99: %.1f / %.1f ms; commit p50/p99: %.1f / %.1f ms; batches %d, mean %d messages" % (s["ack_ms_p50"], s["ack_ms_p99"], s["commit_ms_p50"], s["commit_ms_p99"], s["batches"], s["batch_mean_messages"]))'
echo "  (rows per summary: 1 summary row + process rows; see sim totals)"
tail -n 3 "$DIR/agg.log" | sed 's/^/  agg: /'
