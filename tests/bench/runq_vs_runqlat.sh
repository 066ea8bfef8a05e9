#!/usr/bin/env bash
# runq_vs_runqlat.sh: the agent's run-queue latency histogram next to a
# peer's on the same workload (issue 4 item 4), then what each costs.
#
# Workload (DURATION seconds, on the last CPU): repro_d_pingpong (a pair of
# threads passing a token every 500 us), repro_d_hog as SCHED_FIFO (30 ms
# bursts every 200 ms) and a second repro_d_hog spinning non-stop at nice
# -20 in the normal class, so the waits spread from microseconds to tens
# of milliseconds. While it runs, both measure every run-queue wait on the
# whole machine:
#   - spikehound-agent (only the "runq" detector): its per-CPU histogram
#     map "hist" is read with bpftool before and after (the same numbers
#     agent_det_runq_histogram puts into the summaries);
#   - the peer: bcc's runqlat-bpfcc when it can run here (it compiles its
#     BPF at run time and needs kernel headers: /lib/modules/$(uname
#     -r)/build or CONFIG_IKHEADERS), else the CO-RE build of the same tool
#     from libbpf-tools (/usr/sbin/runqlat), else a bpftrace one-liner.
# Both use log2 buckets of microseconds (bucket i: [2^i, 2^(i+1)) us, 0 and
# 1 us in bucket 0). Printed: both histograms side by side, and whether
# the p50 and p99 fall in the same or an adjacent bucket.
# The waits differ in where they start: the agent starts a wakeup's wait at
# sched_waking (the waker's try_to_wake_up), runqlat at sched_wakeup (once
# the task is queued), so the agent's waits also hold the wakeup's own path
# (a remote wakeup is queued to the target CPU by IPI: tens of us in a VM),
# which moves some waits up one bucket at the low end; both start
# preemptions at sched_switch. The peer starts its window first and the
# agent's histogram map is read when the peer has attached (its output is
# line-buffered with stdbuf, else "Tracing..." shows only at its exit).
#
# Cost: `perf bench sched pipe` (two tasks waking each other, all wakeups
# and context switches) run alone, under the agent (runq only; waker
# stacks when the wakee's CPU is busy as by default, for every wakeup, none:
# SH_RUNQ_WAKER_STACKS=1/2/0) and under the peer, in usecs/op.
#
# usage: tests/bench/runq_vs_runqlat.sh [BUILD_DIR [DURATION]]
#        BUILD_DIR default /work/main/build, DURATION default 15 seconds.
# Needs root, bpftool and python3; exits 77 when not root. Prints figures,
# never fails on them.
set -u

BUILD=${1:-/work/main/build}
DURATION=${2:-15}
AGENT=$BUILD/node-agent/spikehound-agent
BIN=$BUILD/tests/scenarios
PINGPONG=$BIN/repro_d_pingpong
HOG=$BIN/repro_d_hog
CPU=$(($(nproc) - 1))
TMP=$(mktemp -d /tmp/runq-bench.XXXXXX)
PIDS=""

cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	for p in $PIDS; do wait "$p" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
for f in "$AGENT" "$PINGPONG" "$HOG"; do
	[ -x "$f" ] || { echo "missing $f (build spikehound-agent and the scenario reproducers)"; exit 2; }
done
command -v bpftool >/dev/null || { echo "missing bpftool"; exit 2; }

# --- the peer
PEER=""
PEER_NAME=""
if command -v runqlat-bpfcc >/dev/null; then
	if timeout 60 runqlat-bpfcc 1 1 >"$TMP/bcc.try" 2>&1 && grep -q 'usecs' "$TMP/bcc.try"; then
		PEER="runqlat-bpfcc"
		PEER_NAME="bcc runqlat-bpfcc"
	else
		echo "bcc's runqlat-bpfcc cannot run here: $(grep -m1 -i 'unable\|error\|failed' "$TMP/bcc.try")"
		echo "  (bcc compiles its BPF program at run time against kernel headers; this kernel"
		echo "   $(uname -r) ships none: no /lib/modules/$(uname -r)/build, no CONFIG_IKHEADERS)"
	fi
fi
if [ -z "$PEER" ] && [ -x /usr/sbin/runqlat ]; then
	PEER=/usr/sbin/runqlat
	PEER_NAME="libbpf-tools runqlat (bcc's runqlat as CO-RE, BTF instead of headers)"
fi
if [ -z "$PEER" ] && command -v bpftrace >/dev/null; then
	PEER=bpftrace
	PEER_NAME="bpftrace one-liner (sched_wakeup/_new, sched_switch)"
fi
[ -n "$PEER" ] || { echo "no peer: install bpfcc-tools, libbpf-tools or bpftrace"; exit 2; }
echo "peer: $PEER_NAME"

# run_peer SECONDS OUT: the peer's histogram of SECONDS into OUT (the
# peer replaces the calling shell: run it with & and $! is the peer).
run_peer() {
	case $PEER in
	bpftrace)
		exec stdbuf -oL timeout -s INT $(($1 + 5)) bpftrace -e '
tracepoint:sched:sched_wakeup, tracepoint:sched:sched_wakeup_new { @q[args->pid] = nsecs; }
tracepoint:sched:sched_switch {
	if (args->prev_state == 0 && args->prev_pid != 0) { @q[args->prev_pid] = nsecs; }
	$t = @q[args->next_pid];
	if ($t) { @usecs = hist((nsecs - $t) / 1000); delete(@q[args->next_pid]); }
}
interval:s:'"$1"' { print(@usecs); clear(@q); exit(); }' >"$2" 2>&1
		;;
	*)
		exec stdbuf -oL "$PEER" "$1" 1 >"$2" 2>&1
		;;
	esac
}

# sched_waking_ids: ids of the loaded BPF programs named sched_waking.
sched_waking_ids() {
	bpftool -j prog show | python3 -c '
import json, sys
print(" ".join(str(p["id"]) for p in json.load(sys.stdin) if p.get("name") == "sched_waking"))'
}

# start_agent [VAR=VALUE...]: the agent with only the runq detector; sets
# APID and BEFORE (the sched_waking programs loaded before it).
start_agent() {
	BEFORE=" $(sched_waking_ids) "
	env "$@" "$AGENT" run --aggregator tcp://127.0.0.1:1 --spool-dir "$TMP/spool" \
		--spool-fsync false --detectors runq --interval 10s >"$TMP/agent.log" 2>&1 &
	APID=$!
	PIDS="$PIDS $APID"
	for _ in $(seq 1 100); do grep -q 'spike detectors running' "$TMP/agent.log" && break; sleep 0.1; done
	grep -q 'spike detectors running: runq' "$TMP/agent.log" ||
		{ echo "the agent's runq detector did not start:"; tail "$TMP/agent.log"; exit 1; }
}

stop_agent() {
	kill "$APID" 2>/dev/null
	wait "$APID" 2>/dev/null
}

# --- the agent
start_agent
# hist_map_id: the id of the agent's "hist" map: the map of that name
# loaded with (same BTF object as) the sched_waking program that appeared
# with the agent (bpftool here may not tell which process holds what).
hist_map_id() {
	local id
	for id in $(sched_waking_ids); do
		case $BEFORE in *" $id "*) continue ;; esac
		bpftool -j prog show id "$id" >"$TMP/prog.json"
		bpftool -j map show | python3 -c '
import json, sys
btf = json.load(open(sys.argv[1])).get("btf_id")
for m in json.load(sys.stdin):
    if m.get("name") == "hist" and m.get("btf_id") == btf:
        print(m["id"])' "$TMP/prog.json" | grep . && return
	done
}
HIST=$(hist_map_id)
[ -n "$HIST" ] || { echo "could not find the agent's runq histogram map"; exit 1; }

# agent_hist OUT: the map's per-CPU slots, summed, one line of numbers.
agent_hist() {
	bpftool -j map lookup id "$HIST" key 0 0 0 0 | python3 -c '
import json, struct, sys
d = json.load(sys.stdin)
tot = [0] * 32
cnt = 0
for v in d["values"]:
    val = v["value"]
    if isinstance(val, list):  # raw bytes: struct sh_runq_hist
        raw = bytes(int(b, 16) for b in val)
        val = struct.unpack("<34Q", raw[:34 * 8])
        val = {"slots": val[:32], "count": val[32]}
    for i, s in enumerate(val["slots"]):
        tot[i] += s
    cnt += val["count"]
print(" ".join(map(str, tot + [cnt])))' >"$1"
}

# --- workload + both measurements
echo "workload: ${DURATION} s on CPU $CPU: repro_d_pingpong (500 us), repro_d_hog fifo 30/200 ms, repro_d_hog nice -20 non-stop"
"$HOG" $CPU $((DURATION + 4)) 30 200 fifo >/dev/null &
W1=$!
"$HOG" $CPU $((DURATION + 4)) 1000 1000 nice >/dev/null &
W2=$!
"$PINGPONG" $CPU $((DURATION + 4)) 500 >"$TMP/pingpong.out" &
W3=$!
PIDS="$PIDS $W1 $W2 $W3"
sleep 1
# The peer first; both windows open once it has attached.
run_peer "$DURATION" "$TMP/peer.out" &
PEERPID=$!
PIDS="$PIDS $PEERPID"
for _ in $(seq 1 300); do grep -q 'Tracing\|Attaching' "$TMP/peer.out" 2>/dev/null && break; sleep 0.1; done
agent_hist "$TMP/a0"
sleep "$DURATION"
agent_hist "$TMP/a1"
wait $PEERPID
wait $W1 $W2 $W3
echo "ping-pong: $(cat "$TMP/pingpong.out")"

python3 - "$TMP/a0" "$TMP/a1" "$TMP/peer.out" "$PEER_NAME" <<'EOF'
import re, sys
a0 = list(map(int, open(sys.argv[1]).read().split()))
a1 = list(map(int, open(sys.argv[2]).read().split()))
agent = [y - x for x, y in zip(a0[:32], a1[:32])]
peer = [0] * 32
for line in open(sys.argv[3]):
    m = re.match(r'\s*(\d+)\s*->\s*(\d+)\s*:\s*(\d+)', line)          # runqlat
    b = re.match(r'\s*\[(\d+)(K|M|G)?,\s*(\d+)(K|M|G)?\)\s+(\d+)', line)  # bpftrace
    if m:
        lo, n = int(m.group(1)), int(m.group(3))
    elif b or re.match(r'\s*\[0\]\s+(\d+)', line):
        if b:
            mult = {"K": 1024, "M": 1 << 20, "G": 1 << 30, None: 1}
            lo, n = int(b.group(1)) * mult[b.group(2)], int(b.group(5))
        else:
            lo, n = 0, int(re.match(r'\s*\[0\]\s+(\d+)', line).group(1))
    else:
        continue
    i = lo.bit_length() - 1 if lo > 1 else 0
    peer[min(i, 31)] += n

def pct_bucket(h, p):
    total = sum(h)
    if not total:
        return None
    acc = 0
    for i, n in enumerate(h):
        acc += n
        if acc >= p * total:
            return i
def label(i):
    return "%d -> %d" % (0 if i == 0 else 1 << i, (1 << (i + 1)) - 1)

last = max([i for i in range(32) if agent[i] or peer[i]] + [0])
print("\n%-22s %12s %12s" % ("usecs", "spikehound", "peer"))
for i in range(last + 1):
    print("%-22s %12d %12d" % (label(i), agent[i], peer[i]))
print("%-22s %12d %12d" % ("total", sum(agent), sum(peer)))
for name, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)):
    a, q = pct_bucket(agent, p), pct_bucket(peer, p)
    if a is None or q is None:
        print("%s: no data" % name)
        continue
    rel = "same bucket" if a == q else "adjacent buckets" if abs(a - q) == 1 else "%d buckets apart" % abs(a - q)
    print("%-5s spikehound [%s] us, peer [%s] us: %s" % (name, label(a), label(q), rel))
print("(peer: %s)" % sys.argv[4])
EOF

# --- cost: perf bench sched pipe alone, under the agent, under the peer
# Two figures each: perf's usecs/op (the whole cost, but noisy on a shared
# machine), and the BPF time per op from the kernel's own accounting
# (kernel.bpf_stats_enabled: run_time_ns of the tool's programs over the
# ops run), steadier. Both grow with the machine's load: compare the rows
# of one run. Every program on the same hooks
# runs during these ops, other tools' too (other agents on the machine).
if command -v perf >/dev/null; then
	LOOPS=${SH_BENCH_PIPE_LOOPS:-200000}
	STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
	sysctl -qw kernel.bpf_stats_enabled=1
	pipe_us() { perf bench sched pipe -l "$LOOPS" 2>/dev/null | awk '/usecs\/op/ {print $1}'; }
	med3() { for _ in 1 2 3; do pipe_us; done | sort -n | sed -n 2p; }
	prog_ids() { bpftool -j prog show | python3 -c '
import json, sys
print(" ".join(str(p["id"]) for p in json.load(sys.stdin)))'; }
	# bpf_ns IDS: run_time_ns summed over the programs IDS
	bpf_ns() {
		bpftool -j prog show | python3 -c '
import json, sys
ids = set(sys.argv[1].split())
print(sum(p.get("run_time_ns", 0) for p in json.load(sys.stdin) if str(p["id"]) in ids))' "$1"
	}
	# agent_progs: the ids of the programs loaded with (same BTF object as)
	# the agent's new sched_waking program
	agent_progs() {
		local id
		for id in $(sched_waking_ids); do
			case $BEFORE in *" $id "*) continue ;; esac
			bpftool -j prog show | python3 -c '
import json, sys
progs = json.load(sys.stdin)
btf = [p.get("btf_id") for p in progs if str(p["id"]) == sys.argv[1]][0]
print(" ".join(str(p["id"]) for p in progs if p.get("btf_id") == btf))' "$id"
			return
		done
	}
	# new_sched_progs OLD_IDS: sched programs loaded since OLD_IDS (the peer's)
	new_sched_progs() {
		bpftool -j prog show | python3 -c '
import json, sys
old = set(sys.argv[1].split())
print(" ".join(str(p["id"]) for p in json.load(sys.stdin)
               if str(p["id"]) not in old and "sched" in p.get("name", "")))' "$1"
	}
	# measure NAME IDS: med3 usecs/op, and BPF ns/op of the programs IDS
	measure() {
		local b0 b1 us
		b0=$(bpf_ns "$2")
		us=$(med3)
		b1=$(bpf_ns "$2")
		if [ -n "$2" ]; then
			echo "$1|$us|$(((b1 - b0) / (3 * LOOPS)))" >>"$TMP/cost"
		else
			echo "$1|$us|-" >>"$TMP/cost"
		fi
	}
	echo
	echo "cost: perf bench sched pipe -l $LOOPS (two tasks waking each other: an op is 2 wakeups"
	echo "and 2 context switches), usecs/op (median of 3) and BPF ns per op"
	measure "spikehound runq (waker stacks: busy CPU)" "$(agent_progs)"
	stop_agent
	start_agent SH_RUNQ_WAKER_STACKS=2
	measure "spikehound runq (waker stacks: every wakeup)" "$(agent_progs)"
	stop_agent
	start_agent SH_RUNQ_WAKER_STACKS=0
	measure "spikehound runq (no waker stacks)" "$(agent_progs)"
	stop_agent
	measure "alone" ""
	OLD=$(prog_ids)
	run_peer 600 "$TMP/peer-cost.out" &
	PPID2=$!
	PIDS="$PIDS $PPID2"
	for _ in $(seq 1 300); do grep -q 'Tracing\|Attaching' "$TMP/peer-cost.out" 2>/dev/null && break; sleep 0.1; done
	measure "peer $PEER" "$(new_sched_progs "$OLD")"
	kill -INT $PPID2 2>/dev/null
	wait $PPID2 2>/dev/null
	sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS"
	python3 - "$TMP/cost" <<'EOF2'
import sys
rows = [l.rstrip("\n").split("|") for l in open(sys.argv[1])]
alone = float([r for r in rows if r[0] == "alone"][0][1])
for name, us, bpf in rows:
    us = float(us)
    extra = "" if name == "alone" else "%+6.2f us/op (%+3.0f%%)" % (us - alone, (us - alone) / alone * 100)
    print("  %-46s %7.2f %-22s BPF %5s ns/op" % (name, us, extra, bpf))
print("  (both vary with the load of a shared machine: compare the rows of one run)")
EOF2
fi
