/* det_reclaim.c: the memory reclaim stall detector ("reclaim"). Loads
 * bpf/det_reclaim.bpf.c, which times direct reclaim, memory cgroup reclaim
 * and direct compaction per task, and the shrinkers called inside them,
 * and sends the stalls over reclaim_threshold_ns to this side. Each
 * becomes a "reclaim" spike event:
 *   victim    the task that stalled (cgroup: its memory controller's
 *             path), with its kernel and user stacks at the stall's begin
 *   culprits  "shrinker": each shrink function that ran inside the stall,
 *             longest total first; comm is the function's symbol (e.g.
 *             super_cache_scan: dentries and inodes), pid/tid the victim's
 *             (the shrinker runs in its context), on_cpu_ns the time
 *             spent in it (calls included sleeping on locks)
 *   detail    "direct", "memcg" or "compaction"
 *   attrs     nr_reclaimed (pages; compaction: status), order, gfp, memcg,
 *             memcg_id, shrinker / shrinker_ns / shrinker_max_ns /
 *             shrinker_calls / shrinker_freed (the longest one, with the
 *             file system it pruned for super_cache_scan), shrinkers (all,
 *             "symbol:ms/calls"), slab_ns / slab_calls / slab_freed (all
 *             shrinkers together), cpu_begin */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "../bpf/det_reclaim.h"
#include "det_reclaim.skel.h"
#include "detect.h"
#include "events.h"
#include "log.h"
#include "procs.h"
#include "symbolize.h"
#include "timeutil.h"

/* REPORT_S: how often lost or untimed stalls are logged (when any). */
#define REPORT_S 60

struct reclaim_state {
	struct agent_det_ctx ctx;
	struct det_reclaim_bpf *skel;
	struct ring_buffer *rb;
	int ncpus;
	uint64_t reported[SH_RECLAIM_CNT_MAX];
	uint64_t malformed, emitted, suppressed, failed;
	int64_t next_report_ns;
};

static const char *kind_name(uint16_t k)
{
	switch (k) {
	case SH_RECLAIM_DIRECT:
		return "direct";
	case SH_RECLAIM_MEMCG:
		return "memcg";
	case SH_RECLAIM_COMPACTION:
		return "compaction";
	default:
		return "unknown";
	}
}

static const char *compact_status(int64_t s)
{
	static const char *names[] = { "not_suitable_zone", "skipped",	"deferred",
				       "no_suitable_page",  "continue", "complete",
				       "partial_skipped",   "contended", "success" };

	return s >= 0 && s < (int64_t)(sizeof(names) / sizeof(names[0])) ? names[s] : "unknown";
}


static void str_copy(char *dst, size_t cap, const char *src, size_t n)
{
	size_t len = strnlen(src, n);

	if (len >= cap)
		len = cap - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* shrinker_name writes fn's symbol (or its address) into buf. */
static void shrinker_name(struct reclaim_state *st, uint64_t fn, char *buf, size_t len)
{
	struct agent_frame f;

	if (st->ctx.sym && agent_symbolize_kernel(st->ctx.sym, fn, &f) == 0 && f.name)
		snprintf(buf, len, "%s", f.name);
	else
		snprintf(buf, len, "0x%llx", (unsigned long long)fn);
}

/* tracing_frames counts the leading frames of a stack taken in a
 * tracepoint program that belong to the tracing machinery (the BPF
 * program, bpf_trace_run*, __bpf_trace_*, __traceiter_*), to drop them. */
static size_t tracing_frames(struct agent_symbolizer *sym, const uint64_t *ips, size_t n)
{
	static const char *glue[] = { "bpf_prog_", "bpf_trace_run", "__bpf_trace_", "__traceiter_",
				      "bpf_trampoline_" };
	size_t skip = 0;

	for (size_t i = 0; sym && i < n && i < 6; i++) {
		struct agent_frame f;
		bool is_glue = agent_symbolize_kernel(sym, ips[i], &f) != 0 || !f.name;

		for (size_t g = 0; !is_glue && g < sizeof(glue) / sizeof(glue[0]); g++)
			is_glue = strncmp(f.name, glue[g], strlen(glue[g])) == 0;
		if (is_glue)
			skip = i + 1;
	}
	return skip < n ? skip : 0;
}

static int add_culprit(Spikehound__SpikeEvent *ev, Spikehound__Task *t)
{
	Spikehound__Task **v;

	if (!t)
		return -ENOMEM;
	v = realloc(ev->culprits, (ev->n_culprits + 1) * sizeof(*v));
	if (!v) {
		spikehound__task__free_unpacked(t, NULL);
		return -ENOMEM;
	}
	ev->culprits = v;
	ev->culprits[ev->n_culprits++] = t;
	return 0;
}

static int by_ns_desc(const void *a, const void *b)
{
	const struct sh_reclaim_shrinker *x = a, *y = b;

	return x->ns < y->ns ? 1 : x->ns > y->ns ? -1 : 0;
}

/* add_shrinkers names the shrink functions, longest total first. */
static int add_shrinkers(struct reclaim_state *st, Spikehound__SpikeEvent *ev,
			 const struct sh_reclaim_event *e)
{
	struct sh_reclaim_shrinker s[SH_RECLAIM_SHRINKERS];
	char name[128], list[512], sb[2 * SH_RECLAIM_NAME_LEN + 16];
	size_t n = 0, off = 0;
	int rv = 0;

	for (size_t i = 0; i < SH_RECLAIM_SHRINKERS; i++)
		if (e->shrinkers[i].fn && e->shrinkers[i].calls)
			s[n++] = e->shrinkers[i];
	qsort(s, n, sizeof(s[0]), by_ns_desc);
	list[0] = '\0';
	for (size_t i = 0; i < n && rv == 0; i++) {
		Spikehound__Task *t;
		int w;

		shrinker_name(st, s[i].fn, name, sizeof(name));
		t = agent_task_new((int32_t)e->pid, (int32_t)e->tid, name, "shrinker");
		if (t)
			t->on_cpu_ns = s[i].ns;
		rv = add_culprit(ev, t);
		w = snprintf(list + off, sizeof(list) - off, "%s%s:%.1fms/%u", i ? "," : "", name,
			     s[i].ns / 1e6, s[i].calls);
		if (w > 0 && (size_t)w < sizeof(list) - off)
			off += (size_t)w;
		if (i != 0 || rv != 0)
			continue;
		sb[0] = '\0';
		if (s[i].sb_type[0]) {
			char type[SH_RECLAIM_NAME_LEN + 1], id[SH_RECLAIM_NAME_LEN + 1];

			str_copy(type, sizeof(type), s[i].sb_type, sizeof(s[i].sb_type));
			str_copy(id, sizeof(id), s[i].sb_id, sizeof(s[i].sb_id));
			snprintf(sb, sizeof(sb), " (%s %s)", type, id);
		}
		rv = agent_event_attr(ev, "shrinker", "%s%s", name, sb);
		rv = rv ? rv
			: agent_event_attr(ev, "shrinker_ns", "%llu", (unsigned long long)s[i].ns);
		rv = rv ? rv
			: agent_event_attr(ev, "shrinker_max_ns", "%llu",
					   (unsigned long long)s[i].max_ns);
		rv = rv ? rv : agent_event_attr(ev, "shrinker_calls", "%u", s[i].calls);
		rv = rv ? rv
			: agent_event_attr(ev, "shrinker_freed", "%llu",
					   (unsigned long long)s[i].freed);
	}
	if (rv == 0 && n)
		rv = agent_event_attr(ev, "shrinkers", "%s", list);
	if (rv == 0 && e->slab_calls) {
		rv = agent_event_attr(ev, "slab_ns", "%llu", (unsigned long long)e->slab_ns);
		rv = rv ? rv
			: agent_event_attr(ev, "slab_calls", "%llu",
					   (unsigned long long)e->slab_calls);
		rv = rv ? rv
			: agent_event_attr(ev, "slab_freed", "%llu",
					   (unsigned long long)e->slab_freed);
	}
	return rv;
}

static int set_victim(struct reclaim_state *st, Spikehound__SpikeEvent *ev,
		      const struct sh_reclaim_event *e)
{
	char comm[SH_RECLAIM_COMM_LEN + 1], memcg[SH_RECLAIM_NAME_LEN + 1];
	char *cg = agent_proc_cgroup(e->pid, "memory");
	Spikehound__Task *t;
	int rv;

	str_copy(comm, sizeof(comm), e->comm, sizeof(e->comm));
	str_copy(memcg, sizeof(memcg), e->memcg_name, sizeof(e->memcg_name));
	t = ev->victim = agent_task_new((int32_t)e->pid, (int32_t)e->tid, comm, "");
	if (!t) {
		free(cg);
		return -ENOMEM;
	}
	if (cg) {
		free(t->cgroup);
		t->cgroup = cg;
	} else if (memcg[0]) {
		free(t->cgroup);
		t->cgroup = strdup(memcg); /* the process is gone: the leaf name */
		if (!t->cgroup)
			return -ENOMEM;
	}
	if (e->kstack_depth) {
		const uint64_t *ips = (const uint64_t *)e->kstack;
		size_t n = e->kstack_depth < SH_RECLAIM_KSTACK_DEPTH ? e->kstack_depth
								 : SH_RECLAIM_KSTACK_DEPTH;
		size_t skip = tracing_frames(st->ctx.sym, ips, n);

		if ((rv = agent_task_set_kstack(t, st->ctx.sym, ips + skip, n - skip)) != 0)
			return rv;
	}
	if (e->ustack_depth &&
	    (rv = agent_task_set_ustack(t, st->ctx.sym, e->pid, (int64_t)e->ts_ns,
					(const uint64_t *)e->ustack,
					e->ustack_depth < SH_RECLAIM_USTACK_DEPTH
						? e->ustack_depth
						: SH_RECLAIM_USTACK_DEPTH)) != 0)
		return rv;
	rv = agent_event_attr(ev, "memcg", "%s", cg ? cg : memcg);
	return rv ? rv : agent_event_attr(ev, "memcg_id", "%llu", (unsigned long long)e->memcg_id);
}

/* build_event turns a BPF record into a spike event; NULL on ENOMEM. */
static Spikehound__SpikeEvent *build_event(struct reclaim_state *st,
					   const struct sh_reclaim_event *e)
{
	Spikehound__SpikeEvent *ev = malloc(sizeof(*ev));
	int rv;

	if (!ev)
		return NULL;
	spikehound__spike_event__init(ev);
	ev->kind = strdup("reclaim");
	ev->detail = strdup(kind_name(e->kind));
	ev->start_ns = (int64_t)e->ts_ns + st->ctx.wall_minus_mono_ns;
	ev->duration_ns = e->duration_ns;
	ev->cpu = (int32_t)e->cpu;
	if (!ev->kind || !ev->detail)
		goto fail;
	rv = set_victim(st, ev, e);
	rv = rv ? rv : add_shrinkers(st, ev, e);
	if (rv == 0 && e->kind == SH_RECLAIM_COMPACTION)
		rv = agent_event_attr(ev, "status", "%s", compact_status((int64_t)e->nr));
	else if (rv == 0)
		rv = agent_event_attr(ev, "nr_reclaimed", "%llu", (unsigned long long)e->nr);
	rv = rv ? rv : agent_event_attr(ev, "order", "%d", e->order);
	rv = rv ? rv : agent_event_attr(ev, "gfp", "0x%llx", (unsigned long long)e->gfp);
	rv = rv ? rv : agent_event_attr(ev, "cpu_begin", "%u", e->cpu_begin);
	if (rv != 0)
		goto fail;
	return ev;
fail:
	spikehound__spike_event__free_unpacked(ev, NULL);
	return NULL;
}

static int ringbuf_cb(void *ctx, void *data, size_t size)
{
	struct reclaim_state *st = ctx;
	const struct sh_reclaim_event *e = data;
	Spikehound__SpikeEvent *ev;
	int cpus[2];

	if (size < sizeof(struct sh_reclaim_event)) {
		st->malformed++;
		return 0;
	}
	ev = build_event(st, e);
	if (!ev) {
		st->failed++;
		return 0;
	}
	cpus[0] = (int)e->cpu_begin;
	cpus[1] = (int)e->cpu;
	if (agent_events_emit(st->ctx.events, ev, cpus, e->cpu == e->cpu_begin ? 1 : 2) == 0)
		st->emitted++;
	else
		st->suppressed++;
	return 0;
}

/* kallsyms_addr returns the address of text symbol name, or 0. */
static uint64_t kallsyms_addr(const char *name)
{
	char line[512], sym[256], type;
	unsigned long long addr;
	uint64_t found = 0;
	FILE *f = fopen("/proc/kallsyms", "re");

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		if (sscanf(line, "%llx %c %255s", &addr, &type, sym) == 3 &&
		    (type == 't' || type == 'T') && strcmp(sym, name) == 0)
			found = addr;
	fclose(f);
	return found;
}

static void reclaim_stop(void *state);

/* disable_missing turns off the programs whose tracepoint this kernel
 * lacks; returns how many of the reclaim (not compaction) ones remain. */
static int disable_missing(struct det_reclaim_bpf *skel)
{
	struct bpf_program *prog;
	int reclaim = 0;

	bpf_object__for_each_program(prog, skel->obj)
	{
		const char *sec = bpf_program__section_name(prog);
		const char *tp = strchr(sec, '/') ? strchr(sec, '/') + 1 : sec;

		if (libbpf_find_vmlinux_btf_id(tp, BPF_TRACE_RAW_TP) < 0) {
			sh_info("reclaim: this kernel has no tracepoint \"%s\"", tp);
			bpf_program__set_autoload(prog, false);
		} else if (strstr(tp, "reclaim")) {
			reclaim++;
		}
	}
	return reclaim;
}

static int reclaim_start(const struct agent_det_ctx *ctx, void **state)
{
	struct reclaim_state *st = calloc(1, sizeof(*st));
	int err;

	if (!st)
		return -ENOMEM;
	st->ctx = *ctx;
	st->ncpus = libbpf_num_possible_cpus();
	if (st->ncpus <= 0) {
		err = st->ncpus < 0 ? st->ncpus : -ENODEV;
		sh_warn("reclaim: could not count CPUs: %s", strerror(-err));
		goto cleanup;
	}
	st->skel = det_reclaim_bpf__open();
	if (!st->skel) {
		err = -errno;
		sh_warn("reclaim: could not open BPF object: %s", strerror(-err));
		goto cleanup;
	}
	st->skel->rodata->min_stall_ns = (uint64_t)ctx->cfg->reclaim_threshold_ns;
	st->skel->rodata->super_cache_scan_addr = kallsyms_addr("super_cache_scan");
	if (disable_missing(st->skel) == 0) {
		err = -ENOENT;
		sh_warn("reclaim: no vmscan reclaim tracepoints on this kernel");
		goto cleanup;
	}
	err = det_reclaim_bpf__load(st->skel);
	if (err < 0) {
		sh_warn("reclaim: could not load BPF programs: %s", strerror(-err));
		goto cleanup;
	}
	err = det_reclaim_bpf__attach(st->skel);
	if (err < 0) {
		sh_warn("reclaim: could not attach to the vmscan/compaction tracepoints: %s",
			strerror(-err));
		goto cleanup;
	}
	st->rb = ring_buffer__new(bpf_map__fd(st->skel->maps.events), ringbuf_cb, st, NULL);
	if (!st->rb) {
		err = -errno;
		sh_warn("reclaim: could not create ring buffer reader: %s", strerror(-err));
		goto cleanup;
	}
	st->next_report_ns = sh_now_mono_ns() + REPORT_S * SH_NS_PER_SEC;
	sh_info("reclaim: reporting direct/memcg reclaim and direct compaction stalls over %.1f ms",
		ctx->cfg->reclaim_threshold_ns / 1e6);
	*state = st;
	return 0;
cleanup:
	reclaim_stop(st);
	return err;
}

static int reclaim_fd(void *state)
{
	struct reclaim_state *st = state;

	return ring_buffer__epoll_fd(st->rb);
}

static void reclaim_poll(void *state)
{
	struct reclaim_state *st = state;

	ring_buffer__consume(st->rb);
}

static void reclaim_tick(void *state, int64_t wall_ns)
{
	struct reclaim_state *st = state;
	uint64_t sums[SH_RECLAIM_CNT_MAX] = { 0 }, *vals;
	int64_t now = sh_now_mono_ns();
	int fd;

	(void)wall_ns;
	if (now < st->next_report_ns)
		return;
	st->next_report_ns = now + REPORT_S * SH_NS_PER_SEC;
	vals = calloc((size_t)st->ncpus, sizeof(*vals));
	if (!vals)
		return;
	fd = bpf_map__fd(st->skel->maps.counters);
	for (uint32_t k = 0; k < SH_RECLAIM_CNT_MAX; k++) {
		if (bpf_map_lookup_elem(fd, &k, vals) != 0)
			continue;
		for (int c = 0; c < st->ncpus; c++)
			sums[k] += vals[c];
	}
	free(vals);
	if (sums[SH_RECLAIM_CNT_LOST] > st->reported[SH_RECLAIM_CNT_LOST] ||
	    sums[SH_RECLAIM_CNT_TABLE_FULL] > st->reported[SH_RECLAIM_CNT_TABLE_FULL] ||
	    st->failed || st->malformed)
		sh_warn("reclaim: since start %llu stalls timed, %llu events (%llu lost in the ring "
			"buffer, %llu rate-limited, %llu unbuildable, %llu malformed), %llu untimed "
			"(table full), %llu nested, %llu shrink calls past %d functions",
			(unsigned long long)sums[SH_RECLAIM_CNT_STALLS],
			(unsigned long long)sums[SH_RECLAIM_CNT_EVENTS],
			(unsigned long long)sums[SH_RECLAIM_CNT_LOST],
			(unsigned long long)st->suppressed, (unsigned long long)st->failed,
			(unsigned long long)st->malformed,
			(unsigned long long)sums[SH_RECLAIM_CNT_TABLE_FULL],
			(unsigned long long)sums[SH_RECLAIM_CNT_NESTED],
			(unsigned long long)sums[SH_RECLAIM_CNT_SHRINKER_OTHER], SH_RECLAIM_SHRINKERS);
	memcpy(st->reported, sums, sizeof(sums));
}

static void reclaim_stop(void *state)
{
	struct reclaim_state *st = state;

	if (!st)
		return;
	ring_buffer__free(st->rb);
	det_reclaim_bpf__destroy(st->skel);
	free(st);
}

const struct agent_detector_ops det_reclaim_ops = {
	.name = "reclaim",
	.start = reclaim_start,
	.fd = reclaim_fd,
	.poll = reclaim_poll,
	.tick = reclaim_tick,
	.stop = reclaim_stop,
};
