#!/bin/bash
# scenario_a_capture.sh: trigger-on-spike capture on incident A
# (INCIDENTS.md). The real agent runs long enough for its flight recorder
# to hold 30 s; then a monitor ("smaps-monitor", like atop -R) reads a big
# victim's /proc/PID/smaps, the victim's mmap/munmap wait on its mmap_lock,
# the agent reports the waits, and the aggregator asks the agent for the
# recording around the first one on its own (automatic trigger). Asserts:
# a capture is stored within seconds; it starts at least 30 s before the
# first spike; during the spike it holds the monitor's smaps-walk stacks on
# the other CPU; `spikehound capture show` names them; the pprof export
# parses back as a pprof Profile; the folded export is flamegraph.pl input.
. "$(dirname "$0")/lib.sh"

VMAS=${SH_A_VMAS:-100000}
HOLD_S=36       # the recorder must hold 30 s (+ margin) before the spike
MONITOR_S=8

sh_require_root_bpf
BIN=${SH_SCENARIO_BIN:-}
[ -x "$BIN/repro_mmap_victim" ] && [ -x "$BIN/repro_a_smaps_monitor" ] ||
	sh_skip "reproducers not built (SH_SCENARIO_BIN=$BIN)"
PPROF_CHECK="$SH_BUILD/tests/integration/pprof_check"
[ -x "$PPROF_CHECK" ] || sh_skip "pprof_check not built"
[ -d /sys/kernel/btf ] && grep -q mmap_lock_acquire_returned /proc/kallsyms 2>/dev/null ||
	sh_skip "kernel has no mmap_lock tracepoints"

PIN0=()
PIN1=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	PIN0=(taskset -c 0)
	PIN1=(taskset -c 1)
fi

old_max=$(sysctl -n vm.max_map_count)
if [ "$old_max" -lt $((VMAS + 20000)) ]; then
	sysctl -qw vm.max_map_count=$((VMAS + 20000)) || sh_skip "could not raise vm.max_map_count"
	sh_on_exit "sysctl -qw vm.max_map_count=$old_max"
fi

# Automatic captures on spikes of 2 ms and more (the default is 100 ms),
# one per second at most, no healthy hosts (there is one host); the agent
# does not capture by itself, so what is stored was asked for.
SH_AGG_ARGS="--set capture_auto_min=2ms --set capture_auto_host_every=1s --set capture_auto_per_hour=1000 --set capture_auto_healthy=0" \
	sh_start --detectors mmap_lock --event-burst 2000 --event-rate 20000 --capture-local 0
agent_t0=$(date +%s.%N)
grep -q 'control plane: polling' "$SH_AGENT_LOG" || sh_fail "the agent does not poll the control plane"

sh_log "building the victim's address space ($VMAS VMAs)"
# the victim on CPU 0, the monitor on CPU 1 (INCIDENTS.md A: the walk runs
# on the other CPU while the victim waits), so a busy machine's scheduler
# cannot put both on one CPU
"${PIN0[@]}" "$BIN/repro_mmap_victim" -v "$VMAS" -r "$SH_DIR/victim.ready" >"$SH_DIR/victim.log" 2>&1 &
VP=$!
sh_on_exit "kill -TERM $VP 2>/dev/null; wait $VP 2>/dev/null"
for _ in $(seq 1 300); do [ -f "$SH_DIR/victim.ready" ] && break; sleep 0.1; done
[ -f "$SH_DIR/victim.ready" ] || sh_fail "the victim did not build its address space"
wait_s=$(awk -v t0="$agent_t0" -v now="$(date +%s.%N)" -v h="$HOLD_S" 'BEGIN { w = h - (now - t0); print (w > 0 ? w : 0) }')
sh_log "letting the flight recorder fill: ${wait_s} s more"
sleep "$wait_s"

tm=$(date +%s.%N)
sh_log "smaps-monitor reads /proc/$VP/smaps every 2 s for $MONITOR_S s"
"${PIN1[@]}" "$BIN/repro_a_smaps_monitor" "$VP" 2000 "$MONITOR_S" >"$SH_DIR/monitor.log" 2>&1 &
MP=$!
sh_on_exit "kill -TERM $MP 2>/dev/null"

FIRST="SELECT min(ts) FROM spike_events WHERE kind = 'mmap_lock_wait' AND victim_pid = $VP
	AND ts >= to_timestamp($tm) AND duration_ns >= 2000000"
sh_wait_sql "SELECT count(*) FROM spike_events WHERE kind = 'mmap_lock_wait' AND victim_pid = $VP
	AND ts >= to_timestamp($tm) AND duration_ns >= 2000000" 20 >/dev/null ||
	sh_fail "no mmap_lock_wait of 2 ms or more while the monitor ran"
# the capture whose window was built around the first spike of the phase
CAP="SELECT c.capture_id FROM captures c WHERE c.trigger LIKE 'spike:%'
	AND abs(extract(epoch FROM c.from_ts - (($FIRST) - interval '30 seconds'))) < 0.001"
cap=$(sh_wait_sql "$CAP" 20) || sh_fail "the aggregator asked for no capture around the first spike: $(sh_sql 'SELECT trigger, from_ts, to_ts FROM captures')"
done_q="SELECT count(*) FROM capture_hosts WHERE capture_id = '$cap' AND status = 'complete'"
sh_wait_sql "$done_q" 30 >/dev/null ||
	sh_fail "capture $cap not complete: $(sh_sql "SELECT status, reason FROM capture_hosts WHERE capture_id = '$cap'")"
wait "$MP" 2>/dev/null

echo "first spike:  $(sh_sql "SELECT ($FIRST) AT TIME ZONE 'UTC'")"
sh_sql "SELECT 'capture:      ' || c.capture_id || ' trigger ' || c.trigger ||
	E'\nwindow asked: ' || (c.from_ts AT TIME ZONE 'UTC') || ' .. ' || (c.to_ts AT TIME ZONE 'UTC') ||
	E'\nwindow held:  ' || (h.held_from AT TIME ZONE 'UTC') || ' .. ' || (h.held_to AT TIME ZONE 'UTC') ||
	E'\nheld before the first spike: ' || round(extract(epoch FROM ($FIRST) - h.held_from)::numeric, 2) || ' s' ||
	E'\nfirst spike received -> capture asked: ' ||
	round(extract(epoch FROM c.requested_at - (SELECT min(received_at) FROM spike_events e
		WHERE e.ts = ($FIRST)))::numeric, 3) || ' s' ||
	E'\ncapture asked -> stored: ' || round(extract(epoch FROM h.completed_at - c.requested_at)::numeric, 3) ||
	' s (the window ends ' || round(extract(epoch FROM c.to_ts - c.requested_at)::numeric, 3) || ' s after it was asked)' ||
	E'\nsize: ' || h.compressed_bytes || ' bytes compressed, ' || h.raw_bytes || ' raw, ' || h.total_chunks || ' chunk(s)'
	FROM captures c JOIN capture_hosts h USING (capture_id) WHERE c.capture_id = '$cap'"
held_before=$(sh_sql "SELECT extract(epoch FROM ($FIRST) - h.held_from) FROM capture_hosts h WHERE capture_id = '$cap'")
awk -v h="$held_before" 'BEGIN { exit !(h >= 29.9) }' ||
	sh_fail "the capture starts only $held_before s before the first spike (want 30 s)"

# The monitor's stacks during the spike (1 s before it to 2 s after).
first_ns=$(sh_sql "SELECT (extract(epoch FROM ($FIRST)) * 1000000000)::bigint")
from="@$(awk -v n="$first_ns" 'BEGIN { printf "%.3f", n / 1e9 - 1 }')"
to="@$(awk -v n="$first_ns" 'BEGIN { printf "%.3f", n / 1e9 + 2 }')"
"$SH_CLI" --server "$SH_HTTP" capture show "$cap" >"$SH_DIR/show.out" 2>&1 ||
	sh_fail "capture show failed: $(cat "$SH_DIR/show.out")"
"$SH_CLI" --server "$SH_HTTP" capture show "$cap" --from "$from" --to "$to" >"$SH_DIR/show_spike.out" 2>&1 ||
	sh_fail "capture show --from --to failed: $(cat "$SH_DIR/show_spike.out")"
echo "\$ spikehound capture show $cap --from $from --to $to   (top of it)"
head -n 60 "$SH_DIR/show_spike.out" | sed 's/^/  /'
grep -q 'smaps-monitor' "$SH_DIR/show_spike.out" ||
	sh_fail "capture show does not name smaps-monitor during the spike"
"$SH_CLI" --server "$SH_HTTP" capture show "$cap" --from "$from" --to "$to" --folded >"$SH_DIR/spike.folded" ||
	sh_fail "the folded export failed"
walk=$(grep -E '^smaps-monitor;' "$SH_DIR/spike.folded" | grep -E 'show_smap|smap_gather_stats|walk_page|smaps_pte' |
	awk '{ n += $NF } END { print n + 0 }')
mon=$(grep -E '^smaps-monitor;' "$SH_DIR/spike.folded" | awk '{ n += $NF } END { print n + 0 }')
victim_cpu=$(sh_sql "SELECT cpu FROM spike_events WHERE kind = 'mmap_lock_wait' AND ts = ($FIRST) LIMIT 1")
echo "samples of smaps-monitor in the spike window: $mon, walking smaps: $walk (victim waited on CPU $victim_cpu)"
[ "$walk" -gt 0 ] || sh_fail "no smaps-walk stack of the monitor in the capture during the spike"
"$SH_CLI" --server "$SH_HTTP" capture show "$cap" --from "$from" --to "$to" --cpu "$victim_cpu" --folded >"$SH_DIR/victim_cpu.folded" || true
other=$(grep -E '^smaps-monitor;' "$SH_DIR/spike.folded" | awk '{ n += $NF } END { print n + 0 }')
mine=$(grep -E '^smaps-monitor;' "$SH_DIR/victim_cpu.folded" 2>/dev/null | awk '{ n += $NF } END { print n + 0 }')
echo "of those on other CPUs than the victim's: $((other - mine))"
[ $((other - mine)) -gt 0 ] || sh_fail "the monitor's samples are not on another CPU than the victim's"

# flamegraph.pl reads "frame;frame;... count" lines
bad=$(awk 'NF < 2 || $NF !~ /^[0-9]+$/ || $1 ~ /^;/' "$SH_DIR/spike.folded" | wc -l)
lines=$(wc -l <"$SH_DIR/spike.folded")
echo "folded export: $lines lines, $bad not in flamegraph.pl's format"
[ "$lines" -gt 0 ] && [ "$bad" -eq 0 ] || sh_fail "the folded export is not flamegraph.pl input"

"$SH_CLI" --server "$SH_HTTP" capture show "$cap" --pprof "$SH_DIR/capture.pb.gz" >/dev/null ||
	sh_fail "the pprof export failed"
"$PPROF_CHECK" "$SH_DIR/capture.pb.gz" smap || sh_fail "the pprof export does not parse back with the monitor's frames"
"$SH_CLI" --server "$SH_HTTP" capture show "$cap" --svg "$SH_DIR/spike.svg" --from "$from" --to "$to" >/dev/null ||
	sh_fail "the flame graph export failed"
grep -q 'smaps-monitor' "$SH_DIR/spike.svg" || sh_fail "the flame graph does not show smaps-monitor"
echo "PASS: capture $cap stored, $held_before s before the first spike, monitor named"
