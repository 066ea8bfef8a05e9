/* sampler.h: events the sampler BPF program (sampler.bpf.c) sends to user
 * space through its ring buffer, shared by the BPF and the C side.
 *
 * Rules: fixed-size types, explicit padding, and structs only grow by
 * appending fields (user space checks the size it receives against the
 * offset of the fields it reads). Every event starts with struct
 * sh_event_header. Times are CLOCK_MONOTONIC ns (bpf_ktime_get_ns). */
#ifndef SH_BPF_SAMPLER_H
#define SH_BPF_SAMPLER_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define SH_TASK_COMM_LEN 16
/* SH_MAX_STACK_DEPTH is the most frames kept per stack (the kernel's default
 * perf_event_max_stack is 127). */
#define SH_MAX_STACK_DEPTH 127
#define SH_FILENAME_LEN 256
/* SH_BUILD_ID_SIZE is the kernel's BUILD_ID_SIZE_MAX. */
#define SH_BUILD_ID_SIZE 20

/* sh_event_type says which struct follows the header. */
enum sh_event_type {
	SH_EVENT_SAMPLE = 1, /* struct sh_sample_event */
	SH_EVENT_EXEC = 2,   /* struct sh_proc_event, filename set */
	SH_EVENT_FORK = 3,   /* struct sh_proc_event: pid = child, ppid = parent */
	SH_EVENT_EXIT = 4,   /* struct sh_proc_event, exit_code set */
};

/* sh_sample_flags: per-sample conditions (sh_event_header.flags). */
enum sh_sample_flags {
	SH_SAMPLE_KSTACK_ERR = 1 << 0, /* bpf_get_stack failed for the kernel stack */
	SH_SAMPLE_USTACK_ERR = 1 << 1, /* bpf_get_stack failed for the user stack */
	SH_SAMPLE_KTHREAD = 1 << 2,    /* a kernel thread (no user stack asked) */
	SH_SAMPLE_IDLE = 1 << 3,       /* the idle task (pid 0) */
};

/* sh_counter indexes the per-CPU array "counters". */
enum sh_counter {
	SH_CNT_SAMPLES = 0,	/* perf_event program runs that passed the filters */
	SH_CNT_LOST,		/* samples dropped: ring buffer reserve failed */
	SH_CNT_KSTACK_ERR,	/* kernel stack reads that failed */
	SH_CNT_USTACK_ERR,	/* user stack reads that failed */
	SH_CNT_USTACK_DEPTH1,	/* user stacks of exactly one frame (no frame pointers) */
	SH_CNT_PROC_LOST,	/* lifecycle events dropped: ring buffer full */
	SH_CNT_UBUILD_ERR,	/* build-id user stack reads that failed */
	SH_CNT_MAX,
};

/* sh_event_header starts every event. */
struct sh_event_header {
	__u16 type;  /* enum sh_event_type */
	__u16 flags; /* enum sh_sample_flags for samples, 0 otherwise */
	__u32 cpu;
	__u64 ts_ns; /* bpf_ktime_get_ns() */
};

/* sh_ubuild_status says what a struct sh_ubuild_frame holds (the kernel's
 * enum bpf_stack_build_id_status). */
enum sh_ubuild_status {
	SH_UBUILD_EMPTY = 0, /* nothing */
	SH_UBUILD_VALID = 1, /* build_id and offset */
	SH_UBUILD_IP = 2,    /* only the address (ip): no file-backed mapping with
				a build id, or the mm could not be locked */
};

/* sh_ubuild_frame is one user frame as bpf_get_stack(BPF_F_USER_STACK |
 * BPF_F_USER_BUILD_ID) writes it: the layout of the kernel's struct
 * bpf_stack_build_id (32 bytes). */
struct sh_ubuild_frame {
	__s32 status; /* enum sh_ubuild_status */
	__u8 build_id[SH_BUILD_ID_SIZE];
	__u64 offset; /* VALID: offset of the address in the mapped file; IP: the address */
};

/* sh_sample_event is one cpu-clock sample. The stacks are innermost frame
 * first; only the first kstack_depth / ustack_depth / ubuild_depth entries
 * are valid (the ring buffer record always has the full size).
 *
 * ubuild (appended after ustack) is the same user stack again, each frame
 * as the kernel resolved it at sample time: the mapped file's build id and
 * the frame's offset in that file. With it a frame of a process that has
 * exited before user space read its /proc/PID/maps still names its file.
 * It is taken (the walk costs about as much as the rest of the sample)
 * only while the process is not in the map "mapped_pids", where user space
 * puts processes whose maps it has read. Frame i of ubuild is frame i of
 * ustack when ubuild_depth == ustack_depth (both walks unwind the same
 * registers); otherwise user space ignores ubuild. The record is 6168
 * bytes (2096 before ubuild). */
struct sh_sample_event {
	struct sh_event_header hdr;
	__u32 pid; /* thread group id */
	__u32 tid;
	__u64 cgroup_id; /* bpf_get_current_cgroup_id() (cgroup v2 id) */
	__u64 period;	 /* the event's sample period at this sample (ns of cpu-clock) */
	char comm[SH_TASK_COMM_LEN];
	__u16 kstack_depth;
	__u16 ustack_depth;
	__s16 kstack_err; /* negative errno from bpf_get_stack, 0 on success */
	__s16 ustack_err;
	__u64 kstack[SH_MAX_STACK_DEPTH];
	__u64 ustack[SH_MAX_STACK_DEPTH];
	__u16 ubuild_depth; /* 0 when not taken (setting off, kernel thread, error) */
	__s16 ubuild_err;   /* negative errno from bpf_get_stack, 0 on success */
	__u32 pad;
	struct sh_ubuild_frame ubuild[SH_MAX_STACK_DEPTH];
};

/* sh_proc_event is a process lifecycle event. For SH_EVENT_FORK and
 * SH_EVENT_EXIT the record ends before filename (size is
 * offsetof(struct sh_proc_event, filename)). */
struct sh_proc_event {
	struct sh_event_header hdr;
	__u32 pid;	 /* tgid of the process (the child for fork) */
	__u32 ppid;	 /* parent's tgid (real_parent; for fork the forking process) */
	__u32 tid;	 /* the thread that triggered the event */
	__s32 exit_code; /* exit: task->exit_code (status << 8 | signal); else 0 */
	__u64 cgroup_id;
	char comm[SH_TASK_COMM_LEN];
	char filename[SH_FILENAME_LEN]; /* exec only: bprm->filename */
};

#endif
