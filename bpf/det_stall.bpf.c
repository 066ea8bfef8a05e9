// SPDX-License-Identifier: GPL-2.0
/* det_stall.bpf.c: the CPU stall sentinel. A perf_event program runs on a
 * software cpu-clock event that user space opens on every online CPU at
 * stall_hz (fixed period). It keeps, per CPU, the time of the previous
 * sample; when the gap to this sample exceeds threshold_ns and the CPU was
 * busy all along (not the idle task at either end, and the CPU's idle task
 * was not switched out in between, so it never went idle), the CPU did not
 * take its timer interrupt: it ran with interrupts off. Only such gaps go
 * to the ring buffer "events", with the task and its kernel and user
 * stacks at the sample that ended the gap (the code that had interrupts
 * off, or its caller). Event layout in det_stall.h; per-CPU counters in
 * "counters" (enum sh_stall_counter). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "det_stall.h"

char LICENSE[] SEC("license") = "GPL";

#define PF_KTHREAD 0x00200000

/* Settings, written through skel->rodata before load. */
const volatile __u64 threshold_ns = 20000000; /* report gaps longer than this */
const volatile __u64 period_ns = 4000000;     /* the perf event's period (for the event) */
const volatile bool kernel_stacks = true;
const volatile bool user_stacks = true;

/* cpu_state is what one CPU remembers of its previous sample. */
struct cpu_state {
	__u64 ts_ns;	     /* bpf_ktime_get_ns() */
	__u64 enabled_ns;    /* the perf event's time enabled */
	__u64 idle_switches; /* the CPU's idle task's nivcsw: +1 each time the CPU leaves idle */
	__u32 pid, tid;
	char comm[SH_STALL_COMM_LEN];
	__u8 valid;
	__u8 idle;
	__u8 idle_known;
	__u8 pad[5];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_state);
} last SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SH_STALL_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1; /* per-CPU slot; the sentinel does not nest on one CPU */
}

/* idle_switches reads how often this CPU's idle task has been switched
 * out, through the current task's run queue. Returns false when this
 * kernel does not let us get there (no cfs_rq->rq without group
 * scheduling). */
static __always_inline bool idle_switches(struct task_struct *task, __u64 *out)
{
	struct task_struct *idle;
	struct cfs_rq *cfs;
	struct rq *rq;

	if (!bpf_core_field_exists(struct cfs_rq, rq))
		return false;
	cfs = BPF_CORE_READ(task, se.cfs_rq);
	if (!cfs)
		return false;
	rq = BPF_CORE_READ(cfs, rq);
	if (!rq || BPF_CORE_READ(rq, cpu) != (int)bpf_get_smp_processor_id())
		return false;
	idle = BPF_CORE_READ(rq, idle);
	if (!idle)
		return false;
	*out = BPF_CORE_READ(idle, nivcsw);
	return true;
}

SEC("perf_event")
int perf_stall_clock(struct bpf_perf_event_data *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id, zero = 0;
	struct bpf_perf_event_value val;
	struct sh_stall_event *e;
	struct cpu_state *st, prev;
	__u64 now = bpf_ktime_get_ns(), gap, enabled = 0, idle_sw = 0;
	bool have_enabled, idle_known, fresh;
	long ret;

	st = bpf_map_lookup_elem(&last, &zero);
	if (!st)
		return 0;
	count(SH_STALL_CNT_SAMPLES);
	have_enabled = bpf_perf_prog_read_value(ctx, &val, sizeof(val)) == 0;
	if (have_enabled)
		enabled = val.enabled;
	idle_known = tid != 0 && idle_switches(task, &idle_sw);

	prev = *st;
	fresh = !prev.valid;
	/* a new perf event (the CPU went off and on, the agent reattached)
	 * starts its enabled time from zero: restart the clock */
	if (!fresh && have_enabled && enabled < prev.enabled_ns) {
		fresh = true;
		count(SH_STALL_CNT_RESETS);
	}
	gap = now - prev.ts_ns;
	/* time the event was not enabled (CPU offline) is not a stall */
	if (!fresh && have_enabled && prev.enabled_ns && enabled - prev.enabled_ns < gap)
		gap = enabled - prev.enabled_ns;

	st->ts_ns = now;
	st->enabled_ns = enabled;
	st->idle_switches = idle_sw;
	st->pid = tgid;
	st->tid = tid;
	bpf_get_current_comm(st->comm, sizeof(st->comm));
	st->valid = 1;
	st->idle = tid == 0;
	st->idle_known = idle_known;

	if (fresh || gap <= threshold_ns)
		return 0;
	/* Only a busy CPU's gap is a stall: an idle CPU may legitimately not
	 * be sampled (NO_HZ), and the gap would count its sleep. */
	if (tid == 0 || prev.idle ||
	    (idle_known && prev.idle_known && idle_sw != prev.idle_switches)) {
		count(SH_STALL_CNT_IDLE_GAPS);
		return 0;
	}
	count(SH_STALL_CNT_GAPS);

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(SH_STALL_CNT_LOST);
		return 0;
	}
	e->end_ns = now;
	e->gap_ns = gap;
	e->period_ns = period_ns;
	e->ip = PT_REGS_IP(&ctx->regs);
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->cpu = bpf_get_smp_processor_id();
	e->pid = tgid;
	e->tid = tid;
	e->prev_pid = prev.pid;
	e->prev_tid = prev.tid;
	e->flags = 0;
	if (!(idle_known && prev.idle_known))
		e->flags |= SH_STALL_NO_IDLE_CHECK;
	if (prev.tid == tid)
		e->flags |= SH_STALL_SAME_TASK;
	if ((__s64)e->ip >= 0)
		e->flags |= SH_STALL_USER_MODE; /* user addresses are the lower half */
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	__builtin_memcpy(e->prev_comm, prev.comm, sizeof(e->prev_comm));
	e->kstack_depth = 0;
	e->ustack_depth = 0;
	e->kstack_err = 0;
	e->ustack_err = 0;

	if (kernel_stacks) {
		ret = bpf_get_stack(ctx, e->kstack, sizeof(e->kstack), 0);
		if (ret < 0) {
			e->kstack_err = ret;
			e->flags |= SH_STALL_KSTACK_ERR;
		} else {
			e->kstack_depth = ret / sizeof(__u64);
		}
	}
	if (task->flags & PF_KTHREAD) {
		e->flags |= SH_STALL_KTHREAD;
	} else if (user_stacks) {
		ret = bpf_get_stack(ctx, e->ustack, sizeof(e->ustack), BPF_F_USER_STACK);
		if (ret < 0) {
			e->ustack_err = ret;
			e->flags |= SH_STALL_USTACK_ERR;
		} else {
			e->ustack_depth = ret / sizeof(__u64);
		}
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}
