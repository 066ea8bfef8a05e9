/* det_syscall.h: the "syscall" detector's event, shared by
 * det_syscall.bpf.c and node-agent/det_syscall.c. Per-syscall tracepoints
 * (syscalls:sys_enter_X / sys_exit_X, not raw_syscalls: a tenth of the
 * cost) time the mmap family and calls that should be fast (open, stat);
 * calls over the threshold cross to user space with where the thread
 * spent its longest time off CPU during the call (kernel stack at that
 * switch-out, and who got the CPU if it was preempted) and its user stack.
 *
 * Rules: fixed-size types, explicit padding, structs only grow by appending
 * fields. Times are CLOCK_MONOTONIC ns (bpf_ktime_get_ns). */
#ifndef SH_BPF_DET_SYSCALL_H
#define SH_BPF_DET_SYSCALL_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define DET_SYSCALL_COMM_LEN 16
/* DET_SYSCALL_STACK_DEPTH is the most frames kept per stack. */
#define DET_SYSCALL_STACK_DEPTH 48
/* DET_SYSCALL_PATH_LEN is the most bytes of a path argument kept. */
#define DET_SYSCALL_PATH_LEN 128

/* det_syscall_nr numbers the timed calls (not the kernel's numbers: the
 * BPF program is one pair of tracepoints per call). Append only. */
enum det_syscall_nr {
	DET_SC_MMAP = 0,
	DET_SC_MUNMAP,
	DET_SC_MPROTECT,
	DET_SC_MREMAP,
	DET_SC_BRK,
	DET_SC_MADVISE,
	DET_SC_OPENAT,
	DET_SC_OPENAT2,
	DET_SC_OPEN,
	DET_SC_NEWFSTATAT,
	DET_SC_STATX,
	DET_SC_NEWSTAT,
	DET_SC_NEWLSTAT,
	DET_SC_NEWFSTAT,
	DET_SC_MAX,
};

/* det_syscall_counter indexes the per-CPU array "counters". */
enum det_syscall_counter {
	DET_SC_CNT_SLOW = 0,	/* calls over the threshold */
	DET_SC_CNT_LOST,	/* of those, dropped: ring buffer full */
	DET_SC_CNT_NO_STORAGE,	/* calls not timed: no task storage */
	DET_SC_CNT_NO_STACK,	/* switch-outs whose stack could not be kept */
	DET_SC_CNT_MAX,
};

/* det_syscall_event is one slow call. Stacks are innermost frame first;
 * only the first *depth entries are valid, a negative depth is the errno of
 * bpf_get_stack, 0 means none was taken. */
struct det_syscall_event {
	__u64 enter_ns;
	__u64 exit_ns;
	__s64 ret;
	__u64 args[3];	/* the first three arguments (mmap: addr, len, prot) */
	__u32 pid;
	__u32 tid;
	char comm[DET_SYSCALL_COMM_LEN];
	__u32 nr;	/* enum det_syscall_nr */
	__u32 cpu;	/* where it returned */
	__u32 enter_cpu;
	__u32 switches;	     /* times it left the CPU during the call */
	__u64 off_cpu_ns;    /* total time off CPU during the call */
	__u64 off_max_ns;    /* the longest single time off CPU */
	__u64 off_max_at_ns; /* when that longest time began */
	__u8 off_max_preempted; /* that time began with a preemption (runnable) */
	__u8 pad[3];
	/* ran_instead: who got the CPU when the longest time off CPU began */
	__u32 next_pid;
	__u32 next_tid;
	__u32 pad2;
	char next_comm[DET_SYSCALL_COMM_LEN];
	__s32 bdepth; /* kernel stack at the longest time off CPU began */
	__s32 udepth; /* user stack at exit */
	__u64 bstack[DET_SYSCALL_STACK_DEPTH];
	__u64 ustack[DET_SYSCALL_STACK_DEPTH];
	/* path: the path argument of open/stat calls, read at exit ("" if
	 * none or unreadable) */
	char path[DET_SYSCALL_PATH_LEN];
};

#endif
