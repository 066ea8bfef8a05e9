// SPDX-License-Identifier: GPL-2.0
/* det_probe.bpf.c: the "probe" detector: user-defined probes from the
 * agent's config.
 *
 * Function latency (uprobe:PATH:FUNCTION[:THRESHOLD]): uprobe_entry runs at
 * the function's entry and pushes (start time, entry address, stack
 * pointer) on the thread's small stack of calls in flight; uretprobe_return
 * pops it at the return and sends an event only when the call took at
 * least the probe's threshold. Both programs are attached once per probe
 * with the probe's index as the BPF cookie. A return is matched to its
 * entry by the stack pointer (on x86-64 the return pops the return address:
 * sp at return = sp at entry + 8), so calls abandoned by longjmp or
 * exceptions are dropped instead of mistimed.
 *
 * Where a slow call blocked: sched_switch keeps, for threads with a probed
 * call in flight only, when they left the CPU and the kernel stack at that
 * moment (stack id in "kstacks"); when they come back, every call in flight
 * adds the stretch to its off-CPU time and keeps the stack of its longest
 * stretch. The fast path for everyone else is one global counter read.
 *
 * USDT (usdt:PATH:PROVIDER:NAME[:THRESHOLD]): usdt_hit reports a hit with
 * its arguments, either every hit (rate-limited to instant_per_sec per
 * probe) or, with a threshold, only hits whose arg0 is a duration in ns of
 * at least the threshold.
 *
 * Everything that crosses to user space is an outlier; failures are counted
 * per CPU in "counters" (enum det_probe_counter). Layouts in det_probe.h. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
/* libbpf's USDT support includes <linux/errno.h>, which needs the
 * multiarch <asm/errno.h>: without it this object has no usdt_hit program
 * and user space reports USDT probes as not supported by this build. */
#if __has_include(<asm/errno.h>)
#include <bpf/usdt.bpf.h>
#define HAVE_USDT 1
#endif

#include "det_probe.h"

char LICENSE[] SEC("license") = "GPL";

/* Settings, written through skel->rodata before load. */
const volatile __u64 thresholds_ns[DET_PROBE_MAX] = {};
const volatile __u8 usdt_mode[DET_PROBE_MAX] = {};  /* enum det_probe_usdt_mode */
const volatile __u32 max_per_sec = 500;	    /* events per probe per second */
const volatile __u32 instant_per_sec = 20;  /* USDT instant hits per probe per second */
const volatile bool track_offcpu = true;    /* the sched_switch program is attached */

#if defined(__TARGET_ARCH_x86)
#define RET_SP_DELTA 8 /* the return pops the return address */
#else
#define RET_SP_DELTA 0 /* the return address is in a register */
#endif

struct call {
	__u64 start_ns;
	__u64 entry_ip;
	__u64 sp;	    /* user sp at entry */
	__u64 off_ns;	    /* time off CPU so far */
	__u64 block_max_ns; /* longest stretch off CPU so far */
	__s32 kstack_id;    /* of that stretch, -1 none */
	__u32 block_state;
	__u32 probe;
	__u32 entry_cpu;
};

/* thread_calls: one thread's probed calls in flight, innermost last. */
struct thread_calls {
	__u64 off_start_ns; /* when the thread left the CPU, 0 on CPU */
	__s32 off_kstack_id;
	__u32 off_state;
	__u32 depth;
	__u32 pad;
	struct call c[DET_PROBE_MAX_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH); /* threads that exit mid-call age out */
	__uint(max_entries, 16384);
	__type(key, __u32); /* tid */
	__type(value, struct thread_calls);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 4096);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
} kstacks SEC(".maps");

struct rate {
	__u64 window_ns;
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DET_PROBE_MAX);
	__type(key, __u32);
	__type(value, struct rate);
} rates SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DET_PROBE_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* threads with a probed call in flight (approximate: threads that exit
 * mid-call leave it high, which only costs sched_switch a lookup) */
__u64 inflight = 0;

_Static_assert((DET_PROBE_MAX_DEPTH & (DET_PROBE_MAX_DEPTH - 1)) == 0, "indexes are masked");

static const struct thread_calls zero_calls;

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1;
}

/* rate_ok applies probe idx's events-per-second budget. */
static __always_inline bool rate_ok(__u32 idx, __u64 now, __u32 per_sec)
{
	struct rate *r = bpf_map_lookup_elem(&rates, &idx);

	if (!r)
		return false;
	if (now - r->window_ns >= 1000000000ull) {
		r->window_ns = now;
		r->count = 0;
	}
	if (r->count >= per_sec) {
		count(DET_PROBE_CNT_RATE);
		return false;
	}
	r->count++;
	return true;
}

SEC("uprobe")
int uprobe_entry(struct pt_regs *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 idx = bpf_get_attach_cookie(ctx);
	struct thread_calls *tc;
	struct call *c;
	__u32 d;

	if (idx >= DET_PROBE_MAX)
		return 0;
	tc = bpf_map_lookup_elem(&calls, &tid);
	if (!tc) {
		bpf_map_update_elem(&calls, &tid, &zero_calls, BPF_NOEXIST);
		tc = bpf_map_lookup_elem(&calls, &tid);
		if (!tc) {
			count(DET_PROBE_CNT_NOSLOT);
			return 0;
		}
	}
	d = tc->depth;
	if (d >= DET_PROBE_MAX_DEPTH) {
		count(DET_PROBE_CNT_DEEP);
		return 0;
	}
	c = &tc->c[d & (DET_PROBE_MAX_DEPTH - 1)];
	c->start_ns = bpf_ktime_get_ns();
	c->entry_ip = PT_REGS_IP(ctx);
	c->sp = PT_REGS_SP(ctx);
	c->off_ns = 0;
	c->block_max_ns = 0;
	c->kstack_id = -1;
	c->block_state = 0;
	c->probe = (__u32)idx;
	c->entry_cpu = bpf_get_smp_processor_id();
	tc->depth = d + 1;
	if (d == 0)
		__sync_fetch_and_add(&inflight, 1);
	return 0;
}

SEC("uretprobe")
int uretprobe_return(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	__u64 idx = bpf_get_attach_cookie(ctx);
	__u64 sp = PT_REGS_SP(ctx), now = bpf_ktime_get_ns();
	struct det_probe_event *e;
	struct thread_calls *tc;
	struct call *c = NULL;
	__u32 d;
	long n;

	tc = bpf_map_lookup_elem(&calls, &tid);
	if (!tc || idx >= DET_PROBE_MAX) {
		count(DET_PROBE_CNT_UNMATCHED);
		return 0;
	}
	/* drop calls abandoned by longjmp (deeper, so at lower addresses),
	 * then match this return to its entry */
	d = tc->depth;
	if (d > DET_PROBE_MAX_DEPTH)
		d = DET_PROBE_MAX_DEPTH;
	for (int i = 0; i < DET_PROBE_MAX_DEPTH && d > 0; i++) {
		c = &tc->c[(d - 1) & (DET_PROBE_MAX_DEPTH - 1)];
		if (c->sp + RET_SP_DELTA >= sp)
			break;
		d--;
	}
	c = d ? &tc->c[(d - 1) & (DET_PROBE_MAX_DEPTH - 1)] : NULL;
	if (!c || c->sp + RET_SP_DELTA != sp || c->probe != idx) {
		/* an untimed (too deep) call, or one entered before we attached */
		if (d != tc->depth) {
			tc->depth = d;
			if (d == 0)
				__sync_fetch_and_sub(&inflight, 1);
		}
		count(DET_PROBE_CNT_UNMATCHED);
		return 0;
	}
	tc->depth = d - 1;
	if (d == 1)
		__sync_fetch_and_sub(&inflight, 1);
	count(DET_PROBE_CNT_CALLS);
	if (now - c->start_ns < thresholds_ns[idx & (DET_PROBE_MAX - 1)])
		return 0;
	if (!rate_ok((__u32)idx, now, max_per_sec))
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(DET_PROBE_CNT_LOST);
		return 0;
	}
	count(DET_PROBE_CNT_SLOW);
	e->type = DET_PROBE_CALL;
	e->probe = (__u16)idx;
	e->cpu = bpf_get_smp_processor_id();
	e->start_ns = c->start_ns;
	e->end_ns = now;
	e->pid = id >> 32;
	e->tid = tid;
	e->entry_cpu = c->entry_cpu;
	e->kstack_id = c->kstack_id;
	e->off_cpu_ns = c->off_ns;
	e->block_max_ns = c->block_max_ns;
	e->retval = PT_REGS_RC(ctx);
	e->nargs = 0;
	e->block_state = c->block_state;
	e->pad = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	/* the function itself, then its callers (sp/fp are the caller's now) */
	e->ustack[0] = c->entry_ip;
	n = bpf_get_stack(ctx, &e->ustack[1], (DET_PROBE_USTACK_DEPTH - 1) * sizeof(__u64),
			  BPF_F_USER_STACK);
	if (n < 0) {
		count(DET_PROBE_CNT_USTACK_ERR);
		e->ustack_err = (__s16)n;
		e->ustack_depth = 1;
	} else {
		e->ustack_err = 0;
		e->ustack_depth = 1 + n / sizeof(__u64);
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

#ifdef HAVE_USDT
SEC("usdt")
int usdt_hit(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns();
	__u64 idx = (__u64)bpf_usdt_cookie(ctx);
	struct det_probe_event *e;
	long arg0 = 0, v, n;
	int nargs;

	if (idx >= DET_PROBE_MAX)
		return 0;
	nargs = bpf_usdt_arg_cnt(ctx);
	if (usdt_mode[idx & (DET_PROBE_MAX - 1)] == DET_PROBE_USDT_DURATION) {
		if (nargs < 1 || bpf_usdt_arg(ctx, 0, &arg0) != 0 ||
		    (__u64)arg0 < thresholds_ns[idx & (DET_PROBE_MAX - 1)])
			return 0;
		if (!rate_ok((__u32)idx, now, max_per_sec))
			return 0;
	} else if (!rate_ok((__u32)idx, now, instant_per_sec)) {
		return 0;
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(DET_PROBE_CNT_LOST);
		return 0;
	}
	count(DET_PROBE_CNT_SLOW);
	e->type = DET_PROBE_USDT;
	e->probe = (__u16)idx;
	e->cpu = bpf_get_smp_processor_id();
	e->entry_cpu = e->cpu;
	e->end_ns = now;
	e->start_ns = arg0 > 0 && (__u64)arg0 < now ? now - (__u64)arg0 : now;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->kstack_id = -1;
	e->off_cpu_ns = 0;
	e->block_max_ns = 0;
	e->retval = 0;
	e->block_state = 0;
	e->pad = 0;
	e->nargs = 0;
	for (int i = 0; i < DET_PROBE_NARGS; i++) {
		e->args[i] = 0;
		if (i < nargs && bpf_usdt_arg(ctx, i, &v) == 0) {
			e->args[i] = (__u64)v;
			e->nargs = i + 1;
		}
	}
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	n = bpf_get_stack(ctx, e->ustack, sizeof(e->ustack), BPF_F_USER_STACK);
	if (n < 0) {
		count(DET_PROBE_CNT_USTACK_ERR);
		e->ustack_err = (__s16)n;
		e->ustack_depth = 0;
	} else {
		e->ustack_err = 0;
		e->ustack_depth = n / sizeof(__u64);
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}
#endif /* HAVE_USDT */

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	struct thread_calls *tc;
	__u32 tid;
	__u64 now, off;

	if (!inflight)
		return 0;
	tid = prev->pid;
	tc = bpf_map_lookup_elem(&calls, &tid);
	if (tc && tc->depth) {
		tc->off_start_ns = bpf_ktime_get_ns();
		tc->off_kstack_id = bpf_get_stackid(ctx, &kstacks, 0);
		if (tc->off_kstack_id < 0)
			count(DET_PROBE_CNT_KSTACK_ERR); /* -EEXIST: a hash collision */
		tc->off_state = preempt ? 0 : prev_state;
	}
	tid = next->pid;
	tc = bpf_map_lookup_elem(&calls, &tid);
	if (!tc || !tc->off_start_ns)
		return 0;
	now = bpf_ktime_get_ns();
	off = now - tc->off_start_ns;
	tc->off_start_ns = 0;
	for (int i = 0; i < DET_PROBE_MAX_DEPTH; i++) {
		struct call *c = &tc->c[i];

		if ((__u32)i >= tc->depth)
			break;
		c->off_ns += off;
		if (off > c->block_max_ns) {
			c->block_max_ns = off;
			c->kstack_id = tc->off_kstack_id;
			c->block_state = tc->off_state;
		}
	}
	return 0;
}
