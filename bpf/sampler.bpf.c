// SPDX-License-Identifier: GPL-2.0
/* sampler.bpf.c: the agent's whole-system stack sampler and process
 * lifecycle tracer. A perf_event program runs on a software cpu-clock event
 * opened by user space on every online CPU (99 Hz, frequency mode) and sends
 * each sample with its kernel and user stacks, copied by bpf_get_stack, to
 * the ring buffer "events" (the user stack twice: as addresses, and, until
 * user space has read the process's mappings ("mapped_pids"), as build id +
 * file offset per frame, resolved by the kernel while the process and its
 * mappings exist); tp_btf programs on sched_process_exec/fork/exit
 * send lifecycle events to the same ring. Failures are counted per CPU in
 * "counters" (enum sh_counter). Event layouts are in sampler.h. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "sampler.h"

char LICENSE[] SEC("license") = "GPL";

#define PF_KTHREAD 0x00200000

_Static_assert(sizeof(struct sh_ubuild_frame) == sizeof(struct bpf_stack_build_id),
	       "sh_ubuild_frame mirrors struct bpf_stack_build_id");

/* Settings, written through skel->rodata before load. */
const volatile __u32 filter_tgid = 0;	      /* 0: every process */
const volatile bool skip_idle = false;	      /* drop samples of the idle task */
const volatile bool kernel_stacks = true;
const volatile bool user_stacks = true;
const volatile bool user_build_ids = true; /* also the user stack as build id + offset */
const volatile bool fork_events = true;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20); /* resized by user space before load */
} events SEC(".maps");

/* Processes whose mappings user space has read: their samples skip the
 * build-id walk (it costs about as much as the rest of a sample), so only
 * the first samples of a process, and every sample of one too short-lived
 * to be looked at, pay it. Written by user space, deleted at exec and
 * exit. The value is unused. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u8);
} mapped_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SH_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1; /* per-CPU slot, programs on one CPU do not nest here */
}

/* Waking the agent for every record costs it a context switch each
 * (130/s on a 2-CPU host at 99 Hz): records are submitted without a
 * wakeup, the agent drains the buffer on its own short timer, and only a
 * buffer filling past a quarter forces a wakeup. */
static __always_inline __u64 wakeup_flags(void)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 size = bpf_ringbuf_query(&events, BPF_RB_RING_SIZE);

	return avail > size / 4 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

SEC("perf_event")
int perf_cpu_clock(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct task_struct *task;
	struct sh_sample_event *e;
	long ret;

	if (skip_idle && tid == 0)
		return 0;
	if (filter_tgid && tgid != filter_tgid)
		return 0;
	count(SH_CNT_SAMPLES);

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(SH_CNT_LOST);
		return 0;
	}
	e->hdr.type = SH_EVENT_SAMPLE;
	e->hdr.flags = 0;
	e->hdr.cpu = bpf_get_smp_processor_id();
	e->hdr.ts_ns = bpf_ktime_get_ns();
	e->pid = tgid;
	e->tid = tid;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->period = ctx->sample_period;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->kstack_depth = 0;
	e->ustack_depth = 0;
	e->kstack_err = 0;
	e->ustack_err = 0;
	e->ubuild_depth = 0;
	e->ubuild_err = 0;
	if (tid == 0)
		e->hdr.flags |= SH_SAMPLE_IDLE;

	if (kernel_stacks) {
		ret = bpf_get_stack(ctx, e->kstack, sizeof(e->kstack), 0);
		if (ret < 0) {
			e->kstack_err = ret;
			e->hdr.flags |= SH_SAMPLE_KSTACK_ERR;
			count(SH_CNT_KSTACK_ERR);
		} else {
			e->kstack_depth = ret / sizeof(__u64);
		}
	}

	task = bpf_get_current_task_btf();
	if (task->flags & PF_KTHREAD) {
		e->hdr.flags |= SH_SAMPLE_KTHREAD;
	} else if (user_stacks) {
		ret = bpf_get_stack(ctx, e->ustack, sizeof(e->ustack), BPF_F_USER_STACK);
		if (ret < 0) {
			e->ustack_err = ret;
			e->hdr.flags |= SH_SAMPLE_USTACK_ERR;
			count(SH_CNT_USTACK_ERR);
		} else {
			e->ustack_depth = ret / sizeof(__u64);
			if (e->ustack_depth == 1)
				count(SH_CNT_USTACK_DEPTH1);
		}
		if (user_build_ids && e->ustack_depth &&
		    !bpf_map_lookup_elem(&mapped_pids, &tgid)) {
			ret = bpf_get_stack(ctx, e->ubuild, sizeof(e->ubuild),
					    BPF_F_USER_STACK | BPF_F_USER_BUILD_ID);
			if (ret < 0) {
				e->ubuild_err = ret;
				count(SH_CNT_UBUILD_ERR);
			} else {
				e->ubuild_depth = ret / sizeof(struct sh_ubuild_frame);
			}
		}
	}

	bpf_ringbuf_submit(e, wakeup_flags());
	return 0;
}

static __always_inline struct sh_proc_event *proc_event_reserve(__u16 type, __u64 size)
{
	struct sh_proc_event *e;

	if (size == sizeof(struct sh_proc_event))
		e = bpf_ringbuf_reserve(&events, sizeof(struct sh_proc_event), 0);
	else
		e = bpf_ringbuf_reserve(&events, offsetof(struct sh_proc_event, filename), 0);
	if (!e) {
		count(SH_CNT_PROC_LOST);
		return NULL;
	}
	e->hdr.type = type;
	e->hdr.flags = 0;
	e->hdr.cpu = bpf_get_smp_processor_id();
	e->hdr.ts_ns = bpf_ktime_get_ns();
	e->tid = (__u32)bpf_get_current_pid_tgid();
	e->exit_code = 0;
	e->cgroup_id = bpf_get_current_cgroup_id();
	return e;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sched_process_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct sh_proc_event *e;
	__u32 tgid = p->tgid;

	bpf_map_delete_elem(&mapped_pids, &tgid); /* a new image: new mappings */
	e = proc_event_reserve(SH_EVENT_EXEC, sizeof(*e));
	if (!e)
		return 0;
	e->pid = p->tgid;
	e->ppid = p->real_parent->tgid;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), p->comm);
	if (bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), bprm->filename) < 0)
		e->filename[0] = '\0';
	bpf_ringbuf_submit(e, wakeup_flags());
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	struct sh_proc_event *e;

	/* A new thread of an existing process is not a lifecycle event. */
	if (!fork_events || child->pid != child->tgid)
		return 0;
	e = proc_event_reserve(SH_EVENT_FORK, offsetof(struct sh_proc_event, filename));
	if (!e)
		return 0;
	e->pid = child->tgid;
	e->ppid = parent->tgid;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), child->comm);
	bpf_ringbuf_submit(e, wakeup_flags());
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_process_exit, struct task_struct *p)
{
	struct sh_proc_event *e;
	__u32 tgid = p->tgid;

	if (p->pid != p->tgid)
		return 0; /* only thread-group leaders */
	bpf_map_delete_elem(&mapped_pids, &tgid);
	e = proc_event_reserve(SH_EVENT_EXIT, offsetof(struct sh_proc_event, filename));
	if (!e)
		return 0;
	e->pid = p->tgid;
	e->ppid = p->real_parent->tgid;
	e->exit_code = p->exit_code;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), p->comm);
	bpf_ringbuf_submit(e, wakeup_flags());
	return 0;
}
