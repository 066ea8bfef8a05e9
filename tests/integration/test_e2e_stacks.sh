#!/usr/bin/env bash
# test_e2e_stacks.sh: end to end through the whole pipe. The real agent
# samples this machine while a frame-pointer CPU burner runs; its summaries
# travel over nng to the real aggregator and PostgreSQL; then
# `spikehound stacks --host <this host> --from -60s --to now --folded` must
# return the burner's stacks with its hot function resolved; and the agent
# must have done it without the capabilities it drops after loading BPF.
# Usage: test_e2e_stacks.sh BURNER   (env: SH_BUILD, SH_TEST_DSN_FILE)
source "$(dirname "$0")/../scenarios/lib.sh"
burner=$1
sh_require_root_bpf
sh_start
host=$(hostname)

sh_log "burning CPU 1 for 6 s with $burner"
"$burner" 6 1 >/dev/null 2>&1 &
bpid=$!
SH_PIDS="$SH_PIDS $bpid"
wait "$bpid" 2>/dev/null
sleep 5 # the summary that covers the end of the burn, plus delivery

out="$SH_DIR/stacks.folded"
"$SH_CLI" --server "$SH_HTTP" stacks --host "$host" --from -60s --to now --folded >"$out" ||
	sh_fail "spikehound stacks failed"
total=$(awk '{s += $NF} END {print s + 0}' "$out")
hot=$(grep -F 'spikehound_burn_hot' "$out" | awk '{s += $NF} END {print s + 0}')
sh_log "stacks: $(wc -l <"$out") distinct, $total samples, $hot in spikehound_burn_hot"
grep -F 'spikehound_burn_hot' "$out" | head -n 3
[ "$hot" -ge 200 ] || sh_fail "expected >= 200 burner samples in spikehound_burn_hot (6 s at 99 Hz is ~590; the machine may be shared), got $hot"
"$SH_CLI" --server "$SH_HTTP" stacks --host "$host" --from -60s | head -n 8

# It did all that with only the capabilities it keeps after loading BPF
# (node-agent/privs.h): none of CAP_DAC_OVERRIDE (1), CAP_NET_ADMIN (12),
# CAP_SYS_MODULE (16), CAP_SYS_ADMIN (21) in any thread, none in the
# bounding set either, and no_new_privs set.
bad=0
for t in /proc/"$SH_AGENT_PID"/task/*; do
	for f in CapEff CapPrm CapBnd; do
		v=$(awk -v f="$f:" '$1 == f { print $2 }' "$t/status")
		for bit in 1 12 16 21; do
			(( (0x$v >> bit) & 1 )) && { echo "thread ${t##*/}: $f $v has capability $bit"; bad=1; }
		done
	done
done
nnp=$(awk '$1 == "NoNewPrivs:" { print $2 }' /proc/"$SH_AGENT_PID"/status)
sh_log "agent: $(ls /proc/"$SH_AGENT_PID"/task | wc -l) threads, CapEff $(awk '$1 == "CapEff:" { print $2 }' /proc/"$SH_AGENT_PID"/status), NoNewPrivs $nnp; log: $(grep -o 'capabilities kept: .*' "$SH_AGENT_LOG")"
[ "$bad" = 0 ] && [ "$nnp" = 1 ] || sh_fail "the agent kept privileges it should have dropped"
echo PASS
