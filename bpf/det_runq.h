/* det_runq.h: the run-queue latency detector's records (det_runq.bpf.c ->
 * node-agent/det_runq.c), shared by the BPF and the C side.
 *
 * Rules: fixed-size types, explicit padding, structs only grow by
 * appending fields. Times are CLOCK_MONOTONIC ns (bpf_ktime_get_ns). */
#ifndef SH_BPF_DET_RUNQ_H
#define SH_BPF_DET_RUNQ_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define SH_RUNQ_COMM_LEN 16
/* SH_RUNQ_LOG is how many switch-outs each CPU remembers (a power of 2):
 * the tasks that ran on the CPU while a wakee waited are read from it. */
#define SH_RUNQ_LOG 32
/* SH_RUNQ_STACK_DEPTH is the most frames kept of a waker's kernel stack. */
#define SH_RUNQ_STACK_DEPTH 32
/* SH_RUNQ_HIST_SLOTS is the number of log2 buckets of the latency
 * histogram: slot i counts waits of v microseconds with floor(log2(v)) == i
 * (v = 0 and 1 both in slot 0; the last slot takes everything longer). */
#define SH_RUNQ_HIST_SLOTS 32

/* sh_runq_reason says how the task became runnable. */
enum sh_runq_reason {
	SH_RUNQ_WAKEUP = 1,	/* woken (sched_waking) */
	SH_RUNQ_WAKEUP_NEW = 2, /* a new task's first wakeup (sched_wakeup_new) */
	SH_RUNQ_PREEMPTED = 3,	/* switched out while still runnable */
};

/* sh_runq_ctx: what the BPF side knows of the waker's context (user space
 * tells hardirq / softirq / task apart from the waker's stack). */
enum sh_runq_ctx {
	SH_RUNQ_CTX_IDLE = 1 << 0, /* the idle task was current: an interrupt woke it */
};

/* sh_runq_counter indexes the per-CPU array "counters". */
enum sh_runq_counter {
	SH_RUNQ_CNT_WAITS = 0,	 /* waits measured (wakeup or preemption -> on CPU) */
	SH_RUNQ_CNT_EVENTS,	 /* waits over the threshold sent to user space */
	SH_RUNQ_CNT_LOST,	 /* events dropped: ring buffer reserve failed */
	SH_RUNQ_CNT_START_FULL,	 /* waits not tracked: the start map was full */
	SH_RUNQ_CNT_STACK_ERR,	 /* waker stacks that could not be taken (e.g. -EEXIST:
				  * a hash collision in the stack map) */
	SH_RUNQ_CNT_PREEMPTED,	 /* waits measured that began with a preemption */
	SH_RUNQ_CNT_PREEMPTED_BLOCKING, /* ... of a task that was about to block */
	SH_RUNQ_CNT_STACK_BUDGET, /* waker stacks skipped: the CPU's budget was spent */
	SH_RUNQ_CNT_MAX,
};

/* sh_runq_ran is one stretch a task ran on a CPU (a per-CPU log entry). */
struct sh_runq_ran {
	__u32 tid;
	__u32 pid;   /* thread group id */
	__u64 ts_in; /* switched in (0: before the detector started) */
	__u64 ts_out;
	char comm[SH_RUNQ_COMM_LEN];
};

/* sh_runq_event is a wait over the threshold: task tid became runnable at
 * ts_ns - delay_ns and was switched in on cpu at ts_ns. ran[] is the CPU's
 * whole switch log, oldest first (nran valid): the reader skips entries
 * that ended before the wait began (and empty ones, ts_out 0); the last
 * entry is the task switched out to let the victim run. When the oldest
 * entry (log_oldest_ns) ends after the wait began, more tasks ran during
 * the wait than the log holds. The waker fields are set for
 * SH_RUNQ_WAKEUP and SH_RUNQ_WAKEUP_NEW. */
struct sh_runq_event {
	__u64 ts_ns;
	__u64 delay_ns;
	__u32 cpu;
	__u32 pid;
	__u32 tid;
	__u16 reason;	 /* enum sh_runq_reason */
	__u16 waker_ctx; /* enum sh_runq_ctx bits */
	char comm[SH_RUNQ_COMM_LEN];
	__u32 waker_pid;
	__u32 waker_tid;
	char waker_comm[SH_RUNQ_COMM_LEN];
	__s32 waker_stack_id; /* in map "waker_stack_map"; negative errno when none */
	__u32 waker_cpu;
	__s32 prio; /* the victim's kernel prio (0..99 RT, 100..139 normal) */
	__u32 nran;
	__u64 log_oldest_ns; /* ts_out of the oldest entry in the CPU's log */
	struct sh_runq_ran ran[SH_RUNQ_LOG];
};

/* sh_runq_hist is the per-CPU latency histogram (every wait measured). */
struct sh_runq_hist {
	__u64 slots[SH_RUNQ_HIST_SLOTS];
	__u64 count;
	__u64 sum_ns;
};

#endif
