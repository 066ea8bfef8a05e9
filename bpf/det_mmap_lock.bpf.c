// SPDX-License-Identifier: GPL-2.0
/* det_mmap_lock.bpf.c: the "mmap_lock" detector. tp_btf programs on the
 * mmap_lock tracepoints time each task's wait for an mm's lock
 * (start_locking -> acquire_returned) in task storage, and keep a per-mm
 * table of the tasks that acquired and have not released yet, plus the last
 * release. The tracepoints name no holder, so the holder is inferred: the
 * last acquirer still holding when the wait began, and the task whose
 * release let the waiter in. When a holder releases while others wait, its
 * kernel and user stacks are kept (at most once a millisecond per mm), so
 * the holder's stack costs nothing unless the lock is contended. Only waits
 * over threshold_ns cross to user space (ring buffer "events"). Event
 * layout in det_mmap_lock.h. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "det_mmap_lock.h"

char LICENSE[] SEC("license") = "GPL";

#define PF_KTHREAD 0x00200000

/* Settings, written through skel->rodata before load. */
const volatile __u64 threshold_ns = 1000000;	     /* report waits longer than this */
const volatile __u64 stale_ns = 10000000000ull;	     /* ignore table entries older than this */
const volatile __u64 holder_stack_gap_ns = 1000000; /* holder stacks at most this often per mm */
const volatile bool user_stacks = true;

/* mm_state is what the table knows about one mm's lock. Updated from
 * several CPUs without a lock: a torn entry costs one wrong guess, which
 * the cross-checks in user space (tid, times) mostly catch. */
struct mm_state {
	struct det_mmap_lock_task held[DET_MMAP_LOCK_HOLDERS]; /* valid = holding */
	struct det_mmap_lock_task last_release;
	__u32 nwait; /* tasks between start_locking and acquire_returned */
	__u32 pad;
};

/* holder_stack is a holder's stacks taken when it released with waiters. */
struct holder_stack {
	__u32 tid, pid;
	__u64 ns;
	__s32 kdepth, udepth;
	__u64 kstack[DET_MMAP_LOCK_STACK_DEPTH];
	__u64 ustack[DET_MMAP_LOCK_STACK_DEPTH];
};

/* wait_state is one task's lock attempt in progress. */
struct wait_state {
	__u64 start_ns;
	__u64 mm;
	__u8 write;
	__u8 active;
	__u8 counted; /* added to its mm's nwait */
	__u8 nheld;   /* other holders when it began */
	__u32 pad;
	struct det_mmap_lock_task holder; /* the last acquirer holding when it began */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* mm address */
	__type(value, struct mm_state);
} mms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 512);
	__type(key, __u64); /* mm address */
	__type(value, struct holder_stack);
} holder_stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct wait_state);
} waits SEC(".maps");

/* zero: an all-zero value to create table entries from (never written). */
struct zero_value {
	struct holder_stack hs;
	struct mm_state st;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct zero_value);
} zero SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DET_MMAP_LOCK_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1;
}

static __always_inline struct zero_value *zeroes(void)
{
	__u32 k = 0;

	return bpf_map_lookup_elem(&zero, &k);
}

/* mm_state_get finds mm's entry, creating it when create is set. */
static __always_inline struct mm_state *mm_state_get(__u64 mm, bool create)
{
	struct mm_state *st = bpf_map_lookup_elem(&mms, &mm);
	struct zero_value *z;

	if (st || !create)
		return st;
	z = zeroes();
	if (!z)
		return NULL;
	bpf_map_update_elem(&mms, &mm, &z->st, BPF_NOEXIST);
	st = bpf_map_lookup_elem(&mms, &mm);
	if (!st)
		count(DET_MMAP_LOCK_CNT_NO_MM_SLOT);
	return st;
}

static __always_inline bool fresh(const struct det_mmap_lock_task *t, __u64 now)
{
	return t->valid && t->acquire_ns && now - t->acquire_ns < stale_ns;
}

SEC("tp_btf/mmap_lock_start_locking")
int BPF_PROG(mmap_lock_start_locking, struct mm_struct *mm, bool write)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();
	__u64 key = (__u64)mm;
	__u64 best = 0;
	struct wait_state *w;
	struct mm_state *st;

	w = bpf_task_storage_get(&waits, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!w) {
		count(DET_MMAP_LOCK_CNT_NO_STORAGE);
		return 0;
	}
	w->start_ns = now;
	w->mm = key;
	w->write = write;
	w->active = 1;
	w->counted = 0;
	w->nheld = 0;
	w->holder.valid = 0;
	st = mm_state_get(key, false);
	if (!st)
		return 0;
	for (int i = 0; i < DET_MMAP_LOCK_HOLDERS; i++) {
		struct det_mmap_lock_task *h = &st->held[i];

		if (!fresh(h, now) || h->tid == tid)
			continue;
		w->nheld++;
		if (h->acquire_ns > best) {
			best = h->acquire_ns;
			w->holder = *h;
		}
	}
	__sync_fetch_and_add(&st->nwait, 1);
	w->counted = 1;
	return 0;
}

/* holder_refresh fills in whether t still held the lock, or when it let go. */
static __always_inline void holder_refresh(struct det_mmap_lock_task *t, const struct mm_state *st)
{
	t->holding = 0;
	t->release_ns = 0;
	if (!t->valid)
		return;
	for (int i = 0; i < DET_MMAP_LOCK_HOLDERS; i++) {
		const struct det_mmap_lock_task *h = &st->held[i];

		if (h->valid && h->tid == t->tid && h->acquire_ns == t->acquire_ns)
			t->holding = 1;
	}
	if (!t->holding && st->last_release.tid == t->tid &&
	    st->last_release.acquire_ns == t->acquire_ns)
		t->release_ns = st->last_release.release_ns;
}

static __always_inline void emit(void *ctx, struct wait_state *w, struct mm_state *st, __u64 now,
				 bool success)
{
	struct holder_stack *hs;
	struct det_mmap_lock_event *e;
	struct task_struct *task;
	__u64 id = bpf_get_current_pid_tgid();
	long ret;

	count(DET_MMAP_LOCK_CNT_WAITS);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(DET_MMAP_LOCK_CNT_LOST);
		return;
	}
	e->start_ns = w->start_ns;
	e->end_ns = now;
	e->mm = w->mm;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->cpu = bpf_get_smp_processor_id();
	e->write = w->write;
	e->success = success;
	e->held_at_start = w->nheld;
	e->pad = 0;
	e->holder = w->holder;
	__builtin_memset(&e->releaser, 0, sizeof(e->releaser));
	e->hstack_tid = 0;
	e->hstack_pid = 0;
	e->hstack_ns = 0;
	e->hkdepth = 0;
	e->hudepth = 0;
	if (st) {
		holder_refresh(&e->holder, st);
		if (st->last_release.valid && st->last_release.release_ns >= w->start_ns &&
		    st->last_release.tid != e->tid)
			e->releaser = st->last_release;
		hs = bpf_map_lookup_elem(&holder_stacks, &w->mm);
		if (hs && hs->ns >= w->start_ns) { /* taken during this wait */
			e->hstack_tid = hs->tid;
			e->hstack_pid = hs->pid;
			e->hstack_ns = hs->ns;
			e->hkdepth = hs->kdepth;
			e->hudepth = hs->udepth;
			bpf_probe_read_kernel(e->hkstack, sizeof(e->hkstack), hs->kstack);
			bpf_probe_read_kernel(e->hustack, sizeof(e->hustack), hs->ustack);
		}
	}

	ret = bpf_get_stack(ctx, e->kstack, sizeof(e->kstack), 0);
	e->kdepth = ret < 0 ? (__s32)ret : (__s32)(ret / sizeof(__u64));
	e->udepth = 0;
	task = bpf_get_current_task_btf();
	if (user_stacks && !(task->flags & PF_KTHREAD)) {
		ret = bpf_get_stack(ctx, e->ustack, sizeof(e->ustack), BPF_F_USER_STACK);
		e->udepth = ret < 0 ? (__s32)ret : (__s32)(ret / sizeof(__u64));
	}
	bpf_ringbuf_submit(e, 0);
}

SEC("tp_btf/mmap_lock_acquire_returned")
int BPF_PROG(mmap_lock_acquire_returned, struct mm_struct *mm, bool write, bool success)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	__u64 now = bpf_ktime_get_ns();
	__u64 key = (__u64)mm;
	struct det_mmap_lock_task *slot = NULL;
	struct mm_state *st;
	struct wait_state *w;
	__u64 oldest = ~0ull;

	w = bpf_task_storage_get(&waits, task, 0, 0);
	st = mm_state_get(key, success);
	if (w && w->active && w->mm == key) {
		w->active = 0;
		if (w->counted && st)
			__sync_fetch_and_add(&st->nwait, -1);
		if (now - w->start_ns >= threshold_ns)
			emit(ctx, w, st, now, success);
	}
	if (!success || !st)
		return 0;

	/* Record this task as a holder: its own slot (downgrade, or a missed
	 * release), else a free one, else the oldest. */
	for (int i = 0; i < DET_MMAP_LOCK_HOLDERS; i++) {
		struct det_mmap_lock_task *h = &st->held[i];

		if (h->valid && h->tid == tid) {
			slot = h;
			break;
		}
	}
	if (!slot) {
		for (int i = 0; i < DET_MMAP_LOCK_HOLDERS; i++) {
			struct det_mmap_lock_task *h = &st->held[i];

			if (!h->valid) {
				slot = h;
				break;
			}
			if (h->acquire_ns < oldest) {
				oldest = h->acquire_ns;
				slot = h;
			}
		}
	}
	if (!slot)
		return 0;
	slot->valid = 0; /* readers of a half-written slot skip it */
	slot->pid = id >> 32;
	slot->tid = tid;
	slot->acquire_ns = now;
	slot->release_ns = 0;
	bpf_get_current_comm(slot->comm, sizeof(slot->comm));
	slot->cpu = bpf_get_smp_processor_id();
	slot->write = write;
	slot->holding = 0;
	slot->pad = 0;
	slot->valid = 1;
	return 0;
}

/* take_holder_stack keeps the releasing task's stacks for the waiters. */
static __always_inline void take_holder_stack(void *ctx, __u64 key, __u64 now, __u64 id)
{
	struct task_struct *task;
	struct holder_stack *hs;
	struct zero_value *z;
	long ret;

	hs = bpf_map_lookup_elem(&holder_stacks, &key);
	if (!hs) {
		z = zeroes();
		if (!z)
			return;
		bpf_map_update_elem(&holder_stacks, &key, &z->hs, BPF_NOEXIST);
		hs = bpf_map_lookup_elem(&holder_stacks, &key);
		if (!hs)
			return;
	} else if (hs->tid == (__u32)id && now - hs->ns < holder_stack_gap_ns) {
		return;
	}
	count(DET_MMAP_LOCK_CNT_HOLDER_STACKS);
	hs->tid = (__u32)id;
	hs->pid = id >> 32;
	hs->ns = now;
	ret = bpf_get_stack(ctx, hs->kstack, sizeof(hs->kstack), 0);
	hs->kdepth = ret < 0 ? (__s32)ret : (__s32)(ret / sizeof(__u64));
	hs->udepth = 0;
	task = bpf_get_current_task_btf();
	if (user_stacks && !(task->flags & PF_KTHREAD)) {
		ret = bpf_get_stack(ctx, hs->ustack, sizeof(hs->ustack), BPF_F_USER_STACK);
		hs->udepth = ret < 0 ? (__s32)ret : (__s32)(ret / sizeof(__u64));
	}
}

SEC("tp_btf/mmap_lock_released")
int BPF_PROG(mmap_lock_released, struct mm_struct *mm, bool write)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	__u64 now = bpf_ktime_get_ns();
	__u64 key = (__u64)mm;
	struct det_mmap_lock_task *rel;
	struct mm_state *st;
	__u64 acquired = 0;
	__u32 cpu = bpf_get_smp_processor_id();

	st = mm_state_get(key, false);
	if (!st)
		return 0;
	for (int i = 0; i < DET_MMAP_LOCK_HOLDERS; i++) {
		struct det_mmap_lock_task *h = &st->held[i];

		if (h->valid && h->tid == tid) {
			acquired = h->acquire_ns;
			cpu = h->cpu;
			h->valid = 0;
			break;
		}
	}
	rel = &st->last_release;
	rel->valid = 0;
	rel->pid = id >> 32;
	rel->tid = tid;
	rel->acquire_ns = acquired;
	rel->release_ns = now;
	bpf_get_current_comm(rel->comm, sizeof(rel->comm));
	rel->cpu = cpu;
	rel->write = write;
	rel->holding = 0;
	rel->pad = 0;
	rel->valid = 1;
	if (st->nwait > 0 && st->nwait < 0x80000000u)
		take_holder_stack(ctx, key, now, id);
	return 0;
}
