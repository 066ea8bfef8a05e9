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
. "$(dirname "$0")/../lib.sh"
TS=""

drop_ts() {
	[ -n "$TS" ] && psql "$SH_BASE_DSN" -qAt -c "DROP TABLESPACE IF EXISTS $TS" >/dev/null 2>&1
	mountpoint -q "$SH_DIR/ts" && umount -l "$SH_DIR/ts"
}

[ "$(id -u)" -eq 0 ] || sh_skip "needs root (mounts a small tmpfs for the database)"
[ -n "${SH_TEST_DSN_FILE:-}" ] && [ -f "$SH_TEST_DSN_FILE" ] || sh_skip "no PostgreSQL fixture"
for b in "${SH_FLEET_SIM:-}" "${SH_AGG_BIN:-}"; do [ -x "$b" ] || sh_fail "not built: $b"; done

SH_BASE_DSN=$(cat "$SH_TEST_DSN_FILE")
PGDATA=$(psql "$SH_BASE_DSN" -qAt -c "SHOW data_directory") ||
	sh_fail "cannot ask the fixture for its data directory"
mkdir -p "$SH_DIR/ts"
mount -t tmpfs -o size=24m,mode=0700 tmpfs "$SH_DIR/ts" || sh_skip "cannot mount a tmpfs"
sh_on_exit drop_ts
chown "$(stat -c %U "$PGDATA")" "$SH_DIR/ts"
chmod 755 "$SH_DIR"
TS="full_$$"
psql "$SH_BASE_DSN" -qAt -c "CREATE TABLESPACE $TS LOCATION '$SH_DIR/ts'" >/dev/null ||
	sh_fail "cannot create the tablespace"
sh_fresh_db pgfull "$TS"
sql() { sh_sql "$1"; }
PORT=$(sh_free_port)
HPORT=$(sh_free_port)

"$SH_AGG_BIN" --db "$SH_DSN" --listen "tcp://127.0.0.1:$PORT" --http "http://127.0.0.1:$HPORT" \
	--data-dir "$SH_DIR/agg" --stats-interval 5s >"$SH_DIR/aggregator.log" 2>&1 &
SH_PIDS="$SH_PIDS $!"
for _ in $(seq 1 300); do grep -q ' ready' "$SH_DIR/aggregator.log" && break; sleep 0.1; done
grep -q ' ready' "$SH_DIR/aggregator.log" || sh_fail "the aggregator did not start"
sh_log "database pgfull_$$ in a tablespace on a 24 MiB tmpfs: $(df -h --output=used,avail "$SH_DIR/ts" | tail -1 | xargs) used/free after the migrations"

timeout -k 15 240 "$SH_FLEET_SIM" --drain 5s --aggregator "tcp://127.0.0.1:$PORT" \
	--scenario "$SH_FLEET_DIR/capture.scn" --hosts 400 --backfill 2h --seed 7 \
	--progress 5s >"$SH_DIR/totals.txt" 2>"$SH_DIR/sim.log" &
SIM_PID=$!
SH_PIDS="$SIM_PID $SH_PIDS"

# wait for the disk to fill up
for _ in $(seq 1 1200); do
	grep -q "No space left on device" "$SH_DIR/aggregator.log" && break
	kill -0 "$SIM_PID" 2>/dev/null || sh_fail "fleet-sim finished before the disk was full"
	sleep 0.1
done
grep -q "No space left on device" "$SH_DIR/aggregator.log" || sh_fail "the disk never filled up"
full=$(sql "SELECT count(*) FROM summaries")
sh_log "disk full with $full summaries stored: $(grep -m1 -o 'not stored: .*' "$SH_DIR/aggregator.log" | cut -c1-140)"
sleep 5 # fleet-sim keeps resending into the full disk
n=$(sql "SELECT count(*) FROM summaries")
retries=$(curl -s "http://127.0.0.1:$HPORT/api/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["retries_sent"])')
sh_log "5 s later: $n summaries stored, $retries requests answered with a retry"
[ "$retries" -gt 0 ] || sh_fail "no request was answered with a retry while the disk was full"

mount -o remount,size=1g "$SH_DIR/ts" || sh_fail "cannot grow the tmpfs"
sh_log "file system grown to 1 GiB"
wait "$SIM_PID"
rc=$?
total() { awk -v k="$1" '$1 == k { print $2 }' "$SH_DIR/totals.txt"; }
sh_log "fleet-sim: exit $rc, $(total summaries) summaries made, $(total acked_summaries) acknowledged, $(total acked_events) events acknowledged, $(total rejected) rejected, $(total unacked) not acknowledged"
[ "$rc" -eq 0 ] || sh_fail "fleet-sim did not get everything acknowledged (exit $rc)"
[ "$(total rejected)" = 0 ] || sh_fail "the aggregator rejected messages (it must not, for a full disk)"
[ "$(total summaries)" = "$(total acked_summaries)" ] || sh_fail "not every summary was acknowledged"
got=$(sql "SELECT (SELECT count(*) FROM summaries), (SELECT count(DISTINCT (host_id, boot_id, seq)) FROM summaries),
	(SELECT count(*) FROM spike_events), (SELECT count(DISTINCT (host_id, boot_id, seq)) FROM spike_events)")
want="$(total acked_summaries)|$(total acked_summaries)|$(total acked_events)|$(total acked_events)"
sh_log "database: summaries|distinct|events|distinct = $got (want $want)"
[ "$got" = "$want" ] || sh_fail "the database holds $got, fleet-sim had $want acknowledged"
sh_log "PASS"
