// SPDX-License-Identifier: GPL-2.0
/* det_reclaim.bpf.c: memory reclaim and compaction stalls of a task. Times
 * direct reclaim (mm_vmscan_direct_reclaim_begin/end), memory cgroup
 * reclaim (mm_vmscan_memcg_reclaim_begin/end: a cgroup at its limit) and
 * direct compaction (mm_compaction_begin/end with cc->direct_compaction)
 * per task. At the begin it keeps the victim's kernel and user stacks and
 * its memory cgroup; in between it times every shrinker call made by that
 * task (mm_shrink_slab_start/end), per shrink function (e.g.
 * super_cache_scan, which prunes dentries and inodes of one superblock:
 * its file system type and device are read for the longest call). Stalls
 * of at least min_stall_ns cross to user space through the "events" ring
 * buffer. Layouts and counters are in det_reclaim.h. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "det_reclaim.h"

char LICENSE[] SEC("license") = "GPL";

#define PF_KTHREAD 0x00200000

/* Settings, written through skel->rodata before load. */
const volatile __u64 min_stall_ns = 10000000;
const volatile __u64 super_cache_scan_addr = 0; /* from kallsyms; 0: unknown */
const volatile bool user_stacks = true;

/* zero_event initializes an in-flight entry (too large for the stack). */
static const struct sh_reclaim_event zero_event;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct sh_reclaim_event);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SH_RECLAIM_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		__sync_fetch_and_add(v, 1); /* reclaim is preemptible: be safe */
}

/* read_memcg fills the task's memory cgroup id and leaf name. */
static __always_inline void read_memcg(struct task_struct *task, struct sh_reclaim_event *e)
{
	struct cgroup_subsys_state *css = NULL;
	struct kernfs_node *kn;
	struct css_set *cset;
	const char *name;
	int id;

	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return;
	id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (id < 0 || id >= 16)
		return;
	cset = BPF_CORE_READ(task, cgroups);
	if (!cset)
		return;
	bpf_probe_read_kernel(&css, sizeof(css),
			      (void *)cset + bpf_core_field_offset(struct css_set, subsys) +
				      id * sizeof(void *));
	if (!css)
		return;
	kn = BPF_CORE_READ(css, cgroup, kn);
	if (!kn)
		return;
	e->memcg_id = BPF_CORE_READ(kn, id);
	name = BPF_CORE_READ(kn, name);
	if (name)
		bpf_probe_read_kernel_str(e->memcg_name, sizeof(e->memcg_name), name);
}

static __always_inline void stall_begin(void *ctx, __u16 kind, int order, __u64 gfp)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_struct *task = bpf_get_current_task_btf();
	struct sh_reclaim_event *e;
	__u32 tid = (__u32)id;
	long ret;

	if (bpf_map_lookup_elem(&inflight, &tid)) {
		count(SH_RECLAIM_CNT_NESTED);
		return;
	}
	if (bpf_map_update_elem(&inflight, &tid, &zero_event, BPF_NOEXIST) != 0) {
		count(SH_RECLAIM_CNT_TABLE_FULL);
		return;
	}
	e = bpf_map_lookup_elem(&inflight, &tid);
	if (!e)
		return;
	count(SH_RECLAIM_CNT_STALLS);
	e->kind = kind;
	e->order = order;
	e->gfp = gfp;
	e->cpu_begin = bpf_get_smp_processor_id();
	e->pid = id >> 32;
	e->tid = tid;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->cgroup_id = bpf_get_current_cgroup_id();
	read_memcg(task, e);
	ret = bpf_get_stack(ctx, e->kstack, sizeof(e->kstack), 0);
	if (ret < 0)
		e->kstack_err = ret;
	else
		e->kstack_depth = ret / sizeof(__u64);
	if (user_stacks && !(task->flags & PF_KTHREAD)) {
		ret = bpf_get_stack(ctx, e->ustack, sizeof(e->ustack), BPF_F_USER_STACK);
		if (ret < 0)
			e->ustack_err = ret;
		else
			e->ustack_depth = ret / sizeof(__u64);
	}
	/* last: the stacks above took time that is not the stall's */
	e->ts_ns = bpf_ktime_get_ns();
}

static __always_inline void stall_end(__u16 kind, __u64 nr)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct sh_reclaim_event *e;
	__u64 now = bpf_ktime_get_ns();

	e = bpf_map_lookup_elem(&inflight, &tid);
	if (!e || e->kind != kind)
		return;
	if (now - e->ts_ns >= min_stall_ns) {
		e->duration_ns = now - e->ts_ns;
		e->cpu = bpf_get_smp_processor_id();
		e->nr = nr;
		if (bpf_ringbuf_output(&events, e, sizeof(*e), 0) == 0)
			count(SH_RECLAIM_CNT_EVENTS);
		else
			count(SH_RECLAIM_CNT_LOST);
	}
	bpf_map_delete_elem(&inflight, &tid);
}

SEC("tp_btf/mm_vmscan_direct_reclaim_begin")
int BPF_PROG(direct_reclaim_begin, int order, gfp_t gfp_flags)
{
	stall_begin(ctx, SH_RECLAIM_DIRECT, order, gfp_flags);
	return 0;
}

SEC("tp_btf/mm_vmscan_direct_reclaim_end")
int BPF_PROG(direct_reclaim_end, unsigned long nr_reclaimed)
{
	stall_end(SH_RECLAIM_DIRECT, nr_reclaimed);
	return 0;
}

SEC("tp_btf/mm_vmscan_memcg_reclaim_begin")
int BPF_PROG(memcg_reclaim_begin, int order, gfp_t gfp_flags)
{
	stall_begin(ctx, SH_RECLAIM_MEMCG, order, gfp_flags);
	return 0;
}

SEC("tp_btf/mm_vmscan_memcg_reclaim_end")
int BPF_PROG(memcg_reclaim_end, unsigned long nr_reclaimed)
{
	stall_end(SH_RECLAIM_MEMCG, nr_reclaimed);
	return 0;
}

SEC("tp_btf/mm_compaction_begin")
int BPF_PROG(compaction_begin, struct compact_control *cc, unsigned long zone_start,
	     unsigned long zone_end, bool sync)
{
	if (!BPF_CORE_READ(cc, direct_compaction))
		return 0; /* kcompactd or proactive: nobody waits on it */
	stall_begin(ctx, SH_RECLAIM_COMPACTION, BPF_CORE_READ(cc, order), BPF_CORE_READ(cc, gfp_mask));
	return 0;
}

SEC("tp_btf/mm_compaction_end")
int BPF_PROG(compaction_end, struct compact_control *cc, unsigned long zone_start,
	     unsigned long zone_end, bool sync, int status)
{
	stall_end(SH_RECLAIM_COMPACTION, (__u64)(__s64)status);
	return 0;
}

SEC("tp_btf/mm_shrink_slab_start")
int BPF_PROG(shrink_slab_start, struct shrinker *shr, struct shrink_control *sc)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct sh_reclaim_event *e = bpf_map_lookup_elem(&inflight, &tid);

	if (!e)
		return 0; /* kswapd, or a stall we do not time */
	e->slab_fn = (__u64)BPF_CORE_READ(shr, scan_objects);
	e->slab_shr = (__u64)shr;
	e->slab_start_ns = bpf_ktime_get_ns();
	return 0;
}

/* note_sb names the superblock of a super_cache_scan shrinker. */
static __always_inline void note_sb(struct sh_reclaim_shrinker *s, struct shrinker *shr)
{
	struct super_block *sb = BPF_CORE_READ(shr, private_data);
	const char *type;

	if (!sb)
		return;
	type = BPF_CORE_READ(sb, s_type, name);
	if (type)
		bpf_probe_read_kernel_str(s->sb_type, sizeof(s->sb_type), type);
	bpf_probe_read_kernel_str(s->sb_id, sizeof(s->sb_id), sb->s_id);
}

SEC("tp_btf/mm_shrink_slab_end")
int BPF_PROG(shrink_slab_end, struct shrinker *shr, int nid, int shrinker_retval)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct sh_reclaim_event *e = bpf_map_lookup_elem(&inflight, &tid);
	__u64 d, freed = shrinker_retval > 0 ? shrinker_retval : 0;
	int i;

	if (!e || !e->slab_start_ns || e->slab_shr != (__u64)shr)
		return 0;
	d = bpf_ktime_get_ns() - e->slab_start_ns;
	e->slab_start_ns = 0;
	e->slab_ns += d;
	e->slab_calls++;
	e->slab_freed += freed;
	for (i = 0; i < SH_RECLAIM_SHRINKERS; i++) {
		struct sh_reclaim_shrinker *s = &e->shrinkers[i];

		if (s->fn != 0 && s->fn != e->slab_fn)
			continue;
		s->fn = e->slab_fn;
		s->ns += d;
		s->calls++;
		s->freed += freed;
		if (d > s->max_ns) {
			s->max_ns = d;
			if (super_cache_scan_addr && s->fn == super_cache_scan_addr)
				note_sb(s, shr);
		}
		return 0;
	}
	count(SH_RECLAIM_CNT_SHRINKER_OTHER);
	return 0;
}
