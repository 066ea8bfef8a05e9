#!/bin/bash
# test_fleet_correlate.sh: the correlator and the kernel report against
# fleet-sim's ground truth, through the real aggregator on the "pg"
# fixture's PostgreSQL (a fresh database per scenario).
#
# For each correlation scenario (periodic_atop, cluster_burst,
# kernel_accounting, cron_ss): fleet-sim backfills $SH_FLEET_BACKFILL of
# history for $SH_FLEET_HOSTS hosts, the correlator catches up, and
# evaluate.py requires the injected cause as #1 suspect in >= 95% of the
# injected incidents, the decoy never #1 of one, at most 1 false incident
# per 100 host-hours, and prints `spikehound spikes --at` precision/recall.
# Then kernel_regression: `spikehound kernels` must flag the regressed
# release (and only it) as significantly worse for runq spikes.
#
# The issue's full-size run: SH_FLEET_HOSTS=1000 SH_FLEET_BACKFILL=12h.
# Environment (ctest): SH_FLEET_SIM, SH_AGG_BIN, SH_CLI_BIN, SH_FLEET_DIR,
# SH_TEST_DSN_FILE. Exits 77 (SKIP) when it cannot run here.
set -u

HOSTS=${SH_FLEET_HOSTS:-300}
BACKFILL=${SH_FLEET_BACKFILL:-12h}
SCENARIOS=${SH_FLEET_SCENARIOS:-"periodic_atop cluster_burst kernel_accounting cron_ss kernel_regression"}
DIR=$(mktemp -d /tmp/sh-fleetcorr.XXXXXX)
AGG_PID=""
DBS=""
failed=0

skip() { echo "SKIP: $*"; exit 77; }
log() { echo "[$(date +%T.%3N)] $*"; }
cleanup() {
	set +e
	if [ -n "$AGG_PID" ]; then
		kill -TERM "$AGG_PID" 2>/dev/null
		for _ in $(seq 1 100); do kill -0 "$AGG_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$AGG_PID" 2>/dev/null
	fi
	for db in $DBS; do psql "$BASE" -qAt -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1; done
	rm -rf "$DIR"
}
trap cleanup EXIT

[ -n "${SH_TEST_DSN_FILE:-}" ] && [ -f "$SH_TEST_DSN_FILE" ] || skip "no PostgreSQL fixture (SH_TEST_DSN_FILE)"
command -v psql >/dev/null || skip "no psql"
command -v python3 >/dev/null || skip "no python3 (runs evaluate.py)"
for b in "${SH_FLEET_SIM:-}" "${SH_AGG_BIN:-}" "${SH_CLI_BIN:-}"; do
	[ -x "$b" ] || { echo "FAIL: not built: $b"; exit 1; }
done
BASE=$(cat "$SH_TEST_DSN_FILE")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run_scenario NAME: fresh database and aggregator, backfill, wait for the
# correlator; leaves DSN, HTTP and AGG_PID set.
run_scenario() {
	local name=$1 db="fleetcorr_${1}_$$" port hport
	psql "$BASE" -qAt -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" \
		-c "CREATE DATABASE $db" >/dev/null || { echo "FAIL: could not create $db"; exit 1; }
	DBS="$DBS $db"
	DSN="$BASE dbname=$db"
	port=$(free_port)
	hport=$(free_port)
	HTTP="http://127.0.0.1:$hport"
	"$SH_AGG_BIN" --db "$DSN" --listen "tcp://127.0.0.1:$port" --http "$HTTP" --control-listen off \
		--data-dir "$DIR/agg" --stats-interval 30s >"$DIR/$name.agg.log" 2>&1 &
	AGG_PID=$!
	for _ in $(seq 1 300); do grep -q ' ready' "$DIR/$name.agg.log" && break; sleep 0.1; done
	grep -q ' ready' "$DIR/$name.agg.log" || { echo "FAIL: aggregator did not start"; tail "$DIR/$name.agg.log"; exit 1; }
	log "$name: fleet-sim, $HOSTS hosts, $BACKFILL of history"
	if ! timeout -k 15 600 "$SH_FLEET_SIM" --aggregator "tcp://127.0.0.1:$port" --scenario "$SH_FLEET_DIR/$name.scn" \
		--hosts "$HOSTS" --backfill "$BACKFILL" --truth "$DIR/$name.truth" --progress 0 \
		>"$DIR/$name.sim.out" 2>"$DIR/$name.sim.log"; then
		echo "FAIL: fleet-sim failed"; tail "$DIR/$name.sim.log"; exit 1
	fi
	grep -E '^(summaries|events|spikes|elapsed_s|summaries_per_s) ' "$DIR/$name.sim.out" | tr '\n' ' '
	echo
	# the correlator is done when its queue is empty and every incident
	# has its suspects ranked
	for _ in $(seq 1 240); do
		left=$(psql "$DSN" -qAt -c "SELECT (SELECT count(*) FROM correlate_queue) +
			(SELECT count(*) FROM incidents WHERE suspects_at IS NULL OR suspects_at < updated_at)")
		[ "$left" = "0" ] && break
		sleep 1
	done
	[ "$left" = "0" ] || { echo "FAIL: the correlator did not catch up ($left left)"; exit 1; }
	log "$name: correlated"
}

stop_agg() {
	kill -TERM "$AGG_PID" 2>/dev/null
	wait "$AGG_PID" 2>/dev/null
	AGG_PID=""
}

for name in $SCENARIOS; do
	run_scenario "$name"
	if [ "$name" = kernel_regression ]; then
		want=$(sed -n 's/^kernel *= *//p' "$SH_FLEET_DIR/kernel_regression.scn" | head -n 1)
		"$SH_CLI_BIN" --server "$HTTP" kernels --since 30d | head -n 40
		"$SH_CLI_BIN" --server "$HTTP" --json kernels --since 30d >"$DIR/kernels.json" ||
			{ echo "FAIL: spikehound kernels failed"; failed=1; }
		python3 - "$DIR/kernels.json" "$want" <<'EOF' || failed=1
import json, sys
doc = json.load(open(sys.argv[1]))
want = sys.argv[2]
worse = [s for s in doc.get("significant", []) if s.get("direction") == "worse"]
print("significantly worse:", ", ".join(f"{s['cohort']} {s['kind']} x{s['ratio']:.2f} (p_holm {s['p_holm']:.2g})" for s in worse) or "none")
bad = [s for s in worse if s["cohort"] != want]
ok = any(s["cohort"] == want and s["kind"] == "runq" for s in worse) and not bad
print("kernel report:", "PASS" if ok else "FAIL", f"(want {want} and only it worse for runq)")
sys.exit(0 if ok else 1)
EOF
	else
		python3 "$SH_FLEET_DIR/evaluate.py" --dsn "$DSN" --truth "$DIR/$name.truth" \
			--cli "$SH_CLI_BIN" --server "$HTTP" --spikes-at 20 | sed "s/^/  /" | tee "$DIR/$name.eval"
		grep -q 'RESULT: PASS' "$DIR/$name.eval" || failed=1
	fi
	stop_agg
done
[ "$failed" -eq 0 ] || { echo "FAIL: see above"; exit 1; }
echo "PASS"
