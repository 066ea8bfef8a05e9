#!/usr/bin/env bash
# agent_vs_perf.sh: the agent's sampler against perf on the same workload at
# the same time. The burner spins on CPU 1 (spikehound_burn_hot) and mixload
# on CPU 0 (four leaves taking 40/30/20/10% of its time: mix_hot40,
# mix_warm30, mix_mild20, mix_cool10); meanwhile `spikehound-agent record
# --folded` and `perf record -F 99 -e cpu-clock -g -a` sample the whole
# machine for the same SECONDS, REPEATS times. Unless SH_BENCH_SHORTLIVED=0,
# a third, unpinned load starts short-lived processes all the while, as a
# build host or cron does: a shell loop running `sh -c true`, `ls -l
# /usr/bin`, `env true` and a parallel compile (`gcc -O2 -c` of 4 generated
# C files at once, a `make -j4` in small). Their user frames can only be
# named from what is known when they ran (perf: its mmap records; the
# agent: the build id + file offset the kernel gives with each frame).
# Prints, side by side:
#   1. samples per CPU per second with the idle task (pid 0, swapper)
#      excluded, and their mean over the CPUs, each tool over its own
#      window (the agent's recording time, perf's first to last sample);
#   2. the top-10 leaf functions (self samples) in % of non-idle samples
#      for each tool (ranked by the mean of both), with the difference in
#      percentage points, and where each tool's [unknown] leaves are (by
#      module: symbols a tool could not resolve, not sampling).
# The issue's targets (samples/busy CPU/s within 5% of perf's, top-10
# shares within 3 pp) are printed as holding or not; informational only.
#
# usage: tests/bench/agent_vs_perf.sh [BUILD_DIR]     (default /work/main/build)
# environment: SH_BENCH_SECONDS (seconds recorded per run, default 20),
#              SH_BENCH_REPEATS (runs, default 3; rates are their medians,
#              leaf shares pool their samples),
#              SH_BENCH_WORKLOADS (dir with mixload, default BUILD_DIR/tests/bench),
#              SH_BENCH_SHORTLIVED (1: the short-lived process load, default;
#              0: only the burner and mixload),
#              SH_BENCH_KEEP=1 keeps the temp dir (folded stacks, perf.data).
#
# Never fails on time: exits 0 when both tools ran, 1 when something broke,
# 2 on bad usage or a missing binary, 77 when not root or without 2 CPUs.
set -u

BUILD=${1:-/work/main/build}
SECS=${SH_BENCH_SECONDS:-20}
REPEATS=${SH_BENCH_REPEATS:-3}
WL=${SH_BENCH_WORKLOADS:-$BUILD/tests/bench}
SHORTLIVED=${SH_BENCH_SHORTLIVED:-1}
AGENT=$BUILD/node-agent/spikehound-agent
BURNER=$BUILD/tests/integration/burner
MIXLOAD=$WL/mixload
PERF=${PERF:-perf}

for f in "$AGENT" "$BURNER" "$MIXLOAD"; do
	if [ ! -x "$f" ]; then
		echo "agent_vs_perf.sh: \"$f\" is missing (build spikehound-agent, burner and mixload first)" >&2
		exit 2
	fi
done
if ! command -v "$PERF" >/dev/null; then
	echo "agent_vs_perf.sh: perf is missing (apt-get install linux-perf)" >&2
	exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "agent_vs_perf.sh: needs root (BPF sampler, perf -a)" >&2
	exit 77
fi
if [ "$SHORTLIVED" = 1 ] && ! command -v gcc >/dev/null; then
	echo "agent_vs_perf.sh: gcc is missing (the short-lived load compiles C; or SH_BENCH_SHORTLIVED=0)" >&2
	exit 2
fi
if [ "$(nproc)" -lt 2 ]; then
	echo "agent_vs_perf.sh: needs CPUs 0 and 1" >&2
	exit 77
fi

TMP=$(mktemp -d /tmp/sh-vsperf-XXXXXX) || exit 1
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null
	done
	if [ "${SH_BENCH_KEEP:-0}" = 1 ]; then
		echo "agent_vs_perf.sh: kept $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT

echo "agent_vs_perf.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n), $(nproc) CPUs, kernel $(uname -r), $("$PERF" --version)"
echo "agent_vs_perf.sh: burner on cpu 1, mixload on cpu 0$([ "$SHORTLIVED" = 1 ] && echo ", short-lived processes unpinned"); both tools record $SECS s at 99 Hz (cpu-clock), $REPEATS runs"

# The short-lived load's sources: 4 files of 40 small functions each, so
# that one cc1 lives ~0.1-0.5 s.
if [ "$SHORTLIVED" = 1 ]; then
	mkdir -p "$TMP/cc"
	for f in 1 2 3 4; do
		for i in $(seq 40); do
			printf 'int f%d_%d(int *v, int n) { int s = %d; for (int i = 0; i < n; i++) { s += v[i] * %d; if (s > %d) s ^= v[(i * 7) %% n]; } return s; }\n' \
				"$f" "$i" "$i" "$((i * f + 3))" "$((i * 1000))"
		done >"$TMP/cc/u$f.c"
	done
fi

# shortlived_load DIR: starts short-lived processes until DIR/stop exists.
shortlived_load() {
	local d=$1 f
	while [ ! -e "$d/stop" ]; do
		sh -c true
		ls -l /usr/bin >/dev/null
		env true
		for f in 1 2 3 4; do
			gcc -O2 -c -o "$d/u$f.o" "$TMP/cc/u$f.c" &
		done
		wait
	done
}

# run_once DIR: one run; leaves in DIR: agent.counts / perf.counts ("count
# leaf"), agent.unknown / perf.unknown ("count module" of [unknown] leaves),
# rates ("tool cpu samples/s", idle excluded).
run_once() {
	local d=$1 apid ppid arc prc p awin pwin plost
	mkdir -p "$d"
	"$BURNER" $((SECS + 4)) 1 >/dev/null 2>&1 &
	PIDS+=($!)
	"$MIXLOAD" $((SECS + 4)) 0 >/dev/null 2>&1 &
	PIDS+=($!)
	if [ "$SHORTLIVED" = 1 ]; then
		shortlived_load "$d" >/dev/null 2>&1 &
		PIDS+=($!)
	fi
	sleep 1
	"$AGENT" record --seconds "$SECS" --folded >"$d/agent.folded" 2>"$d/agent.err" &
	apid=$!
	"$PERF" record -F 99 -e cpu-clock -g -a -o "$d/perf.data" -- sleep "$SECS" \
		>"$d/perf.out" 2>"$d/perf.err" &
	ppid=$!
	wait $apid
	arc=$?
	wait $ppid
	prc=$?
	: >"$d/stop"
	for p in "${PIDS[@]}"; do
		wait "$p"
	done
	PIDS=()
	if [ $arc -ne 0 ] || [ $prc -ne 0 ]; then
		echo "agent_vs_perf.sh: record exited $arc, perf record exited $prc" >&2
		cat "$d/agent.err" "$d/perf.err" >&2
		return 1
	fi

	# One line per perf sample: "cpu pid leaf<TAB>module" (the leaf is
	# the first callchain line: "addr sym (dso)").
	"$PERF" script -i "$d/perf.data" -F comm,pid,cpu,ip,sym,dso 2>/dev/null | awk '
		/^[^ \t]/ { cpu = $NF; gsub(/[][]/, "", cpu); pid = $(NF - 1); want = 1; next }
		want && /^[ \t]/ {
			sub(/^[ \t]*[0-9a-f]+ /, "")
			dso = ""
			if (match($0, / \([^()]*\)$/)) {
				dso = substr($0, RSTART + 2, RLENGTH - 3)
				$0 = substr($0, 1, RSTART - 1)
			}
			print cpu, pid, $0 "\t" dso
			want = 0
		}' >"$d/perf.leaves"
	if [ ! -s "$d/perf.leaves" ]; then
		echo "agent_vs_perf.sh: perf script gave no samples" >&2
		return 1
	fi

	# The agent's leaves from its folded stacks ("comm;outer;...;leaf
	# count"; frames may hold spaces, "name [module]" for kernel modules);
	# idle stacks are the swapper/N tasks.
	awk '{
		n = $NF
		s = $0
		sub(/ [0-9]+$/, "", s)
		k = split(s, f, ";")
		if (f[1] ~ /^swapper\//)
			next
		leaf = k > 1 ? f[k] : "[unknown]"
		sub(/ \[[^]]*\]$/, "", leaf) # kernel module
		if (leaf ~ /^\[unknown\]/) {
			mod = leaf ~ /^\[unknown\] \(/ ? substr(leaf, 12, length(leaf) - 12) : "[unknown]"
			u[mod] += n
			leaf = "[unknown]"
		}
		c[leaf] += n
	}
	END {
		for (l in c)
			print c[l], l
		for (m in u)
			print u[m], m >"/dev/fd/3"
	}' "$d/agent.folded" >"$d/agent.counts" 3>"$d/agent.unknown"
	awk -F '\t' '{
		split($1, h, " ")
		if (h[2] == 0)
			next
		leaf = substr($1, length(h[1]) + length(h[2]) + 3)
		c[leaf]++
		if (leaf == "[unknown]")
			u[$2 == "" ? "[unknown]" : $2]++
	}
	END {
		for (l in c)
			print c[l], l
		for (m in u)
			print u[m], m >"/dev/fd/3"
	}' "$d/perf.leaves" >"$d/perf.counts" 3>"$d/perf.unknown"

	# Rates over each tool's window: the agent's recording time (its
	# per-CPU non-idle counts are on its stderr), perf's first to last
	# sample.
	awin=$(sed -n 's/^record: \([0-9.]*\) s, .*/\1/p' "$d/agent.err")
	pwin=$("$PERF" report --header-only -i "$d/perf.data" 2>/dev/null |
		sed -n 's/^# sample duration : *\([0-9.]*\) ms.*/\1/p' | awk '{ print $1 / 1000 }')
	[ -n "$pwin" ] || pwin=$SECS
	{
		sed -n 's/^record: cpu \([0-9]*\): .*; \([0-9]*\) not idle.*/\1 \2/p' "$d/agent.err" |
			awk -v w="$awin" '{ printf "agent %d %.3f\n", $1, $2 / w }'
		awk -v w="$pwin" '$2 != 0 { c[$1 + 0]++ } END { for (k in c) printf "perf %d %.3f\n", k, c[k] / w }' \
			"$d/perf.leaves"
	} >"$d/rates"
	plost=$(grep -i 'lost' "$d/perf.err" | head -n 1)
	printf "  run %s: agent %s (window %s s), perf %s samples%s (window %s s)\n" "${d##*/run}" \
		"$(sed -n 's/^record: [0-9.]* s, \([0-9]* samples, [0-9]* lost\).*/\1/p' "$d/agent.err")" \
		"$awin" "$(wc -l <"$d/perf.leaves")" "${plost:+, perf says: $plost}" "$pwin"
}

for i in $(seq "$REPEATS"); do
	run_once "$TMP/run$i" || exit 1
done
sed 's/^/  last run: /' "$TMP/run$REPEATS/agent.err"

# Pool the runs' leaf counts.
for f in agent.counts perf.counts agent.unknown perf.unknown; do
	cat "$TMP"/run*/"$f" | awk '{ n = $1; $1 = ""; sub(/^ /, ""); c[$0] += n }
		END { for (l in c) print c[l], l }' >"$TMP/$f"
done
for i in $(seq "$REPEATS"); do
	sed "s/^/$i /" "$TMP/run$i/rates"
done >"$TMP/rates"

echo
echo "1. samples per CPU per second, idle excluded: median of $REPEATS runs (target: agent within 5% of perf)"
awk '
function median(k,    n, i, j, v, t) {
	n = cnt[k]
	for (i = 1; i <= n; i++)
		v[i] = val[k, i]
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && v[j - 1] > v[j]; j--) {
			t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
		}
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
{
	k = $2 SUBSEP $3
	val[k, ++cnt[k]] = $4
	cpus[$3] = 1
	runs[$1] = 1
	sum[$1, $2] += $4
	ncpu[$1, $2]++
}
END {
	printf "  %-8s %10s %10s %9s\n", "cpu", "agent/s", "perf/s", "diff"
	for (c = 0; c < 4096; c++) {
		if (!(c in cpus))
			continue
		ra = median("agent" SUBSEP c)
		rp = median("perf" SUBSEP c)
		printf "  %-8s %10.1f %10.1f %+8.1f%%\n", c, ra, rp, rp ? 100 * (ra - rp) / rp : 0
	}
	for (r in runs) {
		val["agent" SUBSEP "mean", ++cnt["agent" SUBSEP "mean"]] = sum[r, "agent"] / ncpu[r, "agent"]
		val["perf" SUBSEP "mean", ++cnt["perf" SUBSEP "mean"]] = sum[r, "perf"] / ncpu[r, "perf"]
		ma = sum[r, "agent"] / ncpu[r, "agent"]
		mp = sum[r, "perf"] / ncpu[r, "perf"]
		dd = 100 * (ma - mp) / mp
		val["d" SUBSEP "mean", ++cnt["d" SUBSEP "mean"]] = dd
		per = per sprintf(" %+.1f%%", dd)
	}
	ra = median("agent" SUBSEP "mean")
	rp = median("perf" SUBSEP "mean")
	d = median("d" SUBSEP "mean")
	printf "  %-8s %10.1f %10.1f %+8.1f%%   %s\n", "mean", ra, rp, d,
	       (d <= 5 && d >= -5) ? "target holds" : "target MISSED"
	printf "  (mean diff per run:%s; the diff shown is their median)\n", per
}' "$TMP/rates"

echo
echo "2. top-10 leaf functions, % of non-idle samples, $REPEATS runs pooled (target: within 3 pp of perf)"
awk '
	{ n = $1; $1 = ""; sub(/^ /, "") }
	FILENAME ~ /\/agent\.counts$/ { a[$0] = n; ta += n; names[$0] = 1; next }
	{ p[$0] = n; tp += n; names[$0] = 1 }
	END {
		for (f in names) {
			sa[f] = ta ? 100 * a[f] / ta : 0
			sp[f] = tp ? 100 * p[f] / tp : 0
		}
		printf "  %-36s %8s %8s %9s\n", "function", "agent %", "perf %", "diff pp"
		for (r = 1; r <= 10; r++) {
			best = ""
			for (f in names)
				if (!(f in done) && (best == "" || sa[f] + sp[f] > sa[best] + sp[best]))
					best = f
			if (best == "")
				break
			done[best] = 1
			d = sa[best] - sp[best]
			if (d * d > max * max)
				max = d
			printf "  %-36s %8.2f %8.2f %+9.2f\n", substr(best, 1, 36), sa[best], sp[best], d
		}
		printf "  %-36s %8d %8d\n", "(non-idle samples)", ta, tp
		printf "  largest difference %+.2f pp: %s\n", max,
		       (max <= 3 && max >= -3) ? "target holds" : "target MISSED"
	}' "$TMP/agent.counts" "$TMP/perf.counts"

# Where the [unknown] leaves are: unresolved symbols (stripped binaries,
# no debug files) rather than sampling.
echo
echo "   [unknown] leaves by module, % of non-idle samples (top 6)"
awk '
	{ f = FILENAME ~ /\/agent\.[a-z]*$/ ? 1 : 2; n = $1; $1 = ""; sub(/^ /, "") }
	FILENAME ~ /counts$/ { t[f] += n; next }
	{ v[f, $0] = n; names[$0] = 1 }
	END {
		printf "  %-52s %8s %8s\n", "module", "agent %", "perf %"
		for (r = 1; r <= 6; r++) {
			best = ""
			for (m in names)
				if (!(m in done) && (best == "" ||
				    v[1, m] + v[2, m] > v[1, best] + v[2, best]))
					best = m
			if (best == "")
				break
			done[best] = 1
			printf "  %-52s %8.2f %8.2f\n", substr(best, length(best) > 52 ? length(best) - 51 : 1),
			       t[1] ? 100 * v[1, best] / t[1] : 0, t[2] ? 100 * v[2, best] / t[2] : 0
		}
	}' "$TMP/agent.counts" "$TMP/perf.counts" "$TMP/agent.unknown" "$TMP/perf.unknown"
exit 0
