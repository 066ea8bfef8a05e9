#!/bin/bash
# test_fleet_capture.sh: captures from many hosts, across an aggregator
# crash. A real aggregator on the "pg" fixture's PostgreSQL (a database of
# its own) with its control plane on; fleet-sim keeps 36 hosts of
# capture.scn live (about 30 in cluster c1), each long-polling for
# commands. Then:
#
# 1. `spikehound capture --label cluster=c1 --at now --before 20s --after 2s`
#    asks every c1 host (and no other) for a capture;
# 2. while the chunks are in transfer (4 KiB chunks, a slow data plane) the
#    aggregator is killed with SIGKILL, and started again;
# 3. every asked host reaches status complete; every payload's SHA-256 and
#    length match what its host sent and it decodes (`spikehound capture
#    show ID --host H --json`, with samples, and spike events across the
#    hosts); `capture list --json` says the same; capture_chunks holds
#    nothing (a chunk stored again after its capture was assembled would be
#    left there); fleet-sim took exactly one capture per asked host and got
#    every chunk acknowledged once, as many as the hosts' totals add up to.
#
# With SH_AGENT_BIN set (ctest fleet_capture_mixed; root and BTF) the real
# agent runs beside the simulated hosts, labelled cluster=c1 and with
# 4 KiB chunks too: the same capture asks it and the simulated hosts, and
# its recording (real stacks from its flight recorder), taken while the
# aggregator is down (a first SIGKILL right after the agent accepted the
# command) and waiting in its spool, must complete with the same checks, and its folded export must
# hold named frames.
#
# Environment (set by ctest): SH_FLEET_SIM, SH_AGG_BIN, SH_CLI_BIN,
# SH_FLEET_DIR (this directory), SH_TEST_DSN_FILE; SH_AGENT_BIN (optional).
# Exits 77 (SKIP) when it cannot run here.
. "$(dirname "$0")/../lib.sh"
AGENT_PID=""
SIM_PID=""
AGG_PID=""
# the daemons this script starts and restarts, stopped at exit
sh_on_exit 'sh_stop $AGENT_PID $SIM_PID $AGG_PID'

command -v python3 >/dev/null || sh_skip "no python3 (to pick free ports and read JSON)"
[ -x "${SH_FLEET_SIM:-}" ] || sh_fail "fleet-sim not built (SH_FLEET_SIM)"
[ -x "${SH_AGG_BIN:-}" ] || sh_fail "aggregator not built (SH_AGG_BIN)"
[ -x "${SH_CLI_BIN:-}" ] || sh_fail "spikehound CLI not built (SH_CLI_BIN)"
REAL=0
if [ -n "${SH_AGENT_BIN:-}" ]; then
	[ -x "$SH_AGENT_BIN" ] || sh_fail "agent not built (SH_AGENT_BIN=$SH_AGENT_BIN)"
	[ "$(id -u)" -eq 0 ] || sh_skip "the real agent needs root (BPF)"
	[ -r /sys/kernel/btf/vmlinux ] || sh_skip "kernel has no BTF (/sys/kernel/btf/vmlinux)"
	REAL=1
fi
HOSTS=$((36 + REAL))

sh_fresh_db fleetcap
DSN=$SH_DSN
PORT=$(sh_free_port)
HPORT=$(sh_free_port)
CPORT=$(sh_free_port)
URL="tcp://127.0.0.1:$PORT"
CURL="tcp://127.0.0.1:$CPORT"
API="http://127.0.0.1:$HPORT"

# start_agg LOG: start the aggregator (control plane on, no automatic
# captures: only ours) and wait until it is ready.
start_agg() {
	"$SH_AGG_BIN" --db "$DSN" --listen "$URL" --http "$API" --control-listen "$CURL" \
		--set capture_auto_min=off --data-dir "$SH_DIR/agg" --stats-interval 5s >"$1" 2>&1 &
	AGG_PID=$!
	for _ in $(seq 1 300); do
		grep -q ' ready' "$1" && return 0
		kill -0 "$AGG_PID" 2>/dev/null || break
		sleep 0.1
	done
	sh_fail "the aggregator did not start (see $1)"
}

sql() { psql "$DSN" -qAt -F '|' -v ON_ERROR_STOP=1 -c "$1"; }
cli() { "$SH_CLI_BIN" --server "$API" "$@"; }
# total NAME FILE: a "name value" line of fleet-sim's totals.
total() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }

start_agg "$SH_DIR/aggregator1.log"
SIM_START=$(date +%s)
if [ "$REAL" = 1 ]; then
	sh_log "the real agent: cluster=c1, control plane $CURL, 4 KiB chunks"
	"$SH_AGENT_BIN" run --aggregator "$URL" --control "$CURL" --interval 2s \
		--spool-dir "$SH_DIR/spool" --spool-fsync false --label cluster=c1 --label role=real \
		--detectors none --capture-chunk 4KiB --capture-local 0 >"$SH_DIR/agent.log" 2>&1 &
	AGENT_PID=$!
fi
sh_log "fleet-sim: 36 hosts live (capture.scn), control plane $CURL, 4 KiB chunks"
# a narrow data plane (4 requests of at most 5 messages in flight) so that
# a transfer of ~30 captures in 4 KiB chunks (~1,800) takes seconds
"$SH_FLEET_SIM" --aggregator "$URL" --control "$CURL" --scenario "$SH_FLEET_DIR/capture.scn" \
	--seed 61 --capture-chunk 4KiB --concurrency 4 --batch 5 --timeout 2s --drain 30s \
	--progress 2s >"$SH_DIR/totals.txt" 2>"$SH_DIR/sim.log" &
SIM_PID=$!

# every host heard from, and 25 s of history in the recorders
for _ in $(seq 1 600); do
	n=$(sql "SELECT count(*) FROM hosts" 2>/dev/null)
	[ "${n:-0}" -ge "$HOSTS" ] && [ $(($(date +%s) - SIM_START)) -ge 25 ] && break
	kill -0 "$SIM_PID" 2>/dev/null || sh_fail "fleet-sim ended early (see sim.log)"
	[ -z "$AGENT_PID" ] || kill -0 "$AGENT_PID" 2>/dev/null || sh_fail "the agent ended early (see agent.log)"
	sleep 0.1
done
[ "${n:-0}" -eq "$HOSTS" ] || sh_fail "the aggregator knows ${n:-0} hosts, not $HOSTS"
C1=$(sql "SELECT count(*) FROM hosts WHERE labels->>'cluster' = 'c1'")
REAL_ID=""
if [ "$REAL" = 1 ]; then
	REAL_ID=$(sql "SELECT host_id FROM hosts WHERE labels->>'role' = 'real'")
	[ -n "$REAL_ID" ] || sh_fail "the real agent's host is not known"
	grep -q 'control plane: polling' "$SH_DIR/agent.log" || sh_fail "the agent does not poll the control plane"
fi
sh_log "$HOSTS hosts known, $C1 in cluster c1"
[ -z "$REAL_ID" ] || sh_log "the real agent is host $REAL_ID, in c1"
[ "$C1" -ge 20 ] && [ "$C1" -lt "$HOSTS" ] || sh_fail "expected most but not all hosts in c1, got $C1"

# ---- 1. ask
out=$(cli capture --label cluster=c1 --at now --before 20s --after 2s 2>&1) ||
	sh_fail "spikehound capture failed: $out"
echo "$out"
ID=$(echo "$out" | awk '$1 == "capture" && $3 == "asked" { print $2; exit }')
ASKED=$(echo "$out" | awk '$1 == "capture" && $3 == "asked" { print $5; exit }')
[ -n "$ID" ] || sh_fail "no capture id in: $out"
[ "$ASKED" = "$C1" ] || sh_fail "capture asked of $ASKED hosts, $C1 are in c1"

# ---- 2. kill the aggregator while chunks are in transfer
# (mixed: first kill it as soon as the real agent has accepted the command,
# so that its capture is taken while the aggregator is down and waits in its
# spool; then again in the middle of the simulated hosts' transfer)
if [ "$REAL" = 1 ]; then
	for _ in $(seq 1 200); do
		st=$(sql "SELECT status FROM capture_hosts WHERE capture_id = '$ID' AND host_id = '$REAL_ID'")
		[ "$st" = accepted ] && break
		sleep 0.02
	done
	[ "$st" = accepted ] || sh_fail "the real agent did not accept the command (status $st)"
	kill -KILL "$AGG_PID"
	wait "$AGG_PID" 2>/dev/null
	AGG_PID=""
	sh_log "aggregator killed (SIGKILL) once the real agent accepted; down for 4 s (the capture is due 2.3 s after it was asked)"
	sleep 4
	start_agg "$SH_DIR/aggregator0.log"
	sh_log "aggregator started again"
fi
state() {
	sql "SELECT (SELECT count(*) FROM capture_hosts WHERE capture_id = '$ID' AND status = 'complete'),
		(SELECT count(*) FROM capture_chunks WHERE capture_id = '$ID')"
}
for _ in $(seq 1 600); do
	s=$(state)
	[ "${s#*|}" != 0 ] && [ -n "${s#*|}" ] && break
	sleep 0.05
done
[ "${s#*|}" != 0 ] || sh_fail "no chunk of capture $ID arrived in 30 s"
kill -KILL "$AGG_PID"
wait "$AGG_PID" 2>/dev/null
AGG_PID=""
s=$(state)
sh_log "aggregator killed (SIGKILL) with ${s%|*} of $ASKED hosts complete, ${s#*|} chunks stored"
[ "${s%|*}" -lt "$ASKED" ] || sh_fail "the transfer was over before the kill"
[ -z "$REAL_ID" ] || sh_log "the real agent's capture at the kill: $(sql "SELECT h.status || ', ' || count(c.idx) || ' chunks stored'
	FROM capture_hosts h LEFT JOIN capture_chunks c USING (capture_id, host_id)
	WHERE h.capture_id = '$ID' AND h.host_id = '$REAL_ID' GROUP BY h.status")"
sleep 1
start_agg "$SH_DIR/aggregator2.log"
sh_log "aggregator started again"

# ---- 3. every asked host completes
for _ in $(seq 1 900); do
	s=$(state)
	[ "${s%|*}" = "$ASKED" ] && break
	sleep 0.1
done
sh_log "$ID: ${s%|*} of $ASKED hosts complete, ${s#*|} chunks left"
[ "${s%|*}" = "$ASKED" ] ||
	sh_fail "only ${s%|*} of $ASKED hosts completed: $(sql "SELECT status, reason, count(*) FROM capture_hosts WHERE capture_id = '$ID' GROUP BY 1, 2")"

got=$(sql "SELECT count(*),
	count(*) FILTER (WHERE status = 'complete'),
	count(*) FILTER (WHERE payload IS NULL OR encode(sha256(payload), 'hex') <> sha256),
	count(*) FILTER (WHERE length(payload) <> compressed_bytes),
	(SELECT count(*) FROM capture_hosts h JOIN hosts o USING (host_id)
	  WHERE h.capture_id = '$ID' AND o.labels->>'cluster' <> 'c1'),
	(SELECT count(*) FROM capture_chunks),
	(SELECT count(*) FROM captures)
	FROM capture_hosts WHERE capture_id = '$ID'")
sh_log "hosts|complete|bad sha256|bad length|not in c1|chunks left|captures = $got"
[ "$got" = "$ASKED|$ASKED|0|0|0|0|1" ] || sh_fail "expected $ASKED|$ASKED|0|0|0|0|1, got $got"

cli capture list --json >"$SH_DIR/list.json" || sh_fail "capture list --json failed"
python3 - "$SH_DIR/list.json" "$ID" "$ASKED" <<'EOF' || sh_fail "capture list --json disagrees"
import json, sys
doc = json.load(open(sys.argv[1]))
caps = [c for c in doc["captures"] if c["capture_id"] == sys.argv[2]]
assert len(caps) == 1, "capture %s listed %d times" % (sys.argv[2], len(caps))
hosts = caps[0]["hosts"]
assert len(hosts) == int(sys.argv[3]), "%d hosts listed" % len(hosts)
bad = [(h["hostname"], h["status"]) for h in hosts if h["status"] != "complete"]
assert not bad, "not complete: %s" % bad
assert all(h["chunks"] == h["total"] > 0 and len(h["sha256"]) == 64 for h in hosts), hosts
print("capture list: %d hosts complete, %d chunks, %d bytes" % (
    len(hosts), sum(h["total"] for h in hosts), sum(h["bytes"] for h in hosts)))
EOF

# every payload decodes; the window's spike events are in the captures
events=0
for h in $(sql "SELECT host_id FROM capture_hosts WHERE capture_id = '$ID' ORDER BY host_id"); do
	cli capture show "$ID" --host "$h" --json >"$SH_DIR/show.json" 2>"$SH_DIR/show.err" ||
		sh_fail "capture show $ID --host $h failed: $(cat "$SH_DIR/show.err")"
	n=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
c = d["counts"]
assert d["capture_id"] == sys.argv[2], d["capture_id"]
assert d["host"]["host_id"].replace("-", "") == sys.argv[3].replace("-", ""), d["host"]
assert c["samples"] > 0 and c["stacks"] > 0 and c["metrics"] >= 15 and c["processes"] > 0, c
assert c["missing_stacks"] == 0, c
print(c["events"])' "$SH_DIR/show.json" "$ID" "$h") || sh_fail "capture of $h: unexpected content"
	events=$((events + n))
done
sh_log "every capture decodes; $events spike events in them"
if [ "$REAL" = 1 ]; then
	cli capture show "$ID" --host "$REAL_ID" --folded >"$SH_DIR/real.folded" ||
		sh_fail "capture show $ID --host $REAL_ID --folded failed"
	got=$(awk '{ n++; s += $NF } /;[a-z_][a-z0-9_.]*( |;)/ { named++ } END { printf "%d|%d|%d", n, s, named }' "$SH_DIR/real.folded")
	sh_log "the real agent's capture: $(sql "SELECT total_chunks || ' chunks, ' || compressed_bytes || ' bytes, window held ' ||
		round(extract(epoch FROM held_to - held_from)::numeric, 2) || ' s'
		FROM capture_hosts WHERE capture_id = '$ID' AND host_id = '$REAL_ID'")"
	sh_log "the real agent's capture: stacks|samples|stacks with a named frame = $got"
	IFS='|' read -r nst nsa nnamed <<<"$got"
	[ "$nst" -gt 0 ] && [ "$nsa" -gt 0 ] && [ "$nnamed" -gt 0 ] ||
		sh_fail "the real agent's capture holds no named stacks: $got"
	kill -0 "$AGENT_PID" 2>/dev/null || sh_fail "the agent died (see agent.log)"
	# commands reach it only as answers to its own polls of the configured
	# control address: it listens on no socket a stranger could send to
	if command -v ss >/dev/null; then
		ls=$(ss -Hlnp -A inet,unix 2>/dev/null | grep -c "pid=$AGENT_PID,")
		sh_log "listening sockets of the agent: $ls"
		[ "$ls" = 0 ] || sh_fail "the agent listens: $(ss -Hlnp -A inet,unix | grep "pid=$AGENT_PID,")"
	fi
fi
[ "$events" -gt 0 ] || sh_fail "no spike event in any capture"

# ---- fleet-sim's side: one capture per asked host, every chunk acked once
kill -TERM "$SIM_PID"
wait "$SIM_PID"
rc=$?
SIM_PID=""
cat "$SH_DIR/totals.txt"
[ "$rc" -eq 0 ] || sh_fail "fleet-sim exited $rc: $(total rejected "$SH_DIR/totals.txt") rejected, $(total unacked "$SH_DIR/totals.txt") not acknowledged"
CH=$(sql "SELECT sum(total_chunks) FROM capture_hosts WHERE capture_id = '$ID' AND host_id::text <> '${REAL_ID:-none}'")
SIM_ASKED=$((ASKED - REAL))
got="$(total captures "$SH_DIR/totals.txt")|$(total captures_done "$SH_DIR/totals.txt")|$(total captures_failed "$SH_DIR/totals.txt")|$(total capture_chunks "$SH_DIR/totals.txt")|$(total acked_chunks "$SH_DIR/totals.txt")|$(total rejected "$SH_DIR/totals.txt")"
sh_log "fleet-sim captures|done|failed|chunks|acked chunks|rejected = $got (chunks in the database's totals: $CH)"
[ "$got" = "$SIM_ASKED|$SIM_ASKED|0|$CH|$CH|0" ] || sh_fail "expected $SIM_ASKED|$SIM_ASKED|0|$CH|$CH|0"
got=$(sql "SELECT (SELECT count(*) FROM (SELECT 1 FROM summaries GROUP BY host_id, boot_id, seq HAVING count(*) > 1) d),
	(SELECT count(*) FROM (SELECT 1 FROM spike_events GROUP BY host_id, boot_id, seq HAVING count(*) > 1) d)")
[ "$got" = "0|0" ] || sh_fail "duplicate summaries|events: $got"
sh_log "PASS"
