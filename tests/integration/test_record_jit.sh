#!/usr/bin/env bash
# test_record_jit.sh: JIT code named from the process's perf map, on the
# real kernel. jit_spin generates an endless loop at run time in anonymous
# executable memory, announces it in /tmp/perf-PID.map (as the JVM with
# perf-map-agent, Node.js --perf-basic-prof or Python -X perf do) and spins
# on CPU 1 while `spikehound-agent record --seconds 3 --folded --cpu 1`
# samples: its samples must end in jit_spin_loop, as perf would name them.
# Needs root and BTF (exit 77 otherwise).
# Usage: test_record_jit.sh AGENT JIT_SPIN
set -u

agent=$1
jit=$2
secs=3

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || skip "needs root to load BPF programs"
[ -r /sys/kernel/btf/vmlinux ] || skip "kernel has no BTF (/sys/kernel/btf/vmlinux)"
[ "$(nproc)" -ge 2 ] || skip "needs CPU 1"

tmp=$(mktemp -d)
jpid=""
trap '[ -n "$jpid" ] && kill $jpid 2>/dev/null; rm -rf "$tmp"' EXIT

prio=(nice -n -20)
if command -v chrt >/dev/null && chrt -f 1 true 2>/dev/null; then
	prio=(chrt -f 1)
fi
for try in 1 2; do
	"${prio[@]}" "$jit" $((secs + 15)) 1 &
	jpid=$!
	sleep 0.5
	[ -f "/tmp/perf-$jpid.map" ] || fail "jit_spin wrote no /tmp/perf-$jpid.map"
	"$agent" record --seconds $secs --folded --cpu 1 >"$tmp/folded" 2>"$tmp/err"
	rc=$?
	kill $jpid 2>/dev/null
	wait $jpid 2>/dev/null
	jpid=""
	[ $rc -eq 0 ] || fail "record exited $rc: $(cat "$tmp/err")"
	read -r all named unknown <<<"$(awk '/^jit_spin;/ { a += $NF; if ($(NF-1) ~ /(^|;)jit_spin_loop$/) n += $NF; if ($0 ~ /\[unknown\]/) u += $NF }
		END { printf "%d %d %d\n", a, n, u }' "$tmp/folded")"
	echo "attempt $try: jit_spin on CPU 1: $all samples, $named ending in jit_spin_loop, $unknown with an [unknown] frame"
	head -n 3 "$tmp/folded"
	if [ "$all" -ge $((99 * secs / 2)) ] && [ $((named * 100)) -ge $((all * 90)) ]; then
		echo "PASS: $((named * 100 / all))% of jit_spin's samples named from its perf map"
		exit 0
	fi
done
fail "jit_spin's samples not named from its perf map ($named of $all)"
