// SPDX-License-Identifier: GPL-2.0
/* det_syscall.bpf.c: the "syscall" detector. One pair of per-syscall
 * tracepoints (syscalls:sys_enter_X / sys_exit_X) per timed call keeps the
 * call's start in task storage; a tp_btf program on sched_switch notes,
 * only for tasks inside a timed call, when they leave and regain the CPU,
 * and keeps the kernel stack of the longest time off CPU (double-buffered
 * in a second task storage, created at the first switch-out) and who got
 * the CPU. Calls longer than threshold_ns cross to user space (ring buffer
 * "events") with that stack and the user stack at exit. Event layout in
 * det_syscall.h. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "det_syscall.h"

char LICENSE[] SEC("license") = "GPL";

#define PF_KTHREAD 0x00200000

/* Settings, written through skel->rodata before load. */
const volatile __u64 threshold_ns = 5000000;
const volatile bool user_stacks = true;
const volatile bool block_stacks = true;

/* call_state is one task's timed call in progress. */
struct call_state {
	__u64 enter_ns;
	__u64 args[3];
	__u64 off_start_ns; /* when it left the CPU; 0 while on CPU */
	__u64 off_total_ns;
	__u64 off_max_ns;
	__u64 off_max_at_ns;
	__u32 nr;     /* enum det_syscall_nr */
	__u32 active; /* inside a timed call */
	__u32 enter_cpu;
	__u32 switches;
	__u8 pending; /* stack slot written at the last switch-out */
	__u8 best;    /* stack slot of the longest time off CPU */
	__u8 pending_preempt;
	__u8 best_preempt;
	__u32 pending_next_pid, pending_next_tid;
	__u32 best_next_pid, best_next_tid;
	__u32 pad;
	char pending_next_comm[DET_SYSCALL_COMM_LEN];
	char best_next_comm[DET_SYSCALL_COMM_LEN];
};

/* call_stacks holds two kernel stacks: the longest time off CPU so far and
 * the one being measured. */
struct call_stacks {
	__s32 depth[2];
	__u64 ips[2][DET_SYSCALL_STACK_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct call_state);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct call_stacks);
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DET_SC_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1;
}

/* on_enter reads only the call's nargs arguments: the kernel refuses to
 * attach a program that reads past the tracepoint's record. */
static __always_inline int on_enter(struct trace_event_raw_sys_enter *ctx, __u32 nr, int nargs)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct call_state *c;

	c = bpf_task_storage_get(&calls, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!c) {
		count(DET_SC_CNT_NO_STORAGE);
		return 0;
	}
	c->enter_ns = bpf_ktime_get_ns();
	c->args[0] = nargs > 0 ? ctx->args[0] : 0;
	c->args[1] = nargs > 1 ? ctx->args[1] : 0;
	c->args[2] = nargs > 2 ? ctx->args[2] : 0;
	c->off_start_ns = 0;
	c->off_total_ns = 0;
	c->off_max_ns = 0;
	c->off_max_at_ns = 0;
	c->nr = nr;
	c->enter_cpu = bpf_get_smp_processor_id();
	c->switches = 0;
	c->active = 1;
	return 0;
}

static __always_inline int on_exit(struct trace_event_raw_sys_exit *ctx, __u32 nr)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 id = bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();
	struct det_syscall_event *e;
	struct call_stacks *s;
	struct call_state *c;
	long ret;

	c = bpf_task_storage_get(&calls, task, 0, 0);
	if (!c || !c->active || c->nr != nr)
		return 0;
	c->active = 0;
	if (now - c->enter_ns < threshold_ns)
		return 0;
	count(DET_SC_CNT_SLOW);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(DET_SC_CNT_LOST);
		return 0;
	}
	e->enter_ns = c->enter_ns;
	e->exit_ns = now;
	e->ret = ctx->ret;
	e->args[0] = c->args[0];
	e->args[1] = c->args[1];
	e->args[2] = c->args[2];
	e->pid = id >> 32;
	e->tid = (__u32)id;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->nr = nr;
	e->cpu = bpf_get_smp_processor_id();
	e->enter_cpu = c->enter_cpu;
	e->switches = c->switches;
	e->off_cpu_ns = c->off_total_ns;
	e->off_max_ns = c->off_max_ns;
	e->off_max_at_ns = c->off_max_at_ns;
	e->off_max_preempted = c->best_preempt;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	e->pad2 = 0;
	e->bdepth = 0;
	if (c->off_max_ns) {
		e->next_pid = c->best_next_pid;
		e->next_tid = c->best_next_tid;
		__builtin_memcpy(e->next_comm, c->best_next_comm, sizeof(e->next_comm));
		s = bpf_task_storage_get(&stacks, task, 0, 0);
		if (s) {
			__u32 b = c->best & 1;

			e->bdepth = s->depth[b];
			bpf_probe_read_kernel(e->bstack, sizeof(e->bstack), s->ips[b]);
		}
	} else {
		e->next_pid = 0;
		e->next_tid = 0;
		__builtin_memset(e->next_comm, 0, sizeof(e->next_comm));
	}
	e->path[0] = '\0';
	if (nr == DET_SC_OPEN || nr == DET_SC_NEWSTAT || nr == DET_SC_NEWLSTAT)
		bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)c->args[0]);
	else if (nr == DET_SC_OPENAT || nr == DET_SC_OPENAT2 || nr == DET_SC_NEWFSTATAT ||
		 nr == DET_SC_STATX)
		bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)c->args[1]);
	e->udepth = 0;
	if (user_stacks) {
		ret = bpf_get_stack(ctx, e->ustack, sizeof(e->ustack), BPF_F_USER_STACK);
		e->udepth = ret < 0 ? (__s32)ret : (__s32)(ret / sizeof(__u64));
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

#define TIMED_CALL(name, nr, nargs)                                                \
	SEC("tracepoint/syscalls/sys_enter_" #name)                               \
	int sys_enter_##name(struct trace_event_raw_sys_enter *ctx)               \
	{                                                                          \
		return on_enter(ctx, nr, nargs);                                   \
	}                                                                          \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                \
	int sys_exit_##name(struct trace_event_raw_sys_exit *ctx)                 \
	{                                                                          \
		return on_exit(ctx, nr);                                           \
	}

TIMED_CALL(mmap, DET_SC_MMAP, 6)
TIMED_CALL(munmap, DET_SC_MUNMAP, 2)
TIMED_CALL(mprotect, DET_SC_MPROTECT, 3)
TIMED_CALL(mremap, DET_SC_MREMAP, 5)
TIMED_CALL(brk, DET_SC_BRK, 1)
TIMED_CALL(madvise, DET_SC_MADVISE, 3)
TIMED_CALL(openat, DET_SC_OPENAT, 4)
TIMED_CALL(openat2, DET_SC_OPENAT2, 4)
TIMED_CALL(open, DET_SC_OPEN, 3)
TIMED_CALL(newfstatat, DET_SC_NEWFSTATAT, 4)
TIMED_CALL(statx, DET_SC_STATX, 5)
TIMED_CALL(newstat, DET_SC_NEWSTAT, 2)
TIMED_CALL(newlstat, DET_SC_NEWLSTAT, 2)
TIMED_CALL(newfstat, DET_SC_NEWFSTAT, 2)

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct call_stacks *s;
	struct call_state *c;
	__u64 now = 0;
	long ret;

	c = bpf_task_storage_get(&calls, prev, 0, 0);
	if (c && c->active) {
		now = bpf_ktime_get_ns();
		c->off_start_ns = now;
		c->switches++;
		c->pending = (c->best & 1) ^ 1;
		c->pending_preempt = preempt;
		c->pending_next_pid = next->tgid;
		c->pending_next_tid = next->pid;
		bpf_probe_read_kernel(c->pending_next_comm, sizeof(c->pending_next_comm), next->comm);
		if (block_stacks) {
			s = bpf_task_storage_get(&stacks, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
			if (s) {
				__u32 p = c->pending & 1;

				/* prev is the current task here: its kernel stack */
				ret = bpf_get_stack(ctx, s->ips[p], sizeof(s->ips[p]), 0);
				s->depth[p] = ret < 0 ? (__s32)ret : (__s32)(ret / sizeof(__u64));
			} else {
				count(DET_SC_CNT_NO_STACK);
			}
		}
	}

	c = bpf_task_storage_get(&calls, next, 0, 0);
	if (c && c->active && c->off_start_ns) {
		__u64 off;

		if (!now)
			now = bpf_ktime_get_ns();
		off = now - c->off_start_ns;
		c->off_total_ns += off;
		if (off > c->off_max_ns) {
			c->off_max_ns = off;
			c->off_max_at_ns = c->off_start_ns;
			c->best = c->pending;
			c->best_preempt = c->pending_preempt;
			c->best_next_pid = c->pending_next_pid;
			c->best_next_tid = c->pending_next_tid;
			__builtin_memcpy(c->best_next_comm, c->pending_next_comm,
					 sizeof(c->best_next_comm));
		}
		c->off_start_ns = 0;
	}
	return 0;
}
