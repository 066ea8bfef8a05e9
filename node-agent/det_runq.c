/* det_runq.c: the run-queue latency detector ("runq"). Loads
 * bpf/det_runq.bpf.c, which times every wait of a runnable task for a CPU
 * (wakeup or preemption -> switched in) into a log2 histogram and sends
 * the waits over runq_threshold_ns to this side. Each becomes a "runq"
 * spike event:
 *   victim    the task that waited (cgroup: its cpu controller's)
 *   culprits  "ran_instead": the tasks that ran on that CPU during the wait,
 *             most on-CPU time first (on_cpu_ns: their time inside the
 *             wait), from the CPU's switch log; then "waker": who woke the
 *             victim (for wakeups), with its kernel stack at the wakeup
 *   detail    "wakeup", "wakeup_new" or "preempted"
 *   attrs     running_at_enqueue (the task on the CPU when the wait began),
 *             switched_out (the one that gave the CPU to the victim),
 *             waker_context (task / softirq / hardirq / nmi / irq, from the
 *             waker's stack; an IRQ's "waker" is the task it interrupted),
 *             waker_cpu,
 *             prio, log_coverage ("full", or "partial" when more tasks ran
 *             than the log holds), idle_ns (idle time inside the wait:
 *             the victim waited on another CPU's queue)
 * agent_det_runq_histogram (det_runq.h) hands out the histogram.
 * Waker stacks cost ~1 us per wakeup, so the BPF side takes them only when
 * the wakee's CPU is busy with a task that has run >= 250 us (a long wait is
 * likely), at most 500 per CPU per second; SH_RUNQ_WAKER_STACKS=0/1/2 in
 * the environment means never / that (default) / every wakeup (for the
 * benchmark, tests/bench/runq_vs_runqlat.sh). */
#include "det_runq.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "../bpf/det_runq.h"
#include "det_runq.skel.h"
#include "detect.h"
#include "events.h"
#include "log.h"
#include "procs.h"
#include "symbolize.h"
#include "timeutil.h"

/* MAX_RAN_INSTEAD is how many "ran_instead" culprits an event names. */
#define MAX_RAN_INSTEAD 4
/* STACK_MAP_RESET_S: the waker stack map is emptied this often, so stacks
 * of long gone wakers do not fill it for good. */
#define STACK_MAP_RESET_S 600
/* REPORT_S: how often lost or untracked waits are logged (when any). */
#define REPORT_S 60
/* CGROUP_CACHE entries (direct-mapped by pid) keep a task's cgroup path
 * for CGROUP_TTL_S: a busy CPU names the same tasks in event after event. */
#define CGROUP_CACHE 128
#define CGROUP_TTL_S 10

struct cgroup_entry {
	uint32_t pid;
	int64_t read_ns;
	char *path; /* NULL: none known */
};

struct runq_state {
	struct agent_det_ctx ctx;
	struct det_runq_bpf *skel;
	struct ring_buffer *rb;
	int ncpus;
	struct sh_runq_hist last; /* totals at the last agent_det_runq_histogram */
	uint64_t reported[SH_RUNQ_CNT_MAX];
	uint64_t malformed, emitted, suppressed, failed;
	int64_t next_stack_reset_ns, next_report_ns;
	struct cgroup_entry cgroups[CGROUP_CACHE];
};

/* culprit is one task of the switch log, merged by tid. */
struct culprit {
	uint32_t tid, pid;
	char comm[SH_RUNQ_COMM_LEN + 1];
	uint64_t on_ns;
};

static const char *reason_name(uint16_t r)
{
	switch (r) {
	case SH_RUNQ_WAKEUP:
		return "wakeup";
	case SH_RUNQ_WAKEUP_NEW:
		return "wakeup_new";
	case SH_RUNQ_PREEMPTED:
		return "preempted";
	default:
		return "unknown";
	}
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

/* waker_context tells the waker's context from its kernel stack (innermost
 * first): the first interrupt or softirq entry frame decides. */
static const char *waker_context(const Spikehound__Task *t, uint16_t bpf_ctx)
{
	static const struct {
		const char *prefix, *ctx;
	} marks[] = {
		{ "exc_nmi", "nmi" },		 { "default_do_nmi", "nmi" },
		{ "handle_softirqs", "softirq" }, { "__do_softirq", "softirq" },
		{ "run_ksoftirqd", "softirq" },	 { "hrtimer_interrupt", "hardirq" },
		{ "__sysvec_", "hardirq" },	 { "sysvec_", "hardirq" },
		{ "common_interrupt", "hardirq" }, { "handle_irq_event", "hardirq" },
		{ "__handle_irq_event", "hardirq" },
	};

	for (size_t i = 0; i < t->n_kernel_stack; i++)
		for (size_t m = 0; m < sizeof(marks) / sizeof(marks[0]); m++)
			if (strncmp(t->kernel_stack[i], marks[m].prefix, strlen(marks[m].prefix)) == 0)
				return marks[m].ctx;
	if (bpf_ctx & SH_RUNQ_CTX_IDLE)
		return "irq";
	return t->n_kernel_stack ? "task" : "unknown";
}


/* set_cgroup sets t's cgroup to pid's cpu controller path (cached). */
static void set_cgroup(struct runq_state *st, Spikehound__Task *t, uint32_t pid)
{
	struct cgroup_entry *c = &st->cgroups[pid % CGROUP_CACHE];
	int64_t now = sh_now_mono_ns();
	char *cg;

	if (pid == 0)
		return;
	if (c->pid != pid || now - c->read_ns > CGROUP_TTL_S * SH_NS_PER_SEC) {
		free(c->path);
		c->pid = pid;
		c->read_ns = now;
		c->path = agent_proc_cgroup(pid, "cpu");
	}
	if (c->path && (cg = strdup(c->path))) {
		free(t->cgroup);
		t->cgroup = cg;
	}
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

static int by_on_ns_desc(const void *a, const void *b)
{
	const struct culprit *x = a, *y = b;

	return x->on_ns < y->on_ns ? 1 : x->on_ns > y->on_ns ? -1 : 0;
}

static void comm_copy(char *dst, const char *src)
{
	memcpy(dst, src, SH_RUNQ_COMM_LEN);
	dst[SH_RUNQ_COMM_LEN] = '\0';
}

/* add_ran_instead merges the log entries of the wait [from, to] by task,
 * clips their time to the wait and names the busiest as culprits. */
static int add_ran_instead(struct runq_state *st, Spikehound__SpikeEvent *ev,
			   const struct sh_runq_event *e, uint64_t from, uint64_t to)
{
	struct culprit c[SH_RUNQ_LOG];
	uint64_t idle_ns = 0;
	size_t n = 0, nran = e->nran < SH_RUNQ_LOG ? e->nran : SH_RUNQ_LOG;
	int rv = 0;

	for (size_t i = 0; i < nran; i++) {
		const struct sh_runq_ran *r = &e->ran[i];
		uint64_t in = r->ts_in && r->ts_in > from ? r->ts_in : from;
		uint64_t out = r->ts_out < to ? r->ts_out : to;
		uint64_t on = out > in ? out - in : 0;
		size_t j;

		if (r->ts_out <= from)
			continue; /* ended before the wait (or an empty entry) */
		if (r->tid == 0) {
			idle_ns += on;
			continue;
		}
		for (j = 0; j < n && c[j].tid != r->tid; j++)
			;
		if (j == n) {
			c[n].tid = r->tid;
			c[n].pid = r->pid;
			comm_copy(c[n].comm, r->comm);
			c[n].on_ns = 0;
			n++;
		}
		c[j].on_ns += on;
	}
	qsort(c, n, sizeof(c[0]), by_on_ns_desc);
	for (size_t i = 0; i < n && i < MAX_RAN_INSTEAD && rv == 0; i++) {
		Spikehound__Task *t = agent_task_new((int32_t)c[i].pid, (int32_t)c[i].tid, c[i].comm,
						     "ran_instead");

		if (t) {
			t->on_cpu_ns = c[i].on_ns;
			set_cgroup(st, t, c[i].pid);
		}
		rv = add_culprit(ev, t);
	}
	if (idle_ns)
		rv = rv ? rv : agent_event_attr(ev, "idle_ns", "%llu", (unsigned long long)idle_ns);
	return rv;
}

static int add_log_attrs(Spikehound__SpikeEvent *ev, const struct sh_runq_event *e, uint64_t from)
{
	size_t nran = e->nran < SH_RUNQ_LOG ? e->nran : SH_RUNQ_LOG;
	char comm[SH_RUNQ_COMM_LEN + 1];
	int rv = 0;

	size_t i = 0;

	while (i < nran && e->ran[i].ts_out <= from)
		i++;
	if (i < nran) {
		const struct sh_runq_ran *first = &e->ran[i], *last = &e->ran[nran - 1];

		if (first->ts_in <= from) {
			comm_copy(comm, first->comm);
			rv = agent_event_attr(ev, "running_at_enqueue", "%s[%u]", comm, first->tid);
		}
		comm_copy(comm, last->comm);
		rv = rv ? rv : agent_event_attr(ev, "switched_out", "%s[%u]", comm, last->tid);
	}
	if (rv == 0 && e->log_oldest_ns > from)
		rv = agent_event_attr(ev, "log_coverage", "partial: last %.1f ms of %.1f ms",
				      (double)(e->ts_ns - e->log_oldest_ns) / 1e6,
				      (double)e->delay_ns / 1e6);
	else if (rv == 0)
		rv = agent_event_attr(ev, "log_coverage", "full");
	return rv;
}

static int add_waker(struct runq_state *st, Spikehound__SpikeEvent *ev,
		     const struct sh_runq_event *e)
{
	char comm[SH_RUNQ_COMM_LEN + 1];
	uint64_t ips[SH_RUNQ_STACK_DEPTH];
	Spikehound__Task *t;
	const char *wctx;
	size_t n = 0, skip;
	int rv;

	comm_copy(comm, e->waker_comm);
	t = agent_task_new((int32_t)e->waker_pid, (int32_t)e->waker_tid, comm, "waker");
	if (!t)
		return -ENOMEM;
	if (e->waker_stack_id >= 0) {
		uint32_t id = (uint32_t)e->waker_stack_id;

		memset(ips, 0, sizeof(ips));
		if (bpf_map_lookup_elem(bpf_map__fd(st->skel->maps.waker_stack_map), &id, ips) == 0)
			while (n < SH_RUNQ_STACK_DEPTH && ips[n])
				n++;
	}
	skip = tracing_frames(st->ctx.sym, ips, n);
	if (n && (rv = agent_task_set_kstack(t, st->ctx.sym, ips + skip, n - skip)) != 0) {
		spikehound__task__free_unpacked(t, NULL);
		return rv;
	}
	wctx = waker_context(t, e->waker_ctx);
	if (strcmp(wctx, "task") == 0)
		set_cgroup(st, t, e->waker_pid); /* else the interrupted task's */
	if ((rv = add_culprit(ev, t)) != 0)
		return rv;
	rv = agent_event_attr(ev, "waker_context", "%s", wctx);
	return rv ? rv : agent_event_attr(ev, "waker_cpu", "%u", e->waker_cpu);
}

/* build_event turns a BPF record into a spike event; NULL on ENOMEM. */
static Spikehound__SpikeEvent *build_event(struct runq_state *st, const struct sh_runq_event *e)
{
	Spikehound__SpikeEvent *ev = malloc(sizeof(*ev));
	uint64_t from = e->ts_ns - e->delay_ns;
	char comm[SH_RUNQ_COMM_LEN + 1];
	int rv;

	if (!ev)
		return NULL;
	spikehound__spike_event__init(ev);
	comm_copy(comm, e->comm);
	ev->kind = strdup("runq");
	ev->detail = strdup(reason_name(e->reason));
	ev->start_ns = (int64_t)from + st->ctx.wall_minus_mono_ns;
	ev->duration_ns = e->delay_ns;
	ev->cpu = (int32_t)e->cpu;
	ev->victim = agent_task_new((int32_t)e->pid, (int32_t)e->tid, comm, "");
	if (!ev->kind || !ev->detail || !ev->victim)
		goto fail;
	set_cgroup(st, ev->victim, e->pid);
	rv = add_ran_instead(st, ev, e, from, e->ts_ns);
	if (rv == 0 && e->reason != SH_RUNQ_PREEMPTED)
		rv = add_waker(st, ev, e);
	rv = rv ? rv : add_log_attrs(ev, e, from);
	rv = rv ? rv : agent_event_attr(ev, "prio", "%d", e->prio);
	if (rv != 0)
		goto fail;
	return ev;
fail:
	spikehound__spike_event__free_unpacked(ev, NULL);
	return NULL;
}

static int ringbuf_cb(void *ctx, void *data, size_t size)
{
	struct runq_state *st = ctx;
	Spikehound__SpikeEvent *ev;
	int cpu;

	if (size < sizeof(struct sh_runq_event)) {
		st->malformed++;
		return 0;
	}
	ev = build_event(st, data);
	if (!ev) {
		st->failed++;
		return 0;
	}
	cpu = ev->cpu;
	if (agent_events_emit(st->ctx.events, ev, &cpu, 1) == 0)
		st->emitted++;
	else
		st->suppressed++;
	return 0;
}

/* read_counters sums the per-CPU counters into sums. */
static void read_counters(struct runq_state *st, uint64_t *sums)
{
	uint64_t *vals = calloc((size_t)st->ncpus, sizeof(*vals));
	int fd = bpf_map__fd(st->skel->maps.counters);

	memset(sums, 0, SH_RUNQ_CNT_MAX * sizeof(*sums));
	if (!vals)
		return;
	for (uint32_t k = 0; k < SH_RUNQ_CNT_MAX; k++) {
		if (bpf_map_lookup_elem(fd, &k, vals) != 0)
			continue;
		for (int c = 0; c < st->ncpus; c++)
			sums[k] += vals[c];
	}
	free(vals);
}

static void clear_stack_map(struct runq_state *st)
{
	int fd = bpf_map__fd(st->skel->maps.waker_stack_map);
	uint32_t key, next;
	void *prev = NULL;

	/* Deleting the current key restarts get_next_key at the first one. */
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		bpf_map_delete_elem(fd, &key);
		prev = NULL;
	}
}

static void runq_stop(void *state);

static int runq_start(const struct agent_det_ctx *ctx, void **state)
{
	struct runq_state *st = calloc(1, sizeof(*st));
	int err;

	if (!st)
		return -ENOMEM;
	st->ctx = *ctx;
	st->ncpus = libbpf_num_possible_cpus();
	if (st->ncpus <= 0) {
		err = st->ncpus < 0 ? st->ncpus : -ENODEV;
		sh_warn("runq: could not count CPUs: %s", strerror(-err));
		goto cleanup;
	}
	st->skel = det_runq_bpf__open();
	if (!st->skel) {
		err = -errno;
		sh_warn("runq: could not open BPF object: %s", strerror(-err));
		goto cleanup;
	}
	st->skel->rodata->min_delay_ns = (uint64_t)ctx->cfg->runq_threshold_ns;
	if (getenv("SH_RUNQ_WAKER_STACKS")) /* 0 never, 1 likely long waits, 2 all (bench) */
		st->skel->rodata->waker_stacks = (uint32_t)atoi(getenv("SH_RUNQ_WAKER_STACKS"));
	err = det_runq_bpf__load(st->skel);
	if (err < 0) {
		sh_warn("runq: could not load BPF programs: %s", strerror(-err));
		goto cleanup;
	}
	err = det_runq_bpf__attach(st->skel);
	if (err < 0) {
		sh_warn("runq: could not attach to sched_waking/sched_wakeup_new/sched_switch: %s",
			strerror(-err));
		goto cleanup;
	}
	st->rb = ring_buffer__new(bpf_map__fd(st->skel->maps.events), ringbuf_cb, st, NULL);
	if (!st->rb) {
		err = -errno;
		sh_warn("runq: could not create ring buffer reader: %s", strerror(-err));
		goto cleanup;
	}
	st->next_stack_reset_ns = sh_now_mono_ns() + STACK_MAP_RESET_S * SH_NS_PER_SEC;
	st->next_report_ns = sh_now_mono_ns() + REPORT_S * SH_NS_PER_SEC;
	sh_info("runq: reporting run-queue waits over %.1f ms", ctx->cfg->runq_threshold_ns / 1e6);
	*state = st;
	return 0;
cleanup:
	runq_stop(st);
	return err;
}

static int runq_fd(void *state)
{
	struct runq_state *st = state;

	return ring_buffer__epoll_fd(st->rb);
}

static void runq_poll(void *state)
{
	struct runq_state *st = state;

	ring_buffer__consume(st->rb);
}

static void runq_tick(void *state, int64_t wall_ns)
{
	struct runq_state *st = state;
	int64_t now = sh_now_mono_ns();
	uint64_t sums[SH_RUNQ_CNT_MAX];

	(void)wall_ns;
	if (now >= st->next_stack_reset_ns) {
		clear_stack_map(st);
		st->next_stack_reset_ns = now + STACK_MAP_RESET_S * SH_NS_PER_SEC;
	}
	if (now < st->next_report_ns)
		return;
	st->next_report_ns = now + REPORT_S * SH_NS_PER_SEC;
	read_counters(st, sums);
	if (sums[SH_RUNQ_CNT_LOST] > st->reported[SH_RUNQ_CNT_LOST] ||
	    sums[SH_RUNQ_CNT_START_FULL] > st->reported[SH_RUNQ_CNT_START_FULL] || st->failed ||
	    st->malformed)
		sh_warn("runq: since start %llu waits, %llu events (%llu lost in the ring buffer, "
			"%llu rate-limited, %llu unbuildable, %llu malformed), %llu waits untracked "
			"(start map full), %llu waker stacks missing",
			(unsigned long long)sums[SH_RUNQ_CNT_WAITS],
			(unsigned long long)sums[SH_RUNQ_CNT_EVENTS],
			(unsigned long long)sums[SH_RUNQ_CNT_LOST], (unsigned long long)st->suppressed,
			(unsigned long long)st->failed, (unsigned long long)st->malformed,
			(unsigned long long)sums[SH_RUNQ_CNT_START_FULL],
			(unsigned long long)sums[SH_RUNQ_CNT_STACK_ERR]);
	memcpy(st->reported, sums, sizeof(sums));
}

static void runq_stop(void *state)
{
	struct runq_state *st = state;

	if (!st)
		return;
	ring_buffer__free(st->rb);
	det_runq_bpf__destroy(st->skel);
	for (size_t i = 0; i < CGROUP_CACHE; i++)
		free(st->cgroups[i].path);
	free(st);
}

int agent_det_runq_histogram(void *state, Spikehound__Histogram **out)
{
	struct runq_state *st = state;
	struct sh_runq_hist *vals, sum;
	Spikehound__Histogram *h;
	uint32_t key = 0;
	size_t n = 0;
	int err = 0;

	if (!st)
		return -EINVAL;
	vals = calloc((size_t)st->ncpus, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	if (bpf_map_lookup_elem(bpf_map__fd(st->skel->maps.hist), &key, vals) != 0) {
		err = -errno;
		free(vals);
		return err;
	}
	memset(&sum, 0, sizeof(sum));
	for (int c = 0; c < st->ncpus; c++) {
		for (int i = 0; i < SH_RUNQ_HIST_SLOTS; i++)
			sum.slots[i] += vals[c].slots[i];
		sum.count += vals[c].count;
		sum.sum_ns += vals[c].sum_ns;
	}
	free(vals);
	h = malloc(sizeof(*h));
	if (!h)
		return -ENOMEM;
	spikehound__histogram__init(h);
	h->kind = strdup("runq");
	h->buckets = calloc(SH_RUNQ_HIST_SLOTS, sizeof(*h->buckets));
	if (!h->kind || !h->buckets) {
		spikehound__histogram__free_unpacked(h, NULL);
		return -ENOMEM;
	}
	for (int i = 0; i < SH_RUNQ_HIST_SLOTS; i++) {
		h->buckets[i] = sum.slots[i] - st->last.slots[i];
		if (h->buckets[i])
			n = (size_t)i + 1;
	}
	h->n_buckets = n;
	h->count = sum.count - st->last.count;
	h->sum_ns = sum.sum_ns - st->last.sum_ns;
	st->last = sum;
	*out = h;
	return 0;
}

const struct agent_detector_ops det_runq_ops = {
	.name = "runq",
	.start = runq_start,
	.fd = runq_fd,
	.poll = runq_poll,
	.tick = runq_tick,
	.stop = runq_stop,
};
