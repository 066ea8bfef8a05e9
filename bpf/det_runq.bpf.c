// SPDX-License-Identifier: GPL-2.0
/* det_runq.bpf.c: run-queue latency, the time a runnable task waits for a
 * CPU. A wait starts when the task is woken (tp_btf sched_waking, in the
 * waker's context: the waker's pid, comm and, when the wait looks likely
 * to be long, kernel stack are kept with it; the stack tells an IRQ or
 * softirq waker from a task), when a new task is first woken
 * (sched_wakeup_new), or when it is switched out still runnable
 * (sched_switch: preempted); it ends when sched_switch puts the task on a
 * CPU. Every wait goes into a per-CPU log2 histogram ("hist"); only
 * waits of at least min_delay_ns cross to user space ("events" ring
 * buffer), carrying the CPU's switch log ("cpu_logs": who ran there, from
 * when to when) to tell who ran during the wait. Layouts and counters
 * are in det_runq.h. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "det_runq.h"

char LICENSE[] SEC("license") = "GPL";

#define TASK_RUNNING 0
#define ENOENT 2

/* Settings, written through skel->rodata before load. */
const volatile __u64 min_delay_ns = 10000000;
/* waker_stacks: 0 never, 1 when the wait looks likely to be long
 * (default), 2 for every wakeup. A kernel stack costs ~0.7-1.5 us per
 * wakeup (the rest of sched_waking ~0.17 us), too much for every wakeup
 * of a busy host. "Likely long": the wakee's CPU is running a task that
 * has been on it for at least busy_ns. At most stack_budget stacks are
 * taken per CPU per second either way. */
const volatile __u32 waker_stacks = 1;
const volatile __u64 busy_ns = 250000;
const volatile __u32 stack_budget = 500;

/* struct runq_start is a waiting task's start (map "starts", by tid). */
struct runq_start {
	__u64 ts;
	__u32 waker_pid;
	__u32 waker_tid;
	char waker_comm[SH_RUNQ_COMM_LEN];
	__s32 waker_stack_id;
	__u32 waker_cpu;
	__u16 reason;
	__u16 waker_ctx;
	__u32 blocking; /* preempted while about to block (state not RUNNING) */
};

/* struct cpu_log is one CPU's switch log: who ran, from when to when. */
struct cpu_log {
	__u64 curr_in_ts; /* when the current task was switched in */
	__u32 head;	  /* next entry to write (mod SH_RUNQ_LOG) */
	__u32 curr_tid;	  /* the current task (0: idle) */
	__u64 budget_ts;  /* start of the second stack_budget counts in */
	__u32 budget_used;
	__u32 pad;
	struct sh_runq_ran ran[SH_RUNQ_LOG];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct runq_start);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_log);
} cpu_logs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sh_runq_hist);
} hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 8192);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, SH_RUNQ_STACK_DEPTH * sizeof(__u64));
} waker_stack_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SH_RUNQ_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1; /* per-CPU slot; sched_switch runs with IRQs off */
}

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0;

	if (v >> 32) {
		v >>= 32;
		r += 32;
	}
	if (v >> 16) {
		v >>= 16;
		r += 16;
	}
	if (v >> 8) {
		v >>= 8;
		r += 8;
	}
	if (v >> 4) {
		v >>= 4;
		r += 4;
	}
	if (v >> 2) {
		v >>= 2;
		r += 2;
	}
	if (v >> 1)
		r += 1;
	return r;
}

/* want_stack decides whether to take the waker's stack for waking p. */
static __always_inline bool want_stack(struct task_struct *p, __u64 now)
{
	struct cpu_log *here, *there;
	__u32 zero = 0, cpu;

	if (waker_stacks == 0)
		return false;
	if (waker_stacks == 1) {
		cpu = BPF_CORE_READ(p, wake_cpu);
		there = bpf_map_lookup_percpu_elem(&cpu_logs, &zero, cpu);
		if (!there || there->curr_tid == 0 || there->curr_in_ts > now ||
		    now - there->curr_in_ts < busy_ns)
			return false;
	}
	here = bpf_map_lookup_elem(&cpu_logs, &zero);
	if (!here)
		return false;
	if (now - here->budget_ts >= 1000000000ULL) {
		here->budget_ts = now;
		here->budget_used = 0;
	}
	if (here->budget_used >= stack_budget) {
		count(SH_RUNQ_CNT_STACK_BUDGET);
		return false;
	}
	here->budget_used++;
	return true;
}

/* record_wakeup starts a wait of p, woken by the current context. */
static __always_inline void record_wakeup(void *ctx, struct task_struct *p, __u16 reason)
{
	struct runq_start s = {};
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = p->pid;

	s.ts = bpf_ktime_get_ns();
	s.reason = reason;
	s.waker_pid = id >> 32;
	s.waker_tid = (__u32)id;
	s.waker_cpu = bpf_get_smp_processor_id();
	/* The idle task wakes nobody itself: an IRQ or softirq on an idle
	 * CPU did. Other contexts are told apart by the waker's stack (user
	 * space); per-CPU preempt counts are not readable without
	 * CONFIG_KALLSYMS_ALL. */
	s.waker_ctx = s.waker_tid == 0 ? SH_RUNQ_CTX_IDLE : 0;
	bpf_get_current_comm(s.waker_comm, sizeof(s.waker_comm));
	s.waker_stack_id = -ENOENT;
	if (want_stack(p, s.ts)) {
		s.waker_stack_id = bpf_get_stackid(ctx, &waker_stack_map, 0);
		if (s.waker_stack_id < 0)
			count(SH_RUNQ_CNT_STACK_ERR);
	}
	if (bpf_map_update_elem(&starts, &tid, &s, BPF_ANY) != 0)
		count(SH_RUNQ_CNT_START_FULL);
}

SEC("tp_btf/sched_waking")
int BPF_PROG(sched_waking, struct task_struct *p)
{
	/* A task still on its run queue (woken before it got to sleep, or
	 * preempted and already tracked) is not enqueued by this wakeup:
	 * only a dequeued task starts a new wait, or one whose dequeue was
	 * delayed (EEVDF keeps a sleeping task that is owed no CPU time
	 * queued as "delayed"; this wakeup queues it for real). */
	if (p->pid == 0)
		return 0;
	if (p->on_rq && !(bpf_core_field_exists(p->se.sched_delayed) &&
			  BPF_CORE_READ_BITFIELD_PROBED(&p->se, sched_delayed)))
		return 0;
	record_wakeup(ctx, p, SH_RUNQ_WAKEUP);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new, struct task_struct *p)
{
	record_wakeup(ctx, p, SH_RUNQ_WAKEUP_NEW);
	return 0;
}

/* send_event reports next's wait s (>= min_delay_ns) ending at now. */
static __always_inline void send_event(struct task_struct *next, const struct runq_start *s,
				       struct cpu_log *log, __u64 now, __u32 cpu)
{
	struct sh_runq_event *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(SH_RUNQ_CNT_LOST);
		return;
	}
	e->ts_ns = now;
	e->delay_ns = now - s->ts;
	e->cpu = cpu;
	e->pid = next->tgid;
	e->tid = next->pid;
	e->reason = s->reason;
	e->waker_ctx = s->waker_ctx;
	__builtin_memcpy(e->comm, next->comm, sizeof(e->comm));
	e->waker_pid = s->waker_pid;
	e->waker_tid = s->waker_tid;
	__builtin_memcpy(e->waker_comm, s->waker_comm, sizeof(e->waker_comm));
	e->waker_stack_id = s->waker_stack_id;
	e->waker_cpu = s->waker_cpu;
	e->prio = next->prio;
	e->log_oldest_ns = log->ran[log->head & (SH_RUNQ_LOG - 1)].ts_out;
	/* The whole log, oldest first: a conditional copy per entry would
	 * make the verifier walk 2^SH_RUNQ_LOG paths; the reader skips the
	 * entries that ended before the wait. */
	for (__u32 i = 0; i < SH_RUNQ_LOG; i++)
		e->ran[i] = log->ran[(log->head + i) & (SH_RUNQ_LOG - 1)];
	e->nran = SH_RUNQ_LOG;
	count(SH_RUNQ_CNT_EVENTS);
	bpf_ringbuf_submit(e, 0);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 zero = 0, tid, cpu = bpf_get_smp_processor_id();
	struct runq_start *s, ps = {};
	struct sh_runq_hist *h;
	struct cpu_log *log;
	struct sh_runq_ran *r;
	__u64 delay;

	log = bpf_map_lookup_elem(&cpu_logs, &zero);
	if (!log)
		return 0;
	/* The log first: the task switched out now ran until now. */
	r = &log->ran[log->head & (SH_RUNQ_LOG - 1)];
	r->tid = prev->pid;
	r->pid = prev->tgid;
	r->ts_in = log->curr_in_ts;
	r->ts_out = now;
	__builtin_memcpy(r->comm, prev->comm, sizeof(r->comm));
	log->head++;
	log->curr_in_ts = now;
	log->curr_tid = next->pid;

	/* prev still runnable: its wait starts now. */
	tid = prev->pid;
	if (tid != 0 && (preempt || prev_state == TASK_RUNNING)) {
		ps.ts = now;
		ps.reason = SH_RUNQ_PREEMPTED;
		ps.blocking = prev_state != TASK_RUNNING;
		ps.waker_stack_id = -ENOENT;
		if (bpf_map_update_elem(&starts, &tid, &ps, BPF_ANY) != 0)
			count(SH_RUNQ_CNT_START_FULL);
	}

	tid = next->pid;
	if (tid == 0)
		return 0;
	s = bpf_map_lookup_elem(&starts, &tid);
	if (!s)
		return 0;
	delay = now - s->ts;
	count(SH_RUNQ_CNT_WAITS);
	if (s->reason == SH_RUNQ_PREEMPTED) {
		count(SH_RUNQ_CNT_PREEMPTED);
		if (s->blocking)
			count(SH_RUNQ_CNT_PREEMPTED_BLOCKING);
	}
	h = bpf_map_lookup_elem(&hist, &zero);
	if (h) {
		__u32 slot = log2_u64(delay / 1000);

		if (slot >= SH_RUNQ_HIST_SLOTS)
			slot = SH_RUNQ_HIST_SLOTS - 1;
		h->slots[slot]++;
		h->count++;
		h->sum_ns += delay;
	}
	if (delay >= min_delay_ns)
		send_event(next, s, log, now, cpu);
	bpf_map_delete_elem(&starts, &tid);
	return 0;
}
