/* det_stall.h: the CPU stall sentinel's event (det_stall.bpf.c -> the
 * agent's det_stall.c), shared by the BPF and the C side.
 *
 * A software cpu-clock perf event per CPU fires every 1/stall_hz s from
 * the timer interrupt; a gap between two samples of one CPU far longer
 * than the period means that CPU did not take the timer interrupt: it ran
 * with interrupts off (or its vCPU was not running). The sample that ends
 * the gap is the first thing the CPU did once interrupts came back on, so
 * its stack names who held them off.
 *
 * Rules as in sampler.h: fixed-size types, explicit padding, grown only by
 * appending. Times are CLOCK_MONOTONIC ns (bpf_ktime_get_ns). */
#ifndef SH_BPF_DET_STALL_H
#define SH_BPF_DET_STALL_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define SH_STALL_COMM_LEN 16
#define SH_STALL_STACK_DEPTH 127

/* sh_stall_flags: conditions of the sample that ended the gap. */
enum sh_stall_flags {
	SH_STALL_USER_MODE = 1 << 0,  /* the timer interrupted user mode (no kernel stack) */
	SH_STALL_KTHREAD = 1 << 1,    /* a kernel thread (no user stack asked) */
	SH_STALL_KSTACK_ERR = 1 << 2, /* bpf_get_stack failed for the kernel stack */
	SH_STALL_USTACK_ERR = 1 << 3, /* bpf_get_stack failed for the user stack */
	SH_STALL_SAME_TASK = 1 << 4,  /* the same thread ran at both ends of the gap */
	SH_STALL_NO_IDLE_CHECK = 1 << 5, /* could not tell whether the CPU went idle */
};

/* sh_stall_counter indexes the per-CPU array "counters". */
enum sh_stall_counter {
	SH_STALL_CNT_SAMPLES = 0, /* sentinel samples */
	SH_STALL_CNT_GAPS,	  /* gaps over the threshold on a busy CPU (sent or lost) */
	SH_STALL_CNT_LOST,	  /* of those, dropped: ring buffer full */
	SH_STALL_CNT_IDLE_GAPS,	  /* gaps over the threshold not counted: the CPU was idle */
	SH_STALL_CNT_RESETS,	  /* samples that restarted the gap clock (new perf event) */
	SH_STALL_CNT_MAX,
};

/* sh_stall_event: one gap over the threshold on a busy CPU. The stacks are
 * innermost first; only kstack_depth / ustack_depth entries are valid. */
struct sh_stall_event {
	__u64 end_ns;	 /* bpf_ktime_get_ns() at the sample that ended the gap */
	__u64 gap_ns;	 /* time since the previous sample of this CPU */
	__u64 period_ns; /* the sentinel's period */
	__u64 ip;	 /* interrupted instruction pointer */
	__u64 cgroup_id;
	__u32 cpu;
	__u32 pid; /* the task at the end of the gap: thread group id */
	__u32 tid;
	__u32 prev_pid; /* the task at the previous sample (start of the gap) */
	__u32 prev_tid;
	__u32 flags; /* enum sh_stall_flags */
	char comm[SH_STALL_COMM_LEN];
	char prev_comm[SH_STALL_COMM_LEN];
	__u16 kstack_depth;
	__u16 ustack_depth;
	__s16 kstack_err; /* negative errno from bpf_get_stack, 0 on success */
	__s16 ustack_err;
	__u64 kstack[SH_STALL_STACK_DEPTH];
	__u64 ustack[SH_STALL_STACK_DEPTH];
};

#endif
