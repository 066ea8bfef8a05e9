#!/bin/bash
# test_pg_full.sh: the database's disk fills up under ingest, and nothing
# acknowledged is lost. The aggregator's database lives in a tablespace on
# a 24 MiB tmpfs; fleet-sim backfills 400 hosts x 2 h of capture.scn (about
# 10,000 summaries and 190,000 events, far more than fits). When PostgreSQL reports "No space left on
# device" the aggregator must not acknowledge (and must not reject) what it
# could not store: fleet-sim keeps resending. Then the file system grows
# (remount, as an operator would free space) and everything arrives:
# every acknowledged summary and event exactly once, 0 rejected, and the
# aggregator counted the failed batches as retries.
#
# Environment (set by ctest): SH_FLEET_SIM, SH_AGG_BIN, SH_FLEET_DIR,
# SH_TEST_DSN_FILE. Exits 77 (SKIP) when it cannot run here (not root:
# mounting a tmpfs).
set -u

DIR=$(mktemp -d /tmp/sh-pgfull.XXXXXX)
AGG_PID=""
SIM_PID=""
DB=""
TS=""

skip() { echo "SKIP: $*"; exit 77; }
fail() {
	echo "FAIL: $*"
	for f in "$DIR"/*.log; do
		[ -f "$f" ] || continue
		echo "--- last lines of $f"
		tail -n 15 "$f"
	done
	exit 1
}
log() { echo "[$(date +%T.%3N)] $*"; }
cleanup() {
	set +e
	for pid in $SIM_PID $AGG_PID; do
		kill -TERM "$pid" 2>/dev/null
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
	done
	[ -n "$DB" ] && psql "$BASE" -qAt -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
	[ -n "$TS" ] && psql "$BASE" -qAt -c "DROP TABLESPACE IF EXISTS $TS" >/dev/null 2>&1
	mountpoint -q "$DIR/ts" && umount -l "$DIR/ts"
	rm -rf "$DIR"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || skip "needs root (mounts a small tmpfs for the database)"
[ -n "${SH_TEST_DSN_FILE:-}" ] && [ -f "$SH_TEST_DSN_FILE" ] || skip "no PostgreSQL fixture"
for b in "${SH_FLEET_SIM:-}" "${SH_AGG_BIN:-}"; do [ -x "$b" ] || fail "not built: $b"; done

BASE=$(cat "$SH_TEST_DSN_FILE")
sql0() { psql "$BASE" -qAt -v ON_ERROR_STOP=1 -c "$1"; }
PGDATA=$(sql0 "SHOW data_directory") || fail "cannot ask the fixture for its data directory"
PGUSER_OS=$(stat -c %U "$PGDATA")
mkdir -p "$DIR/ts"
mount -t tmpfs -o size=24m,mode=0700 tmpfs "$DIR/ts" || skip "cannot mount a tmpfs"
chown "$PGUSER_OS" "$DIR/ts"
chmod 755 "$DIR"
TS="full_$$"
DB="pgfull_$$"
sql0 "CREATE TABLESPACE $TS LOCATION '$DIR/ts'" >/dev/null || fail "cannot create the tablespace"
sql0 "CREATE DATABASE $DB TABLESPACE $TS" >/dev/null || fail "cannot create the database"
DSN="$BASE dbname=$DB"
sql() { psql "$DSN" -qAt -F '|' -v ON_ERROR_STOP=1 -c "$1"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
HPORT=$(free_port)

"$SH_AGG_BIN" --db "$DSN" --listen "tcp://127.0.0.1:$PORT" --http "http://127.0.0.1:$HPORT" \
	--data-dir "$DIR/agg" --stats-interval 5s >"$DIR/aggregator.log" 2>&1 &
AGG_PID=$!
for _ in $(seq 1 300); do grep -q ' ready' "$DIR/aggregator.log" && break; sleep 0.1; done
grep -q ' ready' "$DIR/aggregator.log" || fail "the aggregator did not start"
log "database $DB in a tablespace on a 24 MiB tmpfs: $(df -h --output=used,avail "$DIR/ts" | tail -1 | xargs) used/free after the migrations"

timeout 240 "$SH_FLEET_SIM" --drain 5s --aggregator "tcp://127.0.0.1:$PORT" \
	--scenario "$SH_FLEET_DIR/capture.scn" --hosts 400 --backfill 2h --seed 7 \
	--progress 5s >"$DIR/totals.txt" 2>"$DIR/sim.log" &
SIM_PID=$!

# wait for the disk to fill up
for _ in $(seq 1 1200); do
	grep -q "No space left on device" "$DIR/aggregator.log" && break
	kill -0 "$SIM_PID" 2>/dev/null || fail "fleet-sim finished before the disk was full"
	sleep 0.1
done
grep -q "No space left on device" "$DIR/aggregator.log" || fail "the disk never filled up"
full=$(sql "SELECT count(*) FROM summaries")
log "disk full with $full summaries stored: $(grep -m1 -o 'not stored: .*' "$DIR/aggregator.log" | cut -c1-140)"
sleep 5 # fleet-sim keeps resending into the full disk
n=$(sql "SELECT count(*) FROM summaries")
retries=$(curl -s "http://127.0.0.1:$HPORT/api/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["retries_sent"])')
log "5 s later: $n summaries stored, $retries requests answered with a retry"
[ "$retries" -gt 0 ] || fail "no request was answered with a retry while the disk was full"

mount -o remount,size=1g "$DIR/ts" || fail "cannot grow the tmpfs"
log "file system grown to 1 GiB"
wait "$SIM_PID"
rc=$?
SIM_PID=""
total() { awk -v k="$1" '$1 == k { print $2 }' "$DIR/totals.txt"; }
log "fleet-sim: exit $rc, $(total summaries) summaries made, $(total acked_summaries) acknowledged, $(total acked_events) events acknowledged, $(total rejected) rejected, $(total unacked) not acknowledged"
[ "$rc" -eq 0 ] || fail "fleet-sim did not get everything acknowledged (exit $rc)"
[ "$(total rejected)" = 0 ] || fail "the aggregator rejected messages (it must not, for a full disk)"
[ "$(total summaries)" = "$(total acked_summaries)" ] || fail "not every summary was acknowledged"
got=$(sql "SELECT (SELECT count(*) FROM summaries), (SELECT count(DISTINCT (host_id, boot_id, seq)) FROM summaries),
	(SELECT count(*) FROM spike_events), (SELECT count(DISTINCT (host_id, boot_id, seq)) FROM spike_events)")
want="$(total acked_summaries)|$(total acked_summaries)|$(total acked_events)|$(total acked_events)"
log "database: summaries|distinct|events|distinct = $got (want $want)"
[ "$got" = "$want" ] || fail "the database holds $got, fleet-sim had $want acknowledged"
log "PASS"
