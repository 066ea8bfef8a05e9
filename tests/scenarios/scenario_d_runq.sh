#!/bin/bash
# scenario_d_runq.sh: run-queue latency (issue 4, incident D). A
# latency-sensitive pair of threads (repro_d_pingpong: "repro_d_ping" and
# "repro_d_pong" pass a token through pipes and time every hop) shares one
# CPU with a bursty higher-priority hog (repro_d_hog: SCHED_FIFO, 40 ms of
# spinning every 200 ms). The real agent runs with only the "runq" detector
# (threshold 10 ms) and no practical event rate limit. Asserted from
# spike_events:
#   - quiet case first: the pair alone for QUIET_S seconds: no runq event
#     names repro_d_hog, and the pair gets few events (VM noise only);
#   - with the hog: runq events for the pair, >= 80% of them name
#     repro_d_hog as the strongest "ran_instead" culprit with its on-CPU
#     time inside the wait; waits end on the hog's CPU; wakeups name a waker;
#   - `spikehound spikes --at <a spike> --window 5s` shows repro_d_hog.
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
. "$SCRIPT_DIR/lib.sh"

T0=$(date +%s)
sh_require_root_bpf
BIN="${SH_SCENARIO_BIN:-$SH_BUILD/tests/scenarios}"
PINGPONG="$BIN/repro_d_pingpong"
HOG="$BIN/repro_d_hog"
[ -x "$PINGPONG" ] && [ -x "$HOG" ] || sh_skip "reproducers not built in $BIN"
NCPU=$(nproc)
CPU=$((NCPU - 1))
QUIET_S=10
HOG_S=20
INTERVAL_US=2000

sh_start --detectors runq --event-burst 5000 --event-rate 100000
grep -q 'spike detectors running:.*runq' "$SH_AGENT_LOG" ||
	sh_fail "the runq detector is not running (see the agent log)"

# pair_events FROM TO [EXTRA]: runq events of the pair between two epochs.
pair_events() {
	sh_sql "SELECT count(*) FROM spike_events WHERE kind = 'runq'
		AND victim_comm IN ('repro_d_ping', 'repro_d_pong')
		AND ts >= to_timestamp($1) AND ts < to_timestamp($2) ${3:-}"
}
NAMES_HOG="AND evidence->'culprits' @> '[{\"role\": \"ran_instead\", \"comm\": \"repro_d_hog\"}]'"
HOG_FIRST="AND evidence->'culprits'->0->>'role' = 'ran_instead'
	AND evidence->'culprits'->0->>'comm' = 'repro_d_hog'"

# --- quiet case: the pair alone
sh_log "quiet case: ping-pong on CPU $CPU for $QUIET_S s, no hog"
q0=$(date +%s.%N)
out=$("$PINGPONG" $CPU $QUIET_S $INTERVAL_US) || sh_fail "repro_d_pingpong failed"
q1=$(date +%s.%N)
echo "ping-pong alone: $out"
sleep 2
qn=$(pair_events "$q0" "$q1")
qhog=$(sh_sql "SELECT count(*) FROM spike_events WHERE kind = 'runq'
	AND ts >= to_timestamp($q0) AND ts < to_timestamp($q1) $NAMES_HOG")
qall=$(sh_sql "SELECT count(*) FROM spike_events WHERE kind = 'runq'
	AND ts >= to_timestamp($q0) AND ts < to_timestamp($q1)")
sh_log "quiet case: $qn runq events for the pair, $qall runq events in all, $qhog naming repro_d_hog"
[ "$qhog" = 0 ] || sh_fail "quiet case: $qhog runq events name repro_d_hog, which was not running"

# --- the hog shares the CPU
sh_log "hog case: ping-pong on CPU $CPU for $HOG_S s with repro_d_hog (SCHED_FIFO, 40 ms every 200 ms)"
h0=$(date +%s.%N)
"$HOG" $CPU $HOG_S 40 200 fifo >"$SH_DIR/hog.out" 2>&1 &
hogpid=$!
sh_on_exit "kill $hogpid 2>/dev/null"
out=$("$PINGPONG" $CPU $HOG_S $INTERVAL_US) || sh_fail "repro_d_pingpong failed"
wait $hogpid || sh_fail "repro_d_hog failed: $(cat "$SH_DIR/hog.out")"
h1=$(date +%s.%N)
echo "ping-pong with the hog: $out; hog: $(cat "$SH_DIR/hog.out")"
sh_wait_sql "SELECT 1 FROM spike_events WHERE kind = 'runq' AND ts >= to_timestamp($h0)
	HAVING count(*) >= 20" 20 >/dev/null
sleep 2 # stragglers
n=$(pair_events "$h0" "$h1")
named=$(pair_events "$h0" "$h1" "$NAMES_HOG")
first=$(pair_events "$h0" "$h1" "$HOG_FIRST")
oncpu=$(pair_events "$h0" "$h1" "$HOG_FIRST AND cpu = $CPU
	AND (evidence->'culprits'->0->>'on_cpu_ns')::bigint >= 5000000")
wakeups=$(pair_events "$h0" "$h1" "AND detail = 'wakeup'")
wakers=$(pair_events "$h0" "$h1" "AND detail = 'wakeup'
	AND evidence->'culprits' @> '[{\"role\": \"waker\"}]'")
wstacks=$(pair_events "$h0" "$h1" "AND detail = 'wakeup'
	AND evidence->'culprits' @> '[{\"role\": \"waker\"}]'
	AND jsonb_path_exists(evidence, '\$.culprits[*] ? (@.role == \"waker\").kernel_stack[0]')")
preempted=$(pair_events "$h0" "$h1" "AND detail = 'preempted'")
all=$(sh_sql "SELECT count(*) FROM spike_events WHERE kind = 'runq'
	AND ts >= to_timestamp($h0) AND ts < to_timestamp($h1)")
sh_log "hog case: $n runq events for the pair ($wakeups wakeups, $preempted preemptions; $all runq events in all)"
sh_log "hog case: repro_d_hog named ran_instead in $named/$n, first culprit in $first/$n (on CPU $CPU with >= 5 ms on-CPU time in $oncpu/$n); wakeups with a waker $wakers/$wakeups, with its kernel stack $wstacks/$wakeups"
echo "durations (ms) of the pair's events: $(sh_sql "SELECT min(duration_ns) / 1000000,
	percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_ns) / 1000000, max(duration_ns) / 1000000
	FROM spike_events WHERE kind = 'runq' AND victim_comm IN ('repro_d_ping', 'repro_d_pong')
	AND ts >= to_timestamp($h0) AND ts < to_timestamp($h1)")"
echo "example event:"
sh_sql "SELECT victim_comm, detail, duration_ns, cpu, evidence->'attrs',
	(SELECT jsonb_agg(c - 'kernel_stack' - 'user_stack') FROM jsonb_array_elements(evidence->'culprits') c)
	FROM spike_events WHERE kind = 'runq' AND victim_comm IN ('repro_d_ping', 'repro_d_pong')
	AND ts >= to_timestamp($h0) AND detail = 'wakeup' ORDER BY ts LIMIT 1"
echo "its waker's kernel stack: $(sh_sql "SELECT c->'kernel_stack' FROM spike_events,
	jsonb_array_elements(evidence->'culprits') c WHERE kind = 'runq'
	AND victim_comm IN ('repro_d_ping', 'repro_d_pong') AND ts >= to_timestamp($h0)
	AND detail = 'wakeup' AND c->>'role' = 'waker' ORDER BY ts LIMIT 1")"
echo "the pair's wakers (comm, context, kernel stack taken): $(sh_sql "SELECT string_agg(w || ' x' || c, ', ')
	FROM (SELECT (SELECT c->>'comm' || '/' || (evidence->'attrs'->>'waker_context') || '/' ||
	(jsonb_array_length(c->'kernel_stack') > 0)::text FROM jsonb_array_elements(evidence->'culprits') c
	WHERE c->>'role' = 'waker') w, count(*) c FROM spike_events WHERE kind = 'runq'
	AND victim_comm IN ('repro_d_ping', 'repro_d_pong') AND ts >= to_timestamp($h0)
	AND ts < to_timestamp($h1) AND detail = 'wakeup' GROUP BY 1 ORDER BY 2 DESC LIMIT 8) x")"
echo "other victims while the hog ran: $(sh_sql "SELECT string_agg(victim_comm || ' x' || c, ', ')
	FROM (SELECT victim_comm, count(*) c FROM spike_events WHERE kind = 'runq'
	AND ts >= to_timestamp($h0) AND ts < to_timestamp($h1)
	AND victim_comm NOT IN ('repro_d_ping', 'repro_d_pong') GROUP BY 1 ORDER BY 2 DESC LIMIT 8) x")"

[ "$n" -ge 10 ] || sh_fail "only $n runq events for the ping-pong pair with the hog (expected >= 10)"
[ $((first * 10)) -ge $((n * 8)) ] ||
	sh_fail "repro_d_hog is the first ran_instead culprit in only $first of $n events (< 80%)"
[ $((oncpu * 10)) -ge $((first * 8)) ] ||
	sh_fail "only $oncpu of $first events show the hog's on-CPU time on CPU $CPU"
[ "$wakeups" -eq 0 ] || [ $((wakers * 10)) -ge $((wakeups * 9)) ] ||
	sh_fail "only $wakers of $wakeups wakeup events name a waker"
[ $((qn * 4)) -le "$n" ] || sh_fail "quiet case: $qn events for the pair, not few next to the hog case's $n"

# --- what the user sees
if "$SH_CLI" help spikes >/dev/null 2>&1; then
	at=$(sh_sql "SELECT extract(epoch FROM ts) FROM spike_events WHERE kind = 'runq'
		AND victim_comm IN ('repro_d_ping', 'repro_d_pong') AND ts >= to_timestamp($h0)
		$HOG_FIRST ORDER BY ts LIMIT 1")
	cli=$("$SH_CLI" --server "$SH_HTTP" spikes --at "@$at" --window 5s 2>&1)
	echo "$cli" | head -30
	echo "$cli" | grep -q "repro_d_hog" || sh_fail "spikehound spikes does not show repro_d_hog"
fi
sh_log "scenario_d_runq passed in $(($(date +%s) - T0)) s"
