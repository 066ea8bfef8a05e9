/* det_softirq.h: events of the softirq/hardirq detector (det_softirq.bpf.c
 * -> the agent's det_softirq.c), shared by the BPF and the C side.
 *
 * Three outliers, each measured per CPU from the irq tracepoints:
 *  - SH_SIRQ_DELAY: a softirq vector waited longer than the threshold
 *    from its first raise (irq:softirq_raise) to its handler starting
 *    (irq:softirq_entry): bottom halves were disabled, another vector ran
 *    long, or ksoftirqd did not get the CPU;
 *  - SH_SIRQ_LONG: one vector's handler ran longer than the threshold
 *    (softirq_entry -> softirq_exit);
 *  - SH_HARDIRQ_LONG: one hardirq handler ran longer than its threshold
 *    (irq_handler_entry -> irq_handler_exit).
 *
 * Rules as in sampler.h: fixed-size types, explicit padding, grown only by
 * appending. Times are CLOCK_MONOTONIC ns (bpf_ktime_get_ns). */
#ifndef SH_BPF_DET_SOFTIRQ_H
#define SH_BPF_DET_SOFTIRQ_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define SH_SIRQ_COMM_LEN 16
#define SH_SIRQ_IRQ_NAME_LEN 32
#define SH_SIRQ_STACK_DEPTH 127
/* SH_SIRQ_VECTORS is NR_SOFTIRQS (HI .. RCU). */
#define SH_SIRQ_VECTORS 10

/* sh_sirq_kind says what an event measured. */
enum sh_sirq_kind {
	SH_SIRQ_DELAY = 1,   /* raise -> entry of one vector */
	SH_SIRQ_LONG = 2,    /* entry -> exit of one vector */
	SH_HARDIRQ_LONG = 3, /* irq_handler_entry -> exit of one handler */
};

/* sh_sirq_flags: conditions of an event. */
enum sh_sirq_flags {
	SH_SIRQ_KTHREAD = 1 << 0,     /* the current task is a kernel thread (ksoftirqd ...) */
	SH_SIRQ_KSTACK_ERR = 1 << 1,  /* bpf_get_stack failed */
	SH_SIRQ_RAISED_IDLE = 1 << 2, /* delay: the raise came while the CPU ran its idle task */
};

/* sh_sirq_counter indexes the per-CPU array "counters". */
enum sh_sirq_counter {
	SH_SIRQ_CNT_DELAY = 0,	 /* delays over the threshold (sent or lost) */
	SH_SIRQ_CNT_LONG,	 /* long softirq handlers over the threshold */
	SH_SIRQ_CNT_HARDIRQ,	 /* long hardirq handlers over the threshold */
	SH_SIRQ_CNT_LOST,	 /* of those, dropped: ring buffer full */
	SH_SIRQ_CNT_STALE,	 /* raise/entry times too old to be real (CPU hotplug): ignored */
	SH_SIRQ_CNT_MAX,
};

/* sh_sirq_event: one outlier. pid/tid/comm and the kernel stack are the
 * current task's at ts_ns: for a delay at the vector's entry (the stack
 * says who let the softirq run: irq exit, local_bh_enable in some task,
 * ksoftirqd), for long handlers at their exit (the interrupted task).
 * For a delay, raise_* is the task current at the raise. */
struct sh_sirq_event {
	__u64 ts_ns;	   /* bpf_ktime_get_ns() at the end of the measured interval */
	__u64 duration_ns; /* the delay or the handler's run time */
	__u64 cgroup_id;
	__u32 kind;	   /* enum sh_sirq_kind */
	__u32 cpu;
	__s32 vec;	   /* softirq vector (0 HI .. 9 RCU), or the irq number */
	__u32 flags;	   /* enum sh_sirq_flags */
	__u32 pid, tid;
	__u32 raise_pid, raise_tid;
	char comm[SH_SIRQ_COMM_LEN];
	char raise_comm[SH_SIRQ_COMM_LEN];
	char irq_name[SH_SIRQ_IRQ_NAME_LEN]; /* hardirq: the handler's irqaction name */
	__u16 kstack_depth;
	__s16 kstack_err; /* negative errno from bpf_get_stack, 0 on success */
	__u32 pad;
	__u64 kstack[SH_SIRQ_STACK_DEPTH];
};

#endif
