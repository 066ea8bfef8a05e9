/* det_mmap_lock.h: the "mmap_lock" detector's event, shared by
 * det_mmap_lock.bpf.c and node-agent/det_mmap_lock.c. The mmap_lock
 * tracepoints (start_locking, acquire_returned, released) time every wait
 * for an mm's lock; waits over the threshold cross to user space with the
 * waiter's stacks and the holder inferred from a per-mm table of who
 * acquired and has not released yet (the tracepoints carry no holder).
 *
 * Rules: fixed-size types, explicit padding, structs only grow by appending
 * fields. Times are CLOCK_MONOTONIC ns (bpf_ktime_get_ns). */
#ifndef SH_BPF_DET_MMAP_LOCK_H
#define SH_BPF_DET_MMAP_LOCK_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* DET_MMAP_LOCK_COMM_LEN is the kernel's TASK_COMM_LEN. */
#define DET_MMAP_LOCK_COMM_LEN 16
/* DET_MMAP_LOCK_STACK_DEPTH is the most frames kept per stack. */
#define DET_MMAP_LOCK_STACK_DEPTH 64
/* DET_MMAP_LOCK_HOLDERS is how many concurrent holders of one mm are
 * tracked (readers share the lock); the oldest is replaced when full. */
#define DET_MMAP_LOCK_HOLDERS 4

/* det_mmap_lock_counter indexes the per-CPU array "counters". */
enum det_mmap_lock_counter {
	DET_MMAP_LOCK_CNT_WAITS = 0,	/* waits over the threshold */
	DET_MMAP_LOCK_CNT_LOST,		/* of those, dropped: ring buffer full */
	DET_MMAP_LOCK_CNT_NO_STORAGE,	/* a wait not timed: no task storage */
	DET_MMAP_LOCK_CNT_NO_MM_SLOT,	/* an acquire not recorded: mm table full */
	DET_MMAP_LOCK_CNT_HOLDER_STACKS, /* holder stacks taken at a contended release */
	DET_MMAP_LOCK_CNT_MAX,
};

/* det_mmap_lock_task is one lock holder as the per-mm table knew it. */
struct det_mmap_lock_task {
	__u32 pid; /* thread group id */
	__u32 tid;
	__u64 acquire_ns; /* when it acquired (0: unknown) */
	__u64 release_ns; /* when it released; 0: still holding, or unknown */
	char comm[DET_MMAP_LOCK_COMM_LEN];
	__u32 cpu;     /* where it acquired */
	__u8 write;    /* held for write */
	__u8 valid;    /* 0: no such task (the rest is zero) */
	__u8 holding;  /* in events: still held when the waiter got the lock */
	__u8 pad;
};

/* det_mmap_lock_event is one wait over the threshold. Stacks are innermost
 * frame first; only the first *depth entries are valid, a negative depth is
 * the errno of bpf_get_stack. */
struct det_mmap_lock_event {
	__u64 start_ns; /* the waiter's start_locking */
	__u64 end_ns;	/* its acquire_returned */
	__u64 mm;	/* the mm_struct's address (identifies the lock) */
	__u32 pid;	/* the waiter */
	__u32 tid;
	char comm[DET_MMAP_LOCK_COMM_LEN];
	__u32 cpu;	    /* where the waiter got the lock */
	__u8 write;	    /* the waiter wanted it for write */
	__u8 success;	    /* 0: a killable wait was interrupted */
	__u8 held_at_start; /* other holders in the table when the wait began */
	__u8 pad;
	/* holder: the last acquirer that had not released when the wait
	 * began (release_ns set if it released during the wait) */
	struct det_mmap_lock_task holder;
	/* releaser: the last task that released the lock during the wait (the
	 * one that let the waiter in), valid only if it released after the
	 * wait began */
	struct det_mmap_lock_task releaser;
	/* hstack: stacks taken when a holder released while others waited;
	 * they belong to task hstack_tid at hstack_ns (0: none) */
	__u32 hstack_tid;
	__u32 hstack_pid;
	__u64 hstack_ns;
	__s32 kdepth, udepth;	/* the waiter's stacks at acquire */
	__s32 hkdepth, hudepth; /* the holder's stacks at release */
	__u64 kstack[DET_MMAP_LOCK_STACK_DEPTH];
	__u64 ustack[DET_MMAP_LOCK_STACK_DEPTH];
	__u64 hkstack[DET_MMAP_LOCK_STACK_DEPTH];
	__u64 hustack[DET_MMAP_LOCK_STACK_DEPTH];
};

#endif
