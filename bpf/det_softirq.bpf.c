// SPDX-License-Identifier: GPL-2.0
/* det_softirq.bpf.c: softirq raise-to-run delay, long softirq handlers and
 * long hardirq handlers, per CPU, from the BTF tracepoints irq/softirq_raise,
 * softirq_entry, softirq_exit, irq_handler_entry and irq_handler_exit.
 * Per CPU and vector it keeps the first raise since the vector last started
 * (with the task current at the raise) and the start of the running
 * handler; per CPU the start of the running hardirq handler. Only outliers
 * (over threshold_ns / hardirq_threshold_ns) go to the ring buffer
 * "events", with the current task and its kernel stack. Event layout in
 * det_softirq.h; per-CPU counters in "counters" (enum sh_sirq_counter). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "det_softirq.h"

char LICENSE[] SEC("license") = "GPL";

#define PF_KTHREAD 0x00200000
/* STALE_NS: a raise or entry older than this is left over from before the
 * CPU went offline, not a real delay. */
#define STALE_NS (10ULL * 1000000000ULL)

/* Settings, written through skel->rodata before load. */
const volatile __u64 threshold_ns = 10000000;	      /* softirq delay and run time */
const volatile __u64 hardirq_threshold_ns = 10000000; /* hardirq handler run time */
const volatile bool kernel_stacks = true;

struct vec_state {
	__u64 raise_ns; /* first raise since the last entry; 0: none pending */
	__u64 entry_ns; /* the running handler's start; 0: not running */
	__u32 raise_pid, raise_tid;
	char raise_comm[SH_SIRQ_COMM_LEN];
};

struct cpu_state {
	struct vec_state vec[SH_SIRQ_VECTORS];
	__u64 irq_entry_ns;
	__s32 irq;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_state);
} state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SH_SIRQ_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		__sync_fetch_and_add(v, 1); /* a hardirq program may interrupt a softirq one */
}

static __always_inline struct cpu_state *cpu_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&state, &zero);
}

/* emit sends one outlier with the current task and its kernel stack. */
static __always_inline void emit(void *ctx, __u32 kind, __s32 vec, __u64 now, __u64 dur,
				 const struct vec_state *raise, struct irqaction *action)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 id = bpf_get_current_pid_tgid();
	struct sh_sirq_event *e;
	long ret;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(SH_SIRQ_CNT_LOST);
		return;
	}
	e->ts_ns = now;
	e->duration_ns = dur;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->kind = kind;
	e->cpu = bpf_get_smp_processor_id();
	e->vec = vec;
	e->flags = 0;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (task->flags & PF_KTHREAD)
		e->flags |= SH_SIRQ_KTHREAD;
	e->raise_pid = 0;
	e->raise_tid = 0;
	e->raise_comm[0] = '\0';
	if (raise) {
		e->raise_pid = raise->raise_pid;
		e->raise_tid = raise->raise_tid;
		__builtin_memcpy(e->raise_comm, raise->raise_comm, sizeof(e->raise_comm));
		if (raise->raise_tid == 0)
			e->flags |= SH_SIRQ_RAISED_IDLE;
	}
	e->irq_name[0] = '\0';
	if (action && bpf_probe_read_kernel_str(e->irq_name, sizeof(e->irq_name),
						BPF_CORE_READ(action, name)) < 0)
		e->irq_name[0] = '\0';
	e->kstack_depth = 0;
	e->kstack_err = 0;
	e->pad = 0;
	if (kernel_stacks) {
		ret = bpf_get_stack(ctx, e->kstack, sizeof(e->kstack), 0);
		if (ret < 0) {
			e->kstack_err = ret;
			e->flags |= SH_SIRQ_KSTACK_ERR;
		} else {
			e->kstack_depth = ret / sizeof(__u64);
		}
	}
	bpf_ringbuf_submit(e, 0);
}

SEC("tp_btf/softirq_raise")
int BPF_PROG(softirq_raise, unsigned int vec_nr)
{
	struct cpu_state *st;
	struct vec_state *v;
	__u64 id;

	if (vec_nr >= SH_SIRQ_VECTORS)
		return 0;
	st = cpu_state();
	if (!st)
		return 0;
	v = &st->vec[vec_nr];
	if (v->raise_ns)
		return 0; /* already pending: the first raise counts */
	id = bpf_get_current_pid_tgid();
	v->raise_ns = bpf_ktime_get_ns();
	v->raise_pid = id >> 32;
	v->raise_tid = (__u32)id;
	bpf_get_current_comm(v->raise_comm, sizeof(v->raise_comm));
	return 0;
}

SEC("tp_btf/softirq_entry")
int BPF_PROG(softirq_entry, unsigned int vec_nr)
{
	__u64 now = bpf_ktime_get_ns(), raised, delay;
	struct cpu_state *st;
	struct vec_state *v;

	if (vec_nr >= SH_SIRQ_VECTORS)
		return 0;
	st = cpu_state();
	if (!st)
		return 0;
	v = &st->vec[vec_nr];
	raised = v->raise_ns;
	v->raise_ns = 0;
	v->entry_ns = now;
	if (!raised || now < raised)
		return 0;
	delay = now - raised;
	if (delay <= threshold_ns)
		return 0;
	if (delay > STALE_NS) {
		count(SH_SIRQ_CNT_STALE);
		return 0;
	}
	count(SH_SIRQ_CNT_DELAY);
	emit(ctx, SH_SIRQ_DELAY, vec_nr, now, delay, v, NULL);
	return 0;
}

SEC("tp_btf/softirq_exit")
int BPF_PROG(softirq_exit, unsigned int vec_nr)
{
	__u64 now = bpf_ktime_get_ns(), start, dur;
	struct cpu_state *st;
	struct vec_state *v;

	if (vec_nr >= SH_SIRQ_VECTORS)
		return 0;
	st = cpu_state();
	if (!st)
		return 0;
	v = &st->vec[vec_nr];
	start = v->entry_ns;
	v->entry_ns = 0;
	if (!start || now < start)
		return 0;
	dur = now - start;
	if (dur <= threshold_ns)
		return 0;
	if (dur > STALE_NS) {
		count(SH_SIRQ_CNT_STALE);
		return 0;
	}
	count(SH_SIRQ_CNT_LONG);
	emit(ctx, SH_SIRQ_LONG, vec_nr, now, dur, NULL, NULL);
	return 0;
}

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(irq_handler_entry, int irq, struct irqaction *action)
{
	struct cpu_state *st = cpu_state();

	if (!st)
		return 0;
	st->irq_entry_ns = bpf_ktime_get_ns();
	st->irq = irq;
	return 0;
}

SEC("tp_btf/irq_handler_exit")
int BPF_PROG(irq_handler_exit, int irq, struct irqaction *action, int ret)
{
	__u64 now = bpf_ktime_get_ns(), start, dur;
	struct cpu_state *st = cpu_state();

	if (!st)
		return 0;
	start = st->irq_entry_ns;
	st->irq_entry_ns = 0;
	if (!start || st->irq != irq || now < start)
		return 0;
	dur = now - start;
	if (dur <= hardirq_threshold_ns)
		return 0;
	if (dur > STALE_NS) {
		count(SH_SIRQ_CNT_STALE);
		return 0;
	}
	count(SH_SIRQ_CNT_HARDIRQ);
	emit(ctx, SH_HARDIRQ_LONG, irq, now, dur, NULL, action);
	return 0;
}
