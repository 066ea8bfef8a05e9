#!/usr/bin/env bash
# test_record_burner.sh: the sampler end to end on the real kernel. Runs a
# CPU burner pinned to CPU 1 while `record --seconds 5` samples, and checks
# that CPU 1's samples name the burner with spikehound_burn_hot resolved,
# that the busy CPU is sampled at about 99 Hz, and that kernel frames are
# symbolized. Needs root and BTF (exit 77 otherwise).
# Usage: test_record_burner.sh RECORD_DRIVER BURNER
set -u

agent=$1
burner=$2
secs=5

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || skip "needs root to load BPF programs"
[ -r /sys/kernel/btf/vmlinux ] || skip "kernel has no BTF (/sys/kernel/btf/vmlinux)"
online=$(cat /sys/devices/system/cpu/online 2>/dev/null || echo 0)
case ",$online," in
  *,1,*|*,0-[1-9]*|*-[1-9]*) ;;
  *) skip "needs CPU 1 online (online: $online)" ;;
esac
[ -r /proc/kallsyms ] || skip "/proc/kallsyms not readable"

tmp=$(mktemp -d)
trap 'kill $bpid 2>/dev/null; rm -rf "$tmp"' EXIT

# Top priority, so other work on a busy machine (parallel builds and tests,
# possibly in other cgroups, where nice does not reach) cannot take more
# than a sliver of CPU 1 from the burner: SCHED_FIFO (RT throttling still
# leaves others 5%), else nice -20.
prio=(nice -n -20)
if command -v chrt >/dev/null && chrt -f 1 true 2>/dev/null; then
  prio=(chrt -f 1)
fi
# One more attempt when the attribution misses only because other load
# (another job on a shared machine) took part of CPU 1.
soft_fail() {
  if [ "$try" -lt 2 ]; then
    echo "attempt $try: $*: measuring again"
    again=1
  else
    fail "$*"
  fi
}
for try in 1 2; do
again=0
# It outlives the recordings (their start-up is slow in sanitizer builds)
# and is stopped right after them.
"${prio[@]}" "$burner" $((secs + 15)) 1 &
bpid=$!
sleep 0.5

# Folded stacks of CPU 1 only, and JSON of every CPU, at the same time.
"$agent" record --seconds $secs --folded --cpu 1 >"$tmp/folded" 2>"$tmp/folded.err" &
fpid=$!
"$agent" record --seconds $secs --json >"$tmp/json" 2>"$tmp/json.err"
jrc=$?
wait $fpid
frc=$?
kill $bpid 2>/dev/null
cat "$tmp/folded.err" "$tmp/json.err"
[ $frc -eq 0 ] || fail "record --folded exited $frc"
[ $jrc -eq 0 ] || fail "record --json exited $jrc"

# Folded format: "frame;frame;... count", sorted by count (descending).
awk 'BEGIN { prev = -1 }
     !/^[^ ;][^;]*(;[^;]+)* [0-9]+$/ { print "bad folded line: " $0; bad = 1 }
     { n = $NF; if (prev >= 0 && n > prev) { print "not sorted at: " $0; bad = 1 } prev = n }
     END { exit bad }' "$tmp/folded" || fail "folded output malformed"

read -r total hot <<<"$(awk '{ t += $NF } /^burner;/ && /;spikehound_burn_hot[; ]/ { h += $NF }
                            END { printf "%d %d\n", t, h }' "$tmp/folded")"
echo "cpu 1: $total samples in ${secs} s (expected ~$((99 * secs))), burner in spikehound_burn_hot: $hot"
[ "$total" -ge $((99 * secs * 7 / 10)) ] || fail "too few samples on the busy CPU: $total"
[ $((hot * 100)) -ge $((total * 80)) ] || soft_fail "burner attribution $((hot * 100 / total))% < 80%"
echo "burner attribution: $((hot * 100 / total))%"

[ "$again" -eq 1 ] && continue
# JSON: one sample per line; check CPU 1 there too, and kernel symbols.
[ "$again" -eq 1 ] && continue
grep -q '"clock_offset_ns"' "$tmp/json" || fail "json header missing"
grep -q '"events":\[' "$tmp/json" || fail "json events missing"
grep '"kernel_stack":' "$tmp/json" | grep '"cpu":1,"pid"' >"$tmp/cpu1"
jtotal=$(wc -l <"$tmp/cpu1")
jhot=$(grep '"comm":"burner"' "$tmp/cpu1" | grep -c '"name":"spikehound_burn_hot"')
echo "json: cpu 1 samples $jtotal, burner hot $jhot"
[ "$jtotal" -gt 0 ] && [ $((jhot * 100)) -ge $((jtotal * 80)) ] || soft_fail "json burner attribution too low"
sed -n 's/.*"kernel_stack":\(.*\),"user_stack":.*/\1/p' "$tmp/json" |
  grep -o '"name":"[^"]*"' | sed 's/"name":"//; s/"$//' | sort -u >"$tmp/kframes"
awk 'NR == FNR { if ($2 ~ /^[tTwW]$/) k[$3] = 1; next }
     { sub(/ \[.*\]$/, "") } ($0 in k) { n++ }
     END { print "kernel frames symbolized: " n + 0; exit !(n >= 5) }' /proc/kallsyms "$tmp/kframes" ||
  fail "kernel frames not symbolized"
grep -q '"build_id":"[0-9a-f]*"' "$tmp/json" || fail "no build id on user frames"
[ "$again" -eq 1 ] && continue
break
done
echo "PASS"
