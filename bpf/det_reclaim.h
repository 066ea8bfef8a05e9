/* det_reclaim.h: the reclaim stall detector's records (det_reclaim.bpf.c ->
 * node-agent/det_reclaim.c), shared by the BPF and the C side.
 *
 * Rules: fixed-size types, explicit padding, structs only grow by
 * appending fields. Times are CLOCK_MONOTONIC ns (bpf_ktime_get_ns). */
#ifndef SH_BPF_DET_RECLAIM_H
#define SH_BPF_DET_RECLAIM_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define SH_RECLAIM_COMM_LEN 16
#define SH_RECLAIM_NAME_LEN 32	   /* cgroup leaf names, fs types, s_id */
#define SH_RECLAIM_SHRINKERS 4	   /* shrink functions timed per stall */
#define SH_RECLAIM_KSTACK_DEPTH 48 /* kernel frames kept of the victim */
#define SH_RECLAIM_USTACK_DEPTH 32 /* user frames kept of the victim */

/* sh_reclaim_kind says what stalled the task. */
enum sh_reclaim_kind {
	SH_RECLAIM_DIRECT = 1,	   /* mm_vmscan_direct_reclaim_begin/end */
	SH_RECLAIM_MEMCG = 2,	   /* mm_vmscan_memcg_reclaim_begin/end */
	SH_RECLAIM_COMPACTION = 3, /* mm_compaction_begin/end of a direct compaction */
};

/* sh_reclaim_counter indexes the per-CPU array "counters". */
enum sh_reclaim_counter {
	SH_RECLAIM_CNT_STALLS = 0,  /* reclaims / compactions timed */
	SH_RECLAIM_CNT_EVENTS,	    /* stalls over the threshold sent */
	SH_RECLAIM_CNT_LOST,	    /* events dropped: ring buffer reserve failed */
	SH_RECLAIM_CNT_TABLE_FULL,  /* stalls not timed: the in-flight map was full */
	SH_RECLAIM_CNT_NESTED,	    /* a begin while the task was already timed */
	SH_RECLAIM_CNT_SHRINKER_OTHER, /* shrink calls beyond SH_RECLAIM_SHRINKERS functions */
	SH_RECLAIM_CNT_MAX,
};

/* sh_reclaim_shrinker is the time spent in one shrink function (the
 * shrinker's scan_objects callback, e.g. super_cache_scan) during a stall. */
struct sh_reclaim_shrinker {
	__u64 fn;     /* kernel address of scan_objects */
	__u64 ns;     /* total time between mm_shrink_slab_start and _end */
	__u64 max_ns; /* its longest single call */
	__u64 freed;  /* objects freed (the calls' return values) */
	__u32 calls;
	__u32 pad;
	char sb_type[SH_RECLAIM_NAME_LEN]; /* super_cache_scan: the longest call's fs type */
	char sb_id[SH_RECLAIM_NAME_LEN];   /* ... and its s_id (device) */
};

/* sh_reclaim_event is one stall of task tid: it began at ts_ns (on
 * cpu_begin) and lasted duration_ns, ending on cpu. nr is nr_reclaimed
 * (pages) for reclaim, the compaction status for compaction. The victim's
 * stacks are taken at the begin. In-flight stalls are kept in this very
 * layout (the end fields still zero). */
struct sh_reclaim_event {
	__u64 ts_ns;
	__u64 duration_ns;
	__u32 cpu;
	__u32 cpu_begin;
	__u32 pid;
	__u32 tid;
	char comm[SH_RECLAIM_COMM_LEN];
	__u16 kind; /* enum sh_reclaim_kind */
	__u16 pad0;
	__s32 order;
	__u64 gfp;
	__u64 nr;
	__u64 cgroup_id;			/* bpf_get_current_cgroup_id (cgroup v2) */
	__u64 memcg_id;				/* the task's memory cgroup's kernfs id */
	char memcg_name[SH_RECLAIM_NAME_LEN];	/* ... and its leaf name */
	__u64 slab_ns;				/* time in all shrinkers */
	__u64 slab_calls;
	__u64 slab_freed;
	__u64 slab_start_ns; /* in flight: the current shrink call's start */
	__u64 slab_fn;	     /* in flight: its scan_objects */
	__u64 slab_shr;	     /* in flight: its struct shrinker */
	struct sh_reclaim_shrinker shrinkers[SH_RECLAIM_SHRINKERS];
	__u16 kstack_depth;
	__u16 ustack_depth;
	__s16 kstack_err; /* negative errno from bpf_get_stack, 0 on success */
	__s16 ustack_err;
	__u64 kstack[SH_RECLAIM_KSTACK_DEPTH];
	__u64 ustack[SH_RECLAIM_USTACK_DEPTH];
};

#endif
