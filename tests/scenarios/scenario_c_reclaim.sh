#!/bin/bash
# scenario_c_reclaim.sh: reclaim stalls from negative dentries (issue 4,
# incident C). repro_c_negdentries stat()s millions of files that do not
# exist (each call leaves a negative dentry, like the NSS library did)
# inside a memory cgroup limited to LIMIT_MB: the dentries are charged to
# the cgroup, and when it hits its limit the charging stat() itself runs
# memcg reclaim, whose superblock shrinker (super_cache_scan) prunes the
# dentries for hundreds of ms. The real agent runs with only the "reclaim"
# detector (threshold 10 ms). Asserted:
#   - reclaim events (detail "memcg") name repro_c_negdent as the victim,
#     with its cgroup, a kernel stack at the begin, pages reclaimed, and a
#     dentry shrinker (super_cache_scan) as the longest shrinker;
#   - the summaries' per-second metrics during the run show dentry_negative
#     rising and sys CPU busy;
#   - quiet case: the same program for the same time outside any limited
#     cgroup gets no memcg reclaim events;
#   - `spikehound spikes --at <a stall> --window 5s` shows repro_c_negdent.
# The cgroup (v1 memory controller, or v2 memory.max), the files' directory
# and the dentries (echo 2 > drop_caches) are removed at exit.
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
. "$SCRIPT_DIR/lib.sh"

T0=$(date +%s)
sh_require_root_bpf
REPRO="${SH_SCENARIO_BIN:-$SH_BUILD/tests/scenarios}/repro_c_negdentries"
[ -x "$REPRO" ] || sh_skip "repro_c_negdentries not built ($REPRO)"
LIMIT_MB=128
COUNT=3000000
MAX_S=20

# --- a memory-limited cgroup: v1 memory controller, else v2 memory.max
own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
if [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
	CGV=1
	CG="/sys/fs/cgroup/memory${own%/}/spikehound_scen_c_$$"
else
	CGV=2
	root=""
	for r in /sys/fs/cgroup /sys/fs/cgroup/unified; do
		grep -qw memory "$r/cgroup.controllers" 2>/dev/null && root=$r && break
	done
	[ -n "$root" ] || sh_skip "no memory cgroup controller (neither v1 nor v2)"
	grep -qw memory "$root/cgroup.subtree_control" ||
		echo +memory >"$root/cgroup.subtree_control" ||
		sh_skip "could not enable the v2 memory controller in $root"
	CG="$root/spikehound_scen_c_$$"
fi
mkdir "$CG" || sh_skip "could not create cgroup $CG"
WORK=$(mktemp -d /var/tmp/sh-scen-c.XXXXXX)
# at exit: no task left in the cgroup, the cgroup, the files, the dentries
sh_on_exit "for p in \$(cat '$CG/cgroup.procs' 2>/dev/null); do kill -9 \$p; done; sleep 0.2; rmdir '$CG'; rm -rf '$WORK'; echo 2 > /proc/sys/vm/drop_caches"
if [ $CGV = 1 ]; then
	echo $((LIMIT_MB << 20)) >"$CG/memory.limit_in_bytes" || sh_fail "could not limit $CG"
else
	echo $((LIMIT_MB << 20)) >"$CG/memory.max" || sh_fail "could not limit $CG"
fi
mkdir "$WORK/limited" "$WORK/quiet"
sh_log "cgroup v$CGV $CG limited to $LIMIT_MB MB"
echo 2 >/proc/sys/vm/drop_caches # start from few negative dentries

sh_start --detectors reclaim
grep -q 'spike detectors running:.*reclaim' "$SH_AGENT_LOG" ||
	sh_fail "the reclaim detector is not running (see the agent log)"

# reclaim_events PID [EXTRA]: memcg reclaim events of PID.
reclaim_events() {
	sh_sql "SELECT count(*) FROM spike_events WHERE kind = 'reclaim' AND detail = 'memcg'
		AND victim_pid = $1 ${2:-}"
}

# --- the culprit inside the limited cgroup
sh_log "limited: $COUNT stat()s of missing files (at most $MAX_S s) in $CG"
c0=$(date +%s.%N)
out=$(sh -c 'echo $$ > "$1/cgroup.procs" && exec "$2" "$3" "$4" "$5"' sh "$CG" "$REPRO" \
	"$WORK/limited" $COUNT $MAX_S) || sh_fail "repro_c_negdentries failed: $out"
c1=$(date +%s.%N)
run_s=$(echo "$c1 - $c0" | bc)
echo "repro_c_negdentries in the cgroup: $out (${run_s} s)"
sh_wait_sql "SELECT count(*) FROM spike_events WHERE kind = 'reclaim' AND detail = 'memcg'
	AND victim_comm = 'repro_c_negdent' AND ts >= to_timestamp($c0)" 10 >/dev/null
sleep 3 # stragglers, and the last summaries
pid=$(sh_sql "SELECT victim_pid FROM spike_events WHERE kind = 'reclaim'
	AND victim_comm = 'repro_c_negdent' AND ts >= to_timestamp($c0) LIMIT 1")
[ -n "$pid" ] || sh_fail "no reclaim event names repro_c_negdent (stat()s: $out)"
n=$(reclaim_events "$pid")
shr=$(reclaim_events "$pid" "AND evidence->'attrs'->>'shrinker' LIKE 'super_cache_scan%'
	AND evidence->'culprits'->0->>'role' = 'shrinker'")
cg=$(reclaim_events "$pid" "AND victim_cgroup LIKE '%spikehound_scen_c_$$'")
kst=$(reclaim_events "$pid" "AND (evidence->'victim'->'kernel_stack')::text LIKE '%try_to_free_mem_cgroup_pages%'")
nr=$(reclaim_events "$pid" "AND (evidence->'attrs'->>'nr_reclaimed')::bigint > 0")
sh_log "limited: $n memcg reclaim events for repro_c_negdent[$pid]: longest shrinker super_cache_scan in $shr, victim cgroup in $cg, kernel stack at try_to_free_mem_cgroup_pages in $kst, pages reclaimed > 0 in $nr"
echo "stall durations (ms) min/median/max and total: $(sh_sql "SELECT min(duration_ns) / 1000000,
	percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_ns) / 1000000,
	max(duration_ns) / 1000000, sum(duration_ns) / 1000000
	FROM spike_events WHERE kind = 'reclaim' AND victim_pid = $pid")"
echo "example event:"
sh_sql "SELECT detail, duration_ns, victim_comm, victim_cgroup, evidence->'attrs',
	(SELECT jsonb_agg(c - 'kernel_stack' - 'user_stack') FROM jsonb_array_elements(evidence->'culprits') c),
	evidence->'victim'->'kernel_stack', evidence->'victim'->'user_stack'
	FROM spike_events WHERE kind = 'reclaim' AND victim_pid = $pid ORDER BY duration_ns DESC LIMIT 1"

# per-second metrics of the summaries during the run
read -r dmin dmax sys_max sys_avg secs <<<"$(sh_sql "SELECT min(d), max(d), round(max(s)::numeric, 1),
	round(avg(s)::numeric, 1), count(*) FROM summaries, unnest(m_time, m_dentry_negative, m_cpu_sys_pct) AS x(t, d, s)
	WHERE t >= to_timestamp($c0) - interval '1 second' AND t < to_timestamp($c1)" | tr '|' ' ')"
sh_log "metrics over $secs s of the run: dentry_negative $dmin -> $dmax, sys CPU max $sys_max% (avg $sys_avg%)"
echo "per second (time, dentry_negative, sys %): $(sh_sql "SELECT string_agg(to_char(t, 'SS') || ':' || d || '/' || round(s::numeric), ' ' ORDER BY t)
	FROM summaries, unnest(m_time, m_dentry_negative, m_cpu_sys_pct) AS x(t, d, s)
	WHERE t >= to_timestamp($c0) - interval '1 second' AND t < to_timestamp($c1)")"

[ "$n" -ge 1 ] || sh_fail "no memcg reclaim events for repro_c_negdent"
[ $((shr * 10)) -ge $((n * 8)) ] ||
	sh_fail "super_cache_scan is the longest shrinker in only $shr of $n events"
[ "$cg" = "$n" ] || sh_fail "the victim's cgroup is the limited one in only $cg of $n events"
[ $((kst * 10)) -ge $((n * 8)) ] || sh_fail "kernel stacks at the begin in only $kst of $n events"
[ -n "$secs" ] && [ "$secs" -ge 3 ] || sh_fail "only ${secs:-0} seconds of metrics during the run"
[ $((dmax - dmin)) -ge 300000 ] ||
	sh_fail "dentry_negative did not rise during the run ($dmin -> $dmax)"
[ "$(echo "$sys_max >= 20" | bc)" = 1 ] || sh_fail "sys CPU peaked at only $sys_max% during the run"

# --- quiet case: the same program, same time, no limited cgroup
quiet_s=$(printf '%.0f' "$run_s")
sh_log "quiet: the same program for $quiet_s s in the scenario's own (unlimited) memory cgroup"
q0=$(date +%s.%N)
"$REPRO" "$WORK/quiet" $COUNT "$quiet_s" >"$SH_DIR/quiet.out" 2>&1 &
qpid=$!
wait $qpid || sh_fail "repro_c_negdentries failed: $(cat "$SH_DIR/quiet.out")"
echo "repro_c_negdentries outside: $(cat "$SH_DIR/quiet.out")"
sleep 3
qn=$(reclaim_events "$qpid")
qall=$(sh_sql "SELECT count(*) FROM spike_events WHERE kind = 'reclaim' AND ts >= to_timestamp($q0)")
sh_log "quiet: $qn memcg reclaim events for repro_c_negdent[$qpid] ($qall reclaim events of any task)"
[ "$qn" = 0 ] || sh_fail "quiet case: $qn memcg reclaim events outside a limited cgroup"

# --- what the user sees
if "$SH_CLI" help spikes >/dev/null 2>&1; then
	at=$(sh_sql "SELECT extract(epoch FROM ts) FROM spike_events WHERE kind = 'reclaim'
		AND victim_pid = $pid ORDER BY duration_ns DESC LIMIT 1")
	cli=$("$SH_CLI" --server "$SH_HTTP" spikes --at "@$at" --window 5s 2>&1)
	echo "$cli" | head -20
	echo "$cli" | grep -q "repro_c_negdent" || sh_fail "spikehound spikes does not show repro_c_negdent"
fi
sh_log "scenario_c_reclaim passed in $(($(date +%s) - T0)) s"
