// SPDX-License-Identifier: GPL-2.0
/* probe.bpf.c: the smallest real program, used by the agent's self-check
 * (`spikehound-agent check`) to prove that BPF loads, attaches to a raw
 * tracepoint and counts events on this kernel. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

__u64 sched_switches = 0;

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__sync_fetch_and_add(&sched_switches, 1);
	return 0;
}
