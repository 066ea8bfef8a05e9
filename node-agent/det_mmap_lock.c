/* det_mmap_lock.c: the "mmap_lock" detector's user side. Loads
 * det_mmap_lock.bpf.c (waits for an mm's mmap_lock over
 * mmap_lock_threshold_ns, with the holder inferred in the kernel) and turns
 * each wait into a "mmap_lock_wait" spike event: the victim is the waiter
 * with its stacks, the culprits are the holder when the wait began (the
 * last acquirer that had not released) and the task whose release let the
 * waiter in, with the stacks a holder had when it released while others
 * waited. INCIDENTS.md A: a monitor reading /proc/PID/smaps holds the lock
 * for read while the application's mmap() waits for write. */
#include "detect.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "det_mmap_lock.h"
#include "det_mmap_lock.skel.h"
#include "events.h"
#include "bpfutil.h"
#include "log.h"
#include "timeutil.h"

/* MAX_EVENTS_PER_SEC bounds the events built (symbolized) per second; the
 * event path's rate limit would drop the rest anyway. */
#define MAX_EVENTS_PER_SEC 50
#define REPORT_EVERY_NS (60 * SH_NS_PER_SEC)

struct det_mmap_lock {
	struct agent_det_ctx ctx; /* a copy: the caller's may not outlive start */
	struct det_mmap_lock_bpf *skel;
	struct ring_buffer *rb;
	int64_t budget_sec;	/* the monotonic second the budget counts */
	uint32_t budget_used;
	uint64_t received, emitted, suppressed, throttled, malformed;
	uint64_t reported_received;
	int64_t next_report_ns;
};

static const char *side(uint8_t write)
{
	return write ? "write" : "read";
}

static size_t depth(int32_t d)
{
	return d > 0 ? (d > DET_MMAP_LOCK_STACK_DEPTH ? DET_MMAP_LOCK_STACK_DEPTH : (size_t)d) : 0;
}

/* trim_tracing_frames drops the frames of the tracing machinery (the BPF
 * program, bpf_trace_run*) from the top of t's kernel stack. */
static void trim_tracing_frames(Spikehound__Task *t)
{
	size_t skip = 0;

	while (skip < t->n_kernel_stack &&
	       (strstr(t->kernel_stack[skip], "[bpf]") ||
		strncmp(t->kernel_stack[skip], "bpf_trace_run", 13) == 0 ||
		strncmp(t->kernel_stack[skip], "__bpf_trace_", 12) == 0))
		free(t->kernel_stack[skip++]);
	if (!skip)
		return;
	memmove(t->kernel_stack, t->kernel_stack + skip,
		(t->n_kernel_stack - skip) * sizeof(*t->kernel_stack));
	t->n_kernel_stack -= skip;
}

/* culprit_new builds a culprit Task from a table entry; the holder stacks
 * are attached when they were taken from the same task. NULL on ENOMEM. */
static Spikehound__Task *culprit_new(struct det_mmap_lock *m, const struct det_mmap_lock_event *e,
				     const struct det_mmap_lock_task *t, const char *role)
{
	char comm[DET_MMAP_LOCK_COMM_LEN + 1];
	Spikehound__Task *c;

	memcpy(comm, t->comm, DET_MMAP_LOCK_COMM_LEN);
	comm[DET_MMAP_LOCK_COMM_LEN] = '\0';
	c = agent_task_new((int32_t)t->pid, (int32_t)t->tid, comm, role);
	if (!c)
		return NULL;
	if (e->hstack_tid && e->hstack_tid == t->tid) {
		const uint64_t *k = (const uint64_t *)e->hkstack, *u = (const uint64_t *)e->hustack;

		if (agent_task_set_kstack(c, m->ctx.sym, k, depth(e->hkdepth)) != 0 ||
		    agent_task_set_ustack(c, m->ctx.sym, e->hstack_pid, (int64_t)e->hstack_ns, u,
					  depth(e->hudepth)) != 0) {
			spikehound__task__free_unpacked(c, NULL);
			return NULL;
		}
		trim_tracing_frames(c);
	}
	return c;
}

/* held_ns is how long t had held the lock: until its release, or until the
 * waiter got the lock if it still held it; 0 if unknown. */
static uint64_t held_ns(const struct det_mmap_lock_task *t, uint64_t end_ns)
{
	if (!t->valid || !t->acquire_ns)
		return 0;
	if (t->release_ns >= t->acquire_ns)
		return t->release_ns - t->acquire_ns;
	if (t->holding && end_ns >= t->acquire_ns)
		return end_ns - t->acquire_ns;
	return 0;
}

static int add_culprit(Spikehound__SpikeEvent *ev, Spikehound__Task *c)
{
	Spikehound__Task **v = realloc(ev->culprits, (ev->n_culprits + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	ev->culprits = v;
	ev->culprits[ev->n_culprits++] = c;
	return 0;
}

/* build turns one wait into a SpikeEvent; NULL on ENOMEM. */
static Spikehound__SpikeEvent *build(struct det_mmap_lock *m, const struct det_mmap_lock_event *e)
{
	const struct det_mmap_lock_task *first = NULL, *second = NULL;
	char comm[DET_MMAP_LOCK_COMM_LEN + 1], detail[96];
	Spikehound__SpikeEvent *ev;
	Spikehound__Task *c;
	int rv = 0;

	ev = malloc(sizeof(*ev));
	if (!ev)
		return NULL;
	spikehound__spike_event__init(ev);
	/* The holder when the wait began is the strongest evidence; the task
	 * whose release let the waiter in comes next (first if no holder was
	 * known). */
	if (e->holder.valid)
		first = &e->holder;
	if (e->releaser.valid) {
		if (!first)
			first = &e->releaser;
		else if (e->releaser.tid != e->holder.tid)
			second = &e->releaser;
	}
	if (first)
		snprintf(detail, sizeof(detail), "%s wait behind %s holder", side(e->write),
			 side(first->write));
	else
		snprintf(detail, sizeof(detail), "%s wait, holder unknown", side(e->write));
	ev->kind = strdup("mmap_lock_wait");
	ev->detail = strdup(detail);
	if (!ev->kind || !ev->detail)
		goto fail;
	ev->start_ns = (int64_t)e->start_ns + m->ctx.wall_minus_mono_ns;
	ev->duration_ns = (int64_t)(e->end_ns - e->start_ns);
	ev->cpu = (int32_t)e->cpu;

	memcpy(comm, e->comm, DET_MMAP_LOCK_COMM_LEN);
	comm[DET_MMAP_LOCK_COMM_LEN] = '\0';
	ev->victim = agent_task_new((int32_t)e->pid, (int32_t)e->tid, comm, "victim");
	if (!ev->victim)
		goto fail;
	rv |= agent_task_set_kstack(ev->victim, m->ctx.sym, (const uint64_t *)e->kstack,
				    depth(e->kdepth));
	rv |= agent_task_set_ustack(ev->victim, m->ctx.sym, e->pid, (int64_t)e->end_ns,
				    (const uint64_t *)e->ustack, depth(e->udepth));
	if (rv)
		goto fail;
	trim_tracing_frames(ev->victim);
	if (first) {
		c = culprit_new(m, e, first, first == &e->holder ? "holder" : "releaser");
		if (!c || add_culprit(ev, c) != 0) {
			spikehound__task__free_unpacked(c, NULL);
			goto fail;
		}
	}
	if (second) {
		c = culprit_new(m, e, second, "releaser");
		if (!c || add_culprit(ev, c) != 0) {
			spikehound__task__free_unpacked(c, NULL);
			goto fail;
		}
	}

	rv |= agent_event_attr(ev, "mm", "0x%llx", (unsigned long long)e->mm);
	rv |= agent_event_attr(ev, "waiter_side", "%s", side(e->write));
	rv |= agent_event_attr(ev, "holders_at_start", "%u", e->held_at_start);
	if (!e->success)
		rv |= agent_event_attr(ev, "interrupted", "true");
	if (first) {
		rv |= agent_event_attr(ev, "holder_side", "%s", side(first->write));
		rv |= agent_event_attr(ev, "holder_tid", "%u", first->tid);
		uint64_t held = held_ns(first, e->end_ns);

		if (held)
			rv |= agent_event_attr(ev, "holder_held_ns", "%llu",
					       (unsigned long long)held);
		rv |= agent_event_attr(ev, "holder_still_holding", "%s",
				       first->holding ? "true" : "false");
	}
	if (e->releaser.valid) {
		rv |= agent_event_attr(ev, "releaser_tid", "%u", e->releaser.tid);
		uint64_t held = held_ns(&e->releaser, e->end_ns);

		if (held)
			rv |= agent_event_attr(ev, "releaser_held_ns", "%llu",
					       (unsigned long long)held);
	}
	if (e->hstack_tid)
		rv |= agent_event_attr(ev, "holder_stack_tid", "%u", e->hstack_tid);
	if (rv)
		goto fail;
	return ev;
fail:
	spikehound__spike_event__free_unpacked(ev, NULL);
	return NULL;
}

static int ringbuf_cb(void *arg, void *data, size_t size)
{
	struct det_mmap_lock *m = arg;
	const struct det_mmap_lock_event *e = data;
	Spikehound__SpikeEvent *ev;
	int64_t sec = sh_now_mono_ns() / SH_NS_PER_SEC;
	int cpus[3];
	size_t n = 0;

	if (size < sizeof(*e)) {
		m->malformed++;
		return 0;
	}
	m->received++;
	if (sec != m->budget_sec) {
		m->budget_sec = sec;
		m->budget_used = 0;
	}
	if (m->budget_used >= MAX_EVENTS_PER_SEC) {
		m->throttled++;
		return 0;
	}
	m->budget_used++;
	ev = build(m, e);
	if (!ev) {
		m->malformed++; /* counted with the unbuildable: ENOMEM */
		return 0;
	}
	sh_debug("mmap_lock: %.*s[%u] waited %.2f ms (%s), holder %.*s[%u] releaser %.*s[%u]",
		 DET_MMAP_LOCK_COMM_LEN, e->comm, e->tid, (double)(e->end_ns - e->start_ns) / 1e6,
		 ev->detail, DET_MMAP_LOCK_COMM_LEN, e->holder.comm, e->holder.tid,
		 DET_MMAP_LOCK_COMM_LEN, e->releaser.comm, e->releaser.tid);
	cpus[n++] = (int)e->cpu;
	if (e->holder.valid)
		cpus[n++] = (int)e->holder.cpu;
	if (e->releaser.valid)
		cpus[n++] = (int)e->releaser.cpu;
	if (agent_events_emit(m->ctx.events, ev, cpus, n) == 0)
		m->emitted++;
	else
		m->suppressed++;
	return 0;
}

static void sum_counters(struct det_mmap_lock *m, uint64_t *sums)
{
	agent_bpf_percpu_sum(bpf_map__fd(m->skel->maps.counters), sums, DET_MMAP_LOCK_CNT_MAX);
}

static void mmap_lock_stop(void *state)
{
	struct det_mmap_lock *m = state;

	if (!m)
		return;
	ring_buffer__free(m->rb);
	det_mmap_lock_bpf__destroy(m->skel);
	free(m);
}

static int mmap_lock_start(const struct agent_det_ctx *ctx, void **state)
{
	struct det_mmap_lock *m;
	int err;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->ctx = *ctx;
	m->skel = det_mmap_lock_bpf__open();
	if (!m->skel) {
		err = -errno;
		sh_warn("mmap_lock: could not open BPF object: %s", strerror(-err));
		goto cleanup;
	}
	m->skel->rodata->threshold_ns = (uint64_t)ctx->cfg->mmap_lock_threshold_ns;
	err = det_mmap_lock_bpf__load(m->skel);
	if (err < 0) {
		sh_warn("mmap_lock: could not load BPF programs (mmap_lock tracepoints, task "
			"storage): %s",
			strerror(-err));
		goto cleanup;
	}
	err = det_mmap_lock_bpf__attach(m->skel);
	if (err < 0) {
		sh_warn("mmap_lock: could not attach to the mmap_lock tracepoints: %s",
			strerror(-err));
		goto cleanup;
	}
	m->rb = ring_buffer__new(bpf_map__fd(m->skel->maps.events), ringbuf_cb, m, NULL);
	if (!m->rb) {
		err = -errno;
		sh_warn("mmap_lock: could not create ring buffer reader: %s", strerror(-err));
		goto cleanup;
	}
	m->next_report_ns = sh_now_mono_ns() + REPORT_EVERY_NS;
	sh_info("mmap_lock: reporting mmap_lock waits over %.1f ms",
		(double)ctx->cfg->mmap_lock_threshold_ns / 1e6);
	*state = m;
	return 0;
cleanup:
	mmap_lock_stop(m);
	return err;
}

static int mmap_lock_fd(void *state)
{
	struct det_mmap_lock *m = state;

	return ring_buffer__epoll_fd(m->rb);
}

static void mmap_lock_poll(void *state)
{
	struct det_mmap_lock *m = state;

	ring_buffer__consume(m->rb);
}

static void mmap_lock_tick(void *state, int64_t wall_ns)
{
	struct det_mmap_lock *m = state;
	uint64_t c[DET_MMAP_LOCK_CNT_MAX];
	int64_t now = sh_now_mono_ns();

	(void)wall_ns;
	if (now < m->next_report_ns)
		return;
	m->next_report_ns = now + REPORT_EVERY_NS;
	if (m->received == m->reported_received)
		return;
	m->reported_received = m->received;
	sum_counters(m, c);
	sh_info("mmap_lock: %llu waits over threshold (%llu lost in the ring buffer), %llu sent, "
		"%llu rate-limited, %llu throttled, %llu malformed; %llu holder stacks taken",
		(unsigned long long)c[DET_MMAP_LOCK_CNT_WAITS],
		(unsigned long long)c[DET_MMAP_LOCK_CNT_LOST], (unsigned long long)m->emitted,
		(unsigned long long)m->suppressed, (unsigned long long)m->throttled,
		(unsigned long long)m->malformed,
		(unsigned long long)c[DET_MMAP_LOCK_CNT_HOLDER_STACKS]);
}

const struct agent_detector_ops det_mmap_lock_ops = {
	.name = "mmap_lock",
	.start = mmap_lock_start,
	.fd = mmap_lock_fd,
	.poll = mmap_lock_poll,
	.tick = mmap_lock_tick,
	.stop = mmap_lock_stop,
};
