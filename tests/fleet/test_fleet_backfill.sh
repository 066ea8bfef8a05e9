#!/bin/bash
# test_fleet_backfill.sh: fleet-sim against the real aggregator on the "pg"
# fixture's PostgreSQL (a database of its own).
#
# 1. 100 hosts, 2 h of history from periodic_atop.scn: the database holds
#    exactly the summaries and events fleet-sim reports as acknowledged; the
#    ground truth's spike and noise lines are exactly the events of those
#    hosts (host, kind, time on the host's clock); its host lines match the
#    hosts and boots tables.
# 2. Another fleet (another seed) sent across an aggregator restart: the
#    requests lost with the first aggregator are resent (same seqs) to the
#    second; nothing acknowledged is lost and nothing is stored twice.
#
# Environment (set by ctest): SH_FLEET_SIM, SH_AGG_BIN, SH_FLEET_DIR (this
# directory), SH_TEST_DSN_FILE. Exits 77 (SKIP) when it cannot run here.
. "$(dirname "$0")/../lib.sh"
SIM_PID=""
AGG_PID=""
# the daemons this script starts and restarts, stopped at exit
sh_on_exit 'sh_stop $SIM_PID $AGG_PID'

command -v python3 >/dev/null || sh_skip "no python3 (to read the truth file)"
[ -x "${SH_FLEET_SIM:-}" ] || sh_fail "fleet-sim not built (SH_FLEET_SIM)"
[ -x "${SH_AGG_BIN:-}" ] || sh_fail "aggregator not built (SH_AGG_BIN)"

sh_fresh_db fleet
DSN=$SH_DSN
PORT=$(sh_free_port)
HPORT=$(sh_free_port)
URL="tcp://127.0.0.1:$PORT"

# start_agg LOG: start the aggregator and wait until it is ready.
start_agg() {
	"$SH_AGG_BIN" --db "$DSN" --listen "$URL" --http "http://127.0.0.1:$HPORT" \
		--data-dir "$SH_DIR/agg" --stats-interval 5s >"$1" 2>&1 &
	AGG_PID=$!
	for _ in $(seq 1 300); do
		grep -q ' ready' "$1" && return 0
		kill -0 "$AGG_PID" 2>/dev/null || break
		sleep 0.1
	done
	sh_fail "the aggregator did not start (see $1)"
}

stop_agg() {
	kill -TERM "$AGG_PID" 2>/dev/null
	for _ in $(seq 1 100); do kill -0 "$AGG_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$AGG_PID" 2>/dev/null
	wait "$AGG_PID" 2>/dev/null
	AGG_PID=""
}

sql() { psql "$DSN" -qAt -F '|' -v ON_ERROR_STOP=1 -c "$1"; }
# total NAME FILE: a "name value" line of fleet-sim's totals.
total() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }

start_agg "$SH_DIR/aggregator1.log"

# ---- 1. backfill, then compare with the database and the truth
# fleet-sim resends until everything is acknowledged; `timeout` bounds that
# (on SIGTERM it drains for --drain, prints its totals and exits 1; -k kills
# it 15 s later should it hang, so a hang fails here and says so)
sh_log "fleet-sim: 100 hosts, 2 h of history (periodic_atop.scn)"
timeout -k 15 100 "$SH_FLEET_SIM" --drain 5s --aggregator "$URL" \
	--scenario "$SH_FLEET_DIR/periodic_atop.scn" --hosts 100 --backfill 2h --seed 42 \
	--truth "$SH_DIR/truth.jsonl" --progress 2s \
	>"$SH_DIR/totals1.txt" 2>"$SH_DIR/sim1.log"
rc=$?
cat "$SH_DIR/totals1.txt"
[ "$rc" -eq 0 ] || sh_fail "fleet-sim exited $rc: $(total rejected "$SH_DIR/totals1.txt") rejected, $(total unacked "$SH_DIR/totals1.txt") not acknowledged (in 100 s)"
S1=$(total acked_summaries "$SH_DIR/totals1.txt")
E1=$(total acked_events "$SH_DIR/totals1.txt")
[ -n "$S1" ] && [ "$S1" -gt 0 ] && [ -n "$E1" ] && [ "$E1" -gt 0 ] ||
	sh_fail "no acknowledged summaries or events in the totals"
[ "$(total summaries "$SH_DIR/totals1.txt")" = "$S1" ] || sh_fail "not every summary was acknowledged"
[ "$(total events "$SH_DIR/totals1.txt")" = "$E1" ] || sh_fail "not every event was acknowledged"
[ "$(total rejected "$SH_DIR/totals1.txt")" = 0 ] || sh_fail "the aggregator rejected messages"

got=$(sql "SELECT (SELECT count(*) FROM summaries), (SELECT count(*) FROM spike_events),
	(SELECT count(*) FROM hosts), (SELECT count(*) FROM boots)")
sh_log "database: summaries|events|hosts|boots = $got"
[ "$got" = "$S1|$E1|100|100" ] || sh_fail "database holds $got, fleet-sim acknowledged $S1 summaries, $E1 events of 100 hosts"

# the truth: spike + noise lines are exactly the events, host lines the hosts
python3 - "$SH_DIR" <<'EOF' || sh_fail "could not read the truth file"
import csv, json, sys
d = sys.argv[1]
hosts, events, causes, run = {}, [], {}, None
spikes = noise = 0
spike_hosts = {}
for line in open(d + "/truth.jsonl"):
    o = json.loads(line)
    t = o["type"]
    if t == "run":
        run = o
    elif t == "host":
        hosts[o["host_id"]] = o
    elif t == "cause":
        causes[o["name"]] = o
    elif t == "spike":
        spikes += 1
        assert o["host_id"] in hosts, "spike of an unknown host"
        assert o["incident"] == o["cause"], "periodic incident named after its cause"
        spike_hosts.setdefault(o["cause"], set()).add(o["host_id"])
        events.append((o["host_id"], o["kind"], o["host_ts_ns"] // 1000, "spike"))
        skew = round(hosts[o["host_id"]]["skew_ms"] * 1e6)
        assert o["host_ts_ns"] == o["ts_ns"] + skew, "host_ts_ns is ts_ns plus the skew"
    elif t == "noise":
        noise += 1
        skew = round(hosts[o["host_id"]]["skew_ms"] * 1e6)
        events.append((o["host_id"], o["kind"], (o["ts_ns"] + skew) // 1000, "noise"))
assert run and run["hosts"] == 100 == len(hosts), "run line and host lines"
assert causes["atop"]["feature"] == "cmdline:atop -R -w /var/log/atop/atop_# #", causes["atop"]
assert causes["falcon-sensor"]["decoy"] is True
assert len(spike_hosts.get("atop", ())) == causes["atop"]["hosts"] > 0, "atop's spiking hosts"
with open(d + "/truth_events.csv", "w") as f:
    csv.writer(f).writerows(events)
with open(d + "/truth_hosts.csv", "w") as f:
    w = csv.writer(f)
    for h in hosts.values():
        l = h["labels"]
        w.writerow((h["host_id"], h["hostname"], h["kernel"], l["rack"], l["cluster"], l["role"]))
with open(d + "/truth_counts.txt", "w") as f:
    f.write("%d %d\n" % (spikes, noise))
EOF
read -r SPIKES NOISE <"$SH_DIR/truth_counts.txt"
sh_log "truth: $SPIKES injected spikes, $NOISE noise"
[ "$SPIKES" = "$(total spikes_injected "$SH_DIR/totals1.txt")" ] || sh_fail "truth spikes differ from the totals"
[ "$NOISE" = "$(total noise "$SH_DIR/totals1.txt")" ] || sh_fail "truth noise differs from the totals"
[ $((SPIKES + NOISE)) -eq "$E1" ] || sh_fail "truth has $((SPIKES + NOISE)) spikes, $E1 events were acknowledged"

got=$(psql "$DSN" -qAt -F '|' -v ON_ERROR_STOP=1 <<EOF
CREATE TEMP TABLE t_ev (host_id uuid, kind text, us bigint, type text);
\copy t_ev FROM '$SH_DIR/truth_events.csv' CSV
CREATE TEMP TABLE t_host (host_id uuid, hostname text, kernel text, rack text, cluster text, role text);
\copy t_host FROM '$SH_DIR/truth_hosts.csv' CSV
CREATE TEMP TABLE ev AS SELECT host_id, kind, (extract(epoch FROM ts) * 1000000)::bigint AS us
	FROM spike_events;
SELECT
 (SELECT count(*) FROM t_ev t WHERE NOT EXISTS (SELECT 1 FROM ev e WHERE e.host_id = t.host_id
	AND e.kind = t.kind AND abs(e.us - t.us) <= 1)),
 (SELECT count(*) FROM ev e WHERE NOT EXISTS (SELECT 1 FROM t_ev t WHERE e.host_id = t.host_id
	AND e.kind = t.kind AND abs(e.us - t.us) <= 1)),
 (SELECT count(*) FROM t_host t LEFT JOIN hosts h USING (host_id) LEFT JOIN boots b USING (host_id)
	WHERE h.hostname IS DISTINCT FROM t.hostname OR b.kernel_release IS DISTINCT FROM t.kernel
	OR h.labels->>'rack' IS DISTINCT FROM t.rack OR h.labels->>'cluster' IS DISTINCT FROM t.cluster
	OR h.labels->>'role' IS DISTINCT FROM t.role);
EOF
)
sh_log "truth vs database: truth spikes without event|events without truth|hosts differing = $got"
[ "$got" = "0|0|0" ] || sh_fail "truth and database differ: $got"

# ---- 2. another fleet across an aggregator restart
sh_log "fleet-sim: 200 more hosts, 6 h of history, aggregator restarted meanwhile"
timeout -k 15 120 "$SH_FLEET_SIM" --drain 5s --aggregator "$URL" \
	--scenario "$SH_FLEET_DIR/cluster_burst.scn" --hosts 200 \
	--backfill 6h --seed 43 --concurrency 8 --timeout 2s --progress 1s \
	>"$SH_DIR/totals2.txt" 2>"$SH_DIR/sim2.log" &
SIM_PID=$!
sleep 1.5
stop_agg
sh_log "aggregator stopped"
sleep 1
start_agg "$SH_DIR/aggregator2.log"
sh_log "aggregator started again"
wait "$SIM_PID"
rc=$?
SIM_PID=""
cat "$SH_DIR/totals2.txt"
[ "$rc" -eq 0 ] || sh_fail "fleet-sim exited $rc: $(total rejected "$SH_DIR/totals2.txt") rejected, $(total unacked "$SH_DIR/totals2.txt") not acknowledged (in 120 s)"
S2=$(total acked_summaries "$SH_DIR/totals2.txt")
E2=$(total acked_events "$SH_DIR/totals2.txt")
[ "$(total summaries "$SH_DIR/totals2.txt")" = "$S2" ] || sh_fail "not every summary was acknowledged"
[ "$(total events "$SH_DIR/totals2.txt")" = "$E2" ] || sh_fail "not every event was acknowledged"
sh_log "resends after the restart: $(total retries "$SH_DIR/totals2.txt") ($(total timeouts "$SH_DIR/totals2.txt") timeouts)"

got=$(sql "SELECT (SELECT count(*) FROM summaries), (SELECT count(*) FROM spike_events),
	(SELECT count(*) FROM hosts),
	(SELECT count(*) FROM (SELECT 1 FROM summaries GROUP BY host_id, boot_id, seq HAVING count(*) > 1) d),
	(SELECT count(*) FROM (SELECT 1 FROM spike_events GROUP BY host_id, boot_id, seq HAVING count(*) > 1) d)")
want="$((S1 + S2))|$((E1 + E2))|300|0|0"
sh_log "database: summaries|events|hosts|duplicate summaries|duplicate events = $got"
[ "$got" = "$want" ] || sh_fail "database holds $got, expected $want"
sh_log "PASS"
