/* det_probe.h: the "probe" detector's event, shared by det_probe.bpf.c and
 * node-agent/det_probe.c. User-defined probes from the config: a uprobe +
 * uretprobe pair timing one user-space function (like funcslower), or a
 * USDT probe point. One BPF program instance is attached per probe with the
 * probe's index as its cookie; the index selects the probe's settings in the
 * rodata arrays and comes back in the event.
 *
 * Rules: fixed-size types, explicit padding, structs only grow by appending
 * fields. Times are CLOCK_MONOTONIC ns (bpf_ktime_get_ns). */
#ifndef SH_BPF_DET_PROBE_H
#define SH_BPF_DET_PROBE_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* DET_PROBE_MAX is how many probes one agent runs (AGENT_CONFIG_MAX_PROBES). */
#define DET_PROBE_MAX 16
/* DET_PROBE_MAX_DEPTH is how many probed calls one thread can have in
 * flight (nesting, recursion); deeper calls are not timed (counted). */
#define DET_PROBE_MAX_DEPTH 4
/* DET_PROBE_USTACK_DEPTH is the most user frames kept per event (the probed
 * function's entry address first, then its callers). */
#define DET_PROBE_USTACK_DEPTH 64
/* DET_PROBE_NARGS is how many USDT arguments are kept. */
#define DET_PROBE_NARGS 6
#define DET_PROBE_COMM_LEN 16

/* det_probe_type says what an event is. */
enum det_probe_type {
	DET_PROBE_CALL = 1, /* a function call that took at least the threshold */
	DET_PROBE_USDT = 2, /* a USDT probe hit (instant, or arg0 >= threshold) */
};

/* det_probe_usdt_mode (rodata usdt_mode[]) says how a USDT probe reports. */
enum det_probe_usdt_mode {
	DET_PROBE_USDT_INSTANT = 0,  /* every hit, rate-limited (instant_per_sec) */
	DET_PROBE_USDT_DURATION = 1, /* only hits whose arg0 (a duration in ns)
					is at least the threshold */
};

/* det_probe_counter indexes the per-CPU array "counters". */
enum det_probe_counter {
	DET_PROBE_CNT_CALLS = 0,   /* probed calls that returned (timed) */
	DET_PROBE_CNT_SLOW,	   /* calls over the threshold / USDT hits kept */
	DET_PROBE_CNT_LOST,	   /* events dropped: ring buffer full */
	DET_PROBE_CNT_RATE,	   /* events dropped: per-probe rate limit */
	DET_PROBE_CNT_DEEP,	   /* calls not timed: nesting deeper than MAX_DEPTH */
	DET_PROBE_CNT_UNMATCHED,   /* returns with no recorded entry */
	DET_PROBE_CNT_NOSLOT,	   /* entries not recorded: per-thread table full */
	DET_PROBE_CNT_KSTACK_ERR,  /* off-CPU kernel stacks that could not be kept */
	DET_PROBE_CNT_USTACK_ERR,  /* user stacks that could not be read */
	DET_PROBE_CNT_MAX,
};

/* det_probe_event is one slow call or USDT hit. */
struct det_probe_event {
	__u16 type;	 /* enum det_probe_type */
	__u16 probe;	 /* index of the probe in the config */
	__u32 cpu;	 /* CPU at return (calls) or at the hit (USDT) */
	__u64 start_ns;	 /* entry (calls); hit - arg0 (USDT duration mode); hit */
	__u64 end_ns;	 /* return (calls); the hit (USDT) */
	__u32 pid;	 /* thread group id */
	__u32 tid;
	__u32 entry_cpu; /* CPU at entry (calls), = cpu for USDT */
	__s32 kstack_id; /* kernel stack (map "kstacks") where the call spent its
			    longest stretch off CPU; < 0: none */
	__u64 off_cpu_ns;    /* time the thread was off CPU during the call */
	__u64 block_max_ns;  /* the longest single stretch off CPU */
	__s64 retval;	     /* the function's return value (calls) */
	__u64 args[DET_PROBE_NARGS]; /* USDT arguments */
	__u32 nargs;		     /* valid entries in args */
	__u32 block_state;	     /* prev_state at the longest stretch's switch
					(0: preempted, else TASK_* sleep bits) */
	__u16 ustack_depth;	     /* valid entries in ustack */
	__s16 ustack_err;	     /* negative errno from bpf_get_stack, else 0 */
	__u32 pad;
	char comm[DET_PROBE_COMM_LEN];
	__u64 ustack[DET_PROBE_USTACK_DEPTH]; /* innermost first */
};

#endif
