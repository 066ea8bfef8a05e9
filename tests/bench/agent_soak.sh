#!/usr/bin/env bash
# agent_soak.sh: the agent's memory under a fork/exec storm. Runs forker
# (WORKERS processes starting short-lived children back to back: several
# binaries, spawn and fork+exec, forks without exec) for DURATION seconds
# while `spikehound-agent record` samples every CPU with the default 32 MiB
# flight recorder and prints a stats line (`--stats-every`) every
# SH_SOAK_STATS_EVERY seconds: agent RSS, recorder bytes used vs cap,
# interned stacks alive, records, seconds held, samples, symbolizer caches.
# Prints the start, middle and end lines side by side.
#
# usage: tests/bench/agent_soak.sh [DURATION] [BUILD_DIR]
#        DURATION seconds, default 600; BUILD_DIR default /work/main/build
# environment: SH_SOAK_WORKERS (forker processes, default 2),
#              SH_SOAK_MEMORY_MIB (recorder cap, default the agent's 32 MiB;
#              a smaller cap reaches the steady state, recorder full and
#              dropping, sooner on a slow machine),
#              SH_SOAK_STATS_EVERY (seconds between stats lines, default 10),
#              SH_BENCH_WORKLOADS (dir with forker, default BUILD_DIR/tests/bench),
#              SH_BENCH_KEEP=1 keeps the temp dir (stats, folded output).
#
# Unlike the timing benchmarks this one asserts, because these are
# correctness properties: it exits 1 when the recorder's bytes used ever
# exceeded its cap, when the agent's RSS grew by more than 10% from the
# middle to the end beyond what the recorder itself added toward its cap
# (memory must plateau: the recorder is capped, the symbolizer's caches are
# bounded), or when the record command failed; 2 on bad usage or a missing binary;
# 77 when not root.
set -u

DURATION=${1:-600}
BUILD=${2:-/work/main/build}
WORKERS=${SH_SOAK_WORKERS:-2}
EVERY=${SH_SOAK_STATS_EVERY:-10}
MEMORY=${SH_SOAK_MEMORY_MIB:-}
WL=${SH_BENCH_WORKLOADS:-$BUILD/tests/bench}
AGENT=$BUILD/node-agent/spikehound-agent
FORKER=$WL/forker
RSS_MARGIN_PCT=10

case $DURATION in
'' | *[!0-9]*)
	echo "agent_soak.sh: DURATION must be whole seconds, not \"$DURATION\"" >&2
	exit 2
	;;
esac
if [ "$DURATION" -lt $((3 * EVERY)) ]; then
	echo "agent_soak.sh: DURATION must be at least 3 stats intervals ($((3 * EVERY)) s)" >&2
	exit 2
fi
for f in "$AGENT" "$FORKER"; do
	if [ ! -x "$f" ]; then
		echo "agent_soak.sh: \"$f\" is missing (build spikehound-agent and forker first)" >&2
		exit 2
	fi
done
if [ "$(id -u)" -ne 0 ]; then
	echo "agent_soak.sh: needs root to load the BPF sampler" >&2
	exit 77
fi

TMP=$(mktemp -d /tmp/sh-soak-XXXXXX) || exit 1
FPID=
cleanup() {
	[ -n "$FPID" ] && kill "$FPID" 2>/dev/null
	if [ "${SH_BENCH_KEEP:-0}" = 1 ]; then
		echo "agent_soak.sh: kept $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT

echo "agent_soak.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n), $(nproc) CPUs, kernel $(uname -r)"
echo "agent_soak.sh: $DURATION s of forker ($WORKERS workers) under record (${MEMORY:-32 (default)} MiB cap), stats every $EVERY s"

"$FORKER" $((DURATION + 5)) "$WORKERS" >"$TMP/forker.log" 2>&1 &
FPID=$!
sleep 1

# The stats lines go to the terminal as they come and to record.err.
"$AGENT" record --seconds "$DURATION" --folded --stats-every "$EVERY" ${MEMORY:+--memory "$MEMORY"} \
	>"$TMP/folded" 2> >(tee "$TMP/record.err" | grep --line-buffered '^record: stats' >&2)
rrc=$?
wait "$FPID"
FPID=
sleep 0.5 # let tee finish
echo
cat "$TMP/forker.log"
grep -v '^record: stats' "$TMP/record.err"
echo "agent_soak.sh: folded output: $(wc -l <"$TMP/folded") distinct stacks, $(wc -c <"$TMP/folded") bytes"

# Parse the stats lines: key=value fields after "record: stats".
grep '^record: stats' "$TMP/record.err" | sed 's/^record: stats //' >"$TMP/stats"
awk -v dur="$DURATION" -v margin="$RSS_MARGIN_PCT" '
function field(line, key,    re, m) {
	re = "(^| )" key "=[^ ]*"
	if (!match(line, re))
		return ""
	m = substr(line, RSTART, RLENGTH)
	sub(/^ /, "", m)
	sub(/^[^=]*=/, "", m)
	return m
}
{
	line[NR] = $0
	t[NR] = field($0, "t") + 0
	used = field($0, "bytes_used") + 0
	cap = field($0, "cap") + 0
	if (used > maxused)
		maxused = used
	if (!full_t && field($0, "dropped") > 0)
		full_t = t[NR]
	if (used > cap) {
		over++
		printf "VIOLATION at t=%ss: bytes_used %d > cap %d\n", t[NR], used, cap
	}
}
END {
	if (NR < 3) {
		print "agent_soak.sh: fewer than 3 stats lines"
		exit 1
	}
	# start: the first line after t=0; middle: the line nearest dur/2; end: the last
	s = 2
	mid = 2
	for (i = 2; i <= NR; i++)
		if ((t[i] - dur / 2) ^ 2 < (t[mid] - dur / 2) ^ 2)
			mid = i
	n = split("start middle end", lab, " ")
	idx[1] = s; idx[2] = mid; idx[3] = NR
	printf "\n%-7s %7s %8s %15s %7s %8s %7s %8s %6s %6s %9s %8s %9s\n", "", "t_s", "rss_MiB",
	       "used/cap_MiB", "stacks", "records", "held_s", "samples", "lost", "elf", "elf_MiB",
	       "pid_maps", "maps_MiB"
	for (k = 1; k <= n; k++) {
		L = line[idx[k]]
		printf "%-7s %7.1f %8.1f %7.2f/%-7.2f %7d %8d %7.1f %8d %6d %6d %9.1f %8d %9.2f\n",
		       lab[k], field(L, "t"), field(L, "rss_kb") / 1024,
		       field(L, "bytes_used") / 1048576, field(L, "cap") / 1048576, field(L, "stacks"),
		       field(L, "records"), field(L, "held_s"), field(L, "samples"), field(L, "lost"),
		       field(L, "elf_files"), field(L, "elf_bytes") / 1048576, field(L, "pid_maps"),
		       field(L, "maps_bytes") / 1048576
	}
	rss_mid = field(line[mid], "rss_kb") + 0
	rss_end = field(line[NR], "rss_kb") + 0
	cap = field(line[NR], "cap") + 0
	printf "\nbytes used: max %d of cap %d (%.1f%%) over %d stats lines: %s\n", maxused, cap,
	       100 * maxused / cap, NR, over ? "EXCEEDED" : "never above the cap"
	if (full_t)
		printf "recorder full (dropping the oldest records) from t=%.0fs\n", full_t
	else
		print "recorder never full: no records dropped"
	# Until the recorder is full its RSS grows with bytes_used (bounded by
	# the cap, checked above); what else grows must stay within the margin.
	rec_kb = (field(line[NR], "bytes_used") - field(line[mid], "bytes_used")) / 1024
	if (rec_kb < 0)
		rec_kb = 0
	growth = rss_mid ? 100 * (rss_end - rss_mid) / rss_mid : 0
	other = rss_mid ? 100 * (rss_end - rss_mid - rec_kb) / rss_mid : 0
	printf "rss: middle %d KiB, end %d KiB: %+.1f%%; the recorder grew %d KiB meanwhile, " \
	       "the rest %+.1f%% (limit +%d%%): %s\n", rss_mid, rss_end, growth, rec_kb, other,
	       margin, other <= margin ? "holds" : "EXCEEDED"
	exit (over || other > margin) ? 1 : 0
}' "$TMP/stats"
arc=$?
if [ $rrc -ne 0 ]; then
	echo "agent_soak.sh: record exited $rrc"
	exit 1
fi
[ $arc -eq 0 ] && echo "agent_soak.sh: PASS" || echo "agent_soak.sh: FAIL"
exit $arc
