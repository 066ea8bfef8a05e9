#!/bin/bash
# scenario_a_smaps.sh: incident A (INCIDENTS.md). A victim with a large
# address space (100k small touched VMAs) loops mmap/munmap; a monitor
# ("smaps-monitor", like atop -R) reads its /proc/PID/smaps every 2 s and
# holds its mmap_lock for read while the victim's mmap/munmap wait for
# write. Asserts: mmap_lock_wait events for the victim with the monitor as
# culprits[0] in most of them, slow mmap/munmap syscall events for the
# victim; then in a quiet phase of the same length (same victim, monitor
# stopped): no mmap_lock_wait event names the monitor, and the victim's
# waits mostly vanish.
. "$(dirname "$0")/lib.sh"

PHASE_S=${SH_A_PHASE_S:-25}  # seconds per phase
VMAS=${SH_A_VMAS:-100000}
MIN_NAMED_PCT=70

sh_require_root_bpf
BIN=${SH_SCENARIO_BIN:-}
[ -x "$BIN/repro_mmap_victim" ] && [ -x "$BIN/repro_a_smaps_monitor" ] ||
	sh_skip "reproducers not built (SH_SCENARIO_BIN=$BIN)"
[ -d /sys/kernel/btf ] && grep -q mmap_lock_acquire_returned /proc/kallsyms 2>/dev/null ||
	sh_skip "kernel has no mmap_lock tracepoints"

# $VMAS VMAs need vm.max_map_count above the default 65530.
old_max=$(sysctl -n vm.max_map_count)
if [ "$old_max" -lt $((VMAS + 20000)) ]; then
	sysctl -qw vm.max_map_count=$((VMAS + 20000)) || sh_skip "could not raise vm.max_map_count"
	sh_on_exit "sysctl -qw vm.max_map_count=$old_max"
fi

t_begin=$(date +%s)
# Only the two detectors under test; a high event budget so that the
# stored events are all the waits (the default rate limit would sample).
sh_start --detectors mmap_lock,syscall --event-burst 2000 --event-rate 20000
grep -q 'spike detectors running: .*mmap_lock' "$SH_AGENT_LOG" ||
	sh_fail "the mmap_lock detector did not start: $(grep -E 'mmap_lock|syscall' "$SH_AGENT_LOG")"
grep -q 'spike detectors running: .*syscall' "$SH_AGENT_LOG" ||
	sh_fail "the syscall detector did not start: $(grep -E 'syscall' "$SH_AGENT_LOG")"

sh_log "building the victim's address space ($VMAS VMAs)"
"$BIN/repro_mmap_victim" -v "$VMAS" -r "$SH_DIR/victim.ready" >"$SH_DIR/victim.log" 2>&1 &
VP=$!
sh_on_exit "kill -TERM $VP 2>/dev/null; wait $VP 2>/dev/null"
for _ in $(seq 1 300); do [ -f "$SH_DIR/victim.ready" ] && break; sleep 0.1; done
[ -f "$SH_DIR/victim.ready" ] || sh_fail "the victim did not build its address space"
sleep 2
kill -USR1 "$VP" # reset its per-phase counters

now_s() { date +%s.%N; }

sh_log "phase 1 ($PHASE_S s): smaps-monitor reads /proc/$VP/smaps every 2 s"
l0=$(now_s)
"$BIN/repro_a_smaps_monitor" "$VP" 2000 "$PHASE_S" >"$SH_DIR/monitor.log" 2>&1 &
MP=$!
sh_on_exit "kill -TERM $MP 2>/dev/null"
wait "$MP" || sh_fail "the monitor failed: $(cat "$SH_DIR/monitor.log")"
l1=$(now_s)
kill -USR1 "$VP"
sleep 1
echo "monitor passes: $(grep -c '^pass' "$SH_DIR/monitor.log") ($(head -n 1 "$SH_DIR/monitor.log"))"

sh_log "phase 2 ($PHASE_S s): the same victim alone"
q0=$(now_s)
sleep "$PHASE_S"
q1=$(now_s)
kill -USR1 "$VP"
kill -TERM "$VP"
wait "$VP" 2>/dev/null
echo "victim's own timing per phase (calls, worst, over 1 ms, over 5 ms):"
grep '^phase' "$SH_DIR/victim.log" | awk 'NR == 2 { $1 = "  monitor:" } NR == 3 { $1 = "  quiet:  " } NR > 1'
sleep 2 # the last events are sent ~200 ms after they happen

in_phase() { echo "ts >= to_timestamp($1) AND ts < to_timestamp($2)"; }
L="$(in_phase "$l0" "$l1")"
Q="$(in_phase "$q0" "$q1")"
W="kind = 'mmap_lock_wait' AND victim_pid = $VP"
NAMED="evidence->'culprits'->0->>'comm' = 'smaps-monitor'"
ANY_NAMED="evidence->'culprits' @> '[{\"comm\": \"smaps-monitor\"}]'"
SC="kind = 'syscall' AND victim_pid = $VP AND detail IN ('mmap', 'munmap')"

sh_wait_sql "SELECT count(*) FROM spike_events WHERE $W AND $L" 15 >/dev/null ||
	sh_fail "no mmap_lock_wait event for the victim while the monitor ran"
l_waits=$(sh_sql "SELECT count(*) FROM spike_events WHERE $W AND $L")
l_named=$(sh_sql "SELECT count(*) FROM spike_events WHERE $W AND $L AND $NAMED")
l_sys=$(sh_sql "SELECT count(*) FROM spike_events WHERE $SC AND $L")
q_waits=$(sh_sql "SELECT count(*) FROM spike_events WHERE $W AND $Q")
q_named=$(sh_sql "SELECT count(*) FROM spike_events WHERE kind = 'mmap_lock_wait' AND $Q AND $ANY_NAMED")
q_sys=$(sh_sql "SELECT count(*) FROM spike_events WHERE $SC AND $Q")
all_q=$(sh_sql "SELECT count(*) FROM spike_events WHERE kind = 'mmap_lock_wait' AND $Q")

echo "phase 1 (monitor): $l_waits mmap_lock waits of the victim, $l_named name smaps-monitor" \
	"as culprits[0] ($((l_waits ? 100 * l_named / l_waits : 0))%); $l_sys slow mmap/munmap"
echo "phase 2 (quiet):   $q_waits mmap_lock waits of the victim ($all_q on the host)," \
	"$q_named name smaps-monitor; $q_sys slow mmap/munmap"
echo "phase 1 waits by culprits[0] and detail:"
sh_sql "SELECT evidence->'culprits'->0->>'comm' AS culprit, detail, count(*),
	       round(avg(duration_ns) / 1e6, 2) AS avg_ms, round(max(duration_ns) / 1e6, 2) AS max_ms
	FROM spike_events WHERE $W AND $L GROUP BY 1, 2 ORDER BY 3 DESC" | sed 's/^/  /'
echo "phase 2 waits and slow calls of the victim:"
sh_sql "SELECT kind, detail, coalesce(evidence->'culprits'->0->>'comm', '-') AS culprit,
	       round(duration_ns / 1e6, 2) AS ms, evidence->'attrs'->>'off_cpu_max_cause' AS cause
	FROM spike_events WHERE victim_pid = $VP AND $Q ORDER BY ts LIMIT 20" | sed 's/^/  /'
echo "one phase-1 wait, as stored:"
sh_sql "SELECT jsonb_pretty(jsonb_build_object('detail', detail, 'duration_ms', duration_ns / 1e6,
	  'victim', jsonb_build_object('comm', evidence->'victim'->'comm',
	    'kernel_stack', evidence->'victim'->'kernel_stack', 'user_stack', evidence->'victim'->'user_stack'),
	  'culprits', evidence->'culprits', 'attrs', evidence->'attrs'))
	FROM spike_events WHERE $W AND $L AND $NAMED ORDER BY duration_ns DESC LIMIT 1" | head -n 80
echo "one phase-1 slow mmap/munmap, as stored:"
sh_sql "SELECT jsonb_pretty(jsonb_build_object('detail', detail, 'duration_ms', duration_ns / 1e6,
	  'kernel_stack', evidence->'victim'->'kernel_stack', 'user_stack', evidence->'victim'->'user_stack',
	  'culprits', evidence->'culprits', 'attrs', evidence->'attrs'))
	FROM spike_events WHERE $SC AND $L ORDER BY duration_ns DESC LIMIT 1" | head -n 50

# What a user would type: the spikes around one of the waits.
if "$SH_CLI" --help 2>&1 | grep -q 'spikes'; then
	at=$(sh_sql "SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
		FROM spike_events WHERE $W AND $L AND $NAMED ORDER BY duration_ns DESC LIMIT 1")
	echo "\$ spikehound --server $SH_HTTP spikes --at $at --window 5s"
	"$SH_CLI" --server "$SH_HTTP" spikes --at "$at" --window 5s >"$SH_DIR/cli.out" 2>&1 ||
		sh_fail "spikehound spikes failed: $(cat "$SH_DIR/cli.out")"
	head -n 60 "$SH_DIR/cli.out"
	grep -q 'smaps-monitor' "$SH_DIR/cli.out" || sh_fail "spikehound spikes does not name smaps-monitor"
fi

[ "$l_waits" -ge 10 ] || sh_fail "only $l_waits mmap_lock waits of the victim while the monitor ran"
[ $((100 * l_named)) -ge $((MIN_NAMED_PCT * l_waits)) ] ||
	sh_fail "smaps-monitor named in $l_named of $l_waits waits (< $MIN_NAMED_PCT%)"
[ "$l_sys" -ge 1 ] || sh_fail "no slow mmap/munmap syscall event for the victim"
[ "$q_named" -eq 0 ] || sh_fail "$q_named mmap_lock_wait events name smaps-monitor after it stopped"
[ $((q_waits * 10)) -le $((l_waits)) ] || [ "$q_waits" -le 2 ] ||
	sh_fail "the victim still waits without the monitor: $q_waits waits vs $l_waits"
echo "PASS in $(($(date +%s) - t_begin)) s"
