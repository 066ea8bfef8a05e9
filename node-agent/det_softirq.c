/* det_softirq.c: the "softirq" detector. Loads bpf/det_softirq.bpf.c on the
 * irq tracepoints and turns its outliers into spike events:
 *  - "softirq_delay": a vector (NET_RX above all) waited over
 *    softirq_threshold from its first raise to its handler. Victim: the
 *    vector (a pseudo-task "softirq:NET_RX"); culprit: the task current
 *    when it finally ran, with its kernel stack at that moment, in the role
 *    "bh_disabled" when the softirq ran from local_bh_enable in that task
 *    (the task held bottom halves off), "ksoftirqd" when it was deferred to
 *    ksoftirqd (the delay was ksoftirqd waiting for the CPU: see the
 *    window samples), else "running_at_entry" (e.g. the task an interrupt
 *    found; not necessarily the cause); then the task current at the raise
 *    ("raised_in") when it differs;
 *  - "softirq_long": a vector's handler ran over softirq_threshold. Victim:
 *    the task it interrupted (with its kernel stack at the handler's end);
 *    culprit: the vector (pseudo-task, role "softirq_handler");
 *  - "hardirq_long": a hardirq handler ran over the same threshold. Victim:
 *    the interrupted task; culprit: "irq/N:name" (role "irq_handler"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "det_softirq.h"
#include "det_softirq.skel.h"
#include "detect.h"
#include "events.h"
#include "bpfutil.h"
#include "log.h"
#include "timeutil.h"

#define LOG_EVERY_S 60

static const char *const vec_names[SH_SIRQ_VECTORS] = {
	"HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU",
};

struct det_softirq {
	struct agent_det_ctx ctx; /* a copy: the pointers in it are borrowed */
	struct det_softirq_bpf *skel;
	struct ring_buffer *rb;
	struct bpf_link *links[5];
	/* counters since start */
	uint64_t received, malformed, build_errors, emitted, suppressed;
	uint64_t logged; /* what the last log line had seen (outliers + errors) */
	int ticks;
};

static const char *vec_name(int32_t vec)
{
	return vec >= 0 && vec < SH_SIRQ_VECTORS ? vec_names[vec] : "?";
}

/* comm_copy makes a NUL-terminated copy of a fixed-size kernel string. */
static void comm_copy(char *dst, const char *src, size_t n)
{
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* stack_has says whether a symbolized stack has a frame containing s. */
static bool stack_has(const Spikehound__Task *t, const char *s)
{
	for (size_t i = 0; i < t->n_kernel_stack; i++)
		if (t->kernel_stack[i] && strstr(t->kernel_stack[i], s))
			return true;
	return false;
}

/* is_trace_frame says whether a symbolized frame belongs to the tracing
 * machinery that ran this detector (the BPF program, bpf_trace_run*), not
 * to the traced kernel. */
static bool is_trace_frame(const char *f)
{
	static const char *const prefixes[] = { "bpf_prog_", "bpf_trace_run", "__bpf_trace_",
						 "__traceiter_", "[unknown]" };

	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (strncmp(f, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}

/* strip_trace_frames drops the tracing machinery's frames from the top of
 * t's kernel stack, so it starts at the softirq/irq code. */
static void strip_trace_frames(Spikehound__Task *t)
{
	size_t skip = 0;

	while (skip < t->n_kernel_stack && t->kernel_stack[skip] &&
	       is_trace_frame(t->kernel_stack[skip]))
		skip++;
	if (!skip)
		return;
	for (size_t i = 0; i < skip; i++)
		free(t->kernel_stack[i]);
	memmove(t->kernel_stack, t->kernel_stack + skip,
		(t->n_kernel_stack - skip) * sizeof(*t->kernel_stack));
	t->n_kernel_stack -= skip;
}

/* entered_via says from where a softirq started, by the stack at its
 * entry. */
static const char *entered_via(const Spikehound__Task *t, bool ksoftirqd)
{
	if (ksoftirqd || stack_has(t, "run_ksoftirqd"))
		return "ksoftirqd";
	if (stack_has(t, "local_bh_enable") || stack_has(t, "_unlock_bh"))
		return "local_bh_enable";
	if (stack_has(t, "irq_exit"))
		return "irq_exit";
	return "other";
}

static int add_culprit(Spikehound__SpikeEvent *ev, Spikehound__Task *t)
{
	Spikehound__Task **v = realloc(ev->culprits, (ev->n_culprits + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	ev->culprits = v;
	ev->culprits[ev->n_culprits++] = t;
	return 0;
}

/* build_event turns one outlier into a spike event; NULL on allocation
 * failure. */
static Spikehound__SpikeEvent *build_event(struct det_softirq *s, const struct sh_sirq_event *e)
{
	char comm[SH_SIRQ_COMM_LEN + 1], raise_comm[SH_SIRQ_COMM_LEN + 1];
	char irq_name[SH_SIRQ_IRQ_NAME_LEN + 1], detail[128], pseudo[64];
	size_t kd = e->kstack_depth < SH_SIRQ_STACK_DEPTH ? e->kstack_depth : SH_SIRQ_STACK_DEPTH;
	double ms = (double)e->duration_ns / 1e6;
	const uint64_t *kstack = (const uint64_t *)e->kstack;
	Spikehound__SpikeEvent *ev;
	Spikehound__Task *cur = NULL, *other = NULL;
	const char *kind;
	int rv = 0;

	comm_copy(comm, e->comm, SH_SIRQ_COMM_LEN);
	comm_copy(raise_comm, e->raise_comm, SH_SIRQ_COMM_LEN);
	comm_copy(irq_name, e->irq_name, SH_SIRQ_IRQ_NAME_LEN);
	switch (e->kind) {
	case SH_SIRQ_DELAY:
		kind = "softirq_delay";
		snprintf(detail, sizeof(detail), "%s waited %.1f ms", vec_name(e->vec), ms);
		snprintf(pseudo, sizeof(pseudo), "softirq:%s", vec_name(e->vec));
		break;
	case SH_SIRQ_LONG:
		kind = "softirq_long";
		snprintf(detail, sizeof(detail), "%s ran %.1f ms", vec_name(e->vec), ms);
		snprintf(pseudo, sizeof(pseudo), "softirq:%s", vec_name(e->vec));
		break;
	case SH_HARDIRQ_LONG:
		kind = "hardirq_long";
		snprintf(detail, sizeof(detail), "irq %d (%s) ran %.1f ms", e->vec,
			 irq_name[0] ? irq_name : "?", ms);
		snprintf(pseudo, sizeof(pseudo), "irq/%d:%s", e->vec, irq_name);
		break;
	default:
		return NULL;
	}
	ev = malloc(sizeof(*ev));
	if (!ev)
		return NULL;
	spikehound__spike_event__init(ev);
	ev->kind = strdup(kind);
	ev->detail = strdup(detail);
	ev->start_ns = (int64_t)(e->ts_ns - e->duration_ns) + s->ctx.wall_minus_mono_ns;
	ev->duration_ns = (int64_t)e->duration_ns;
	ev->cpu = (int32_t)e->cpu;
	if (!ev->kind || !ev->detail)
		goto fail;

	if (e->kind == SH_SIRQ_DELAY) {
		bool ksoftirqd = (e->flags & SH_SIRQ_KTHREAD) && strncmp(comm, "ksoftirqd/", 10) == 0;
		const char *via;

		ev->victim = agent_task_new(0, 0, pseudo, "victim");
		cur = agent_task_new((int32_t)e->pid, (int32_t)e->tid, comm, "running_at_entry");
		if (!ev->victim || !cur)
			goto fail;
		if (kd && agent_task_set_kstack(cur, s->ctx.sym, kstack, kd) != 0)
			goto fail;
		strip_trace_frames(cur);
		via = entered_via(cur, ksoftirqd);
		if (strcmp(via, "ksoftirqd") == 0 || strcmp(via, "local_bh_enable") == 0) {
			free(cur->role);
			cur->role = strdup(strcmp(via, "ksoftirqd") == 0 ? "ksoftirqd" : "bh_disabled");
			if (!cur->role)
				goto fail;
		}
		if (add_culprit(ev, cur) != 0)
			goto fail;
		cur = NULL;
		if (e->raise_tid != e->tid) {
			other = agent_task_new((int32_t)e->raise_pid, (int32_t)e->raise_tid,
					       raise_comm, "raised_in");
			if (!other || add_culprit(ev, other) != 0)
				goto fail;
			other = NULL;
		}
		rv |= agent_event_attr(ev, "entered_via", "%s", via);
		rv |= agent_event_attr(ev, "raised_in", "%s pid %u tid %u%s", raise_comm,
				       e->raise_pid, e->raise_tid,
				       (e->flags & SH_SIRQ_RAISED_IDLE) ? " (idle)" : "");
	} else {
		ev->victim = agent_task_new((int32_t)e->pid, (int32_t)e->tid, comm, "victim");
		other = agent_task_new(0, 0, pseudo,
				       e->kind == SH_HARDIRQ_LONG ? "irq_handler" : "softirq_handler");
		if (!ev->victim || !other)
			goto fail;
		if (kd && agent_task_set_kstack(ev->victim, s->ctx.sym, kstack, kd) != 0)
			goto fail;
		strip_trace_frames(ev->victim);
		if (add_culprit(ev, other) != 0)
			goto fail;
		other = NULL;
	}
	if (e->kind == SH_HARDIRQ_LONG) {
		rv |= agent_event_attr(ev, "irq", "%d", e->vec);
		rv |= agent_event_attr(ev, "irq_name", "%s", irq_name);
	} else {
		rv |= agent_event_attr(ev, "vector", "%s", vec_name(e->vec));
	}
	rv |= agent_event_attr(ev, "duration_ms", "%.3f", ms);
	rv |= agent_event_attr(ev, "cgroup_id", "%llu", (unsigned long long)e->cgroup_id);
	if (e->kstack_err)
		rv |= agent_event_attr(ev, "kstack_error", "%d", e->kstack_err);
	if (rv != 0)
		goto fail;
	return ev;
fail:
	spikehound__task__free_unpacked(cur, NULL);
	spikehound__task__free_unpacked(other, NULL);
	spikehound__spike_event__free_unpacked(ev, NULL);
	return NULL;
}

static int ringbuf_cb(void *arg, void *data, size_t size)
{
	struct det_softirq *s = arg;
	Spikehound__SpikeEvent *ev;
	int cpu;

	if (size < sizeof(struct sh_sirq_event)) {
		s->malformed++;
		return 0;
	}
	s->received++;
	ev = build_event(s, data);
	if (!ev) {
		s->build_errors++; /* out of memory */
		return 0;
	}
	cpu = ev->cpu;
	sh_debug("softirq: cpu %d %s: %s, %s pid %d", cpu, ev->kind, ev->detail,
		 ev->n_culprits ? ev->culprits[0]->comm : "", ev->n_culprits ? ev->culprits[0]->pid : 0);
	if (agent_events_emit(s->ctx.events, ev, &cpu, 1) == 0)
		s->emitted++;
	else
		s->suppressed++;
	return 0;
}

static void read_counters(struct det_softirq *s, uint64_t sums[SH_SIRQ_CNT_MAX])
{
	agent_bpf_percpu_sum(bpf_map__fd(s->skel->maps.counters), sums, SH_SIRQ_CNT_MAX);
}

static void softirq_stop(void *state)
{
	struct det_softirq *s = state;

	if (!s)
		return;
	for (size_t i = 0; i < sizeof(s->links) / sizeof(s->links[0]); i++)
		bpf_link__destroy(s->links[i]);
	ring_buffer__free(s->rb);
	det_softirq_bpf__destroy(s->skel);
	free(s);
}

static int softirq_start(const struct agent_det_ctx *ctx, void **state)
{
	struct det_softirq *s;
	struct bpf_program *progs[5];
	int err;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = *ctx;
	s->skel = det_softirq_bpf__open();
	if (!s->skel) {
		err = -errno;
		sh_warn("softirq: could not open the BPF object: %s", strerror(-err));
		goto cleanup;
	}
	s->skel->rodata->threshold_ns = (uint64_t)ctx->cfg->softirq_threshold_ns;
	s->skel->rodata->hardirq_threshold_ns = (uint64_t)ctx->cfg->softirq_threshold_ns;
	err = det_softirq_bpf__load(s->skel);
	if (err < 0) {
		sh_warn("softirq: could not load the BPF programs: %s", strerror(-err));
		goto cleanup;
	}
	progs[0] = s->skel->progs.softirq_raise;
	progs[1] = s->skel->progs.softirq_entry;
	progs[2] = s->skel->progs.softirq_exit;
	progs[3] = s->skel->progs.irq_handler_entry;
	progs[4] = s->skel->progs.irq_handler_exit;
	for (size_t i = 0; i < 5; i++) {
		s->links[i] = bpf_program__attach(progs[i]);
		if (!s->links[i]) {
			err = -errno;
			sh_warn("softirq: could not attach \"%s\": %s", bpf_program__name(progs[i]),
				strerror(-err));
			goto cleanup;
		}
	}
	s->rb = ring_buffer__new(bpf_map__fd(s->skel->maps.events), ringbuf_cb, s, NULL);
	if (!s->rb) {
		err = -errno;
		sh_warn("softirq: could not create the ring buffer reader: %s", strerror(-err));
		goto cleanup;
	}
	sh_info("softirq: reporting softirq delays, softirq and hardirq handlers over %.1f ms",
		(double)ctx->cfg->softirq_threshold_ns / 1e6);
	*state = s;
	return 0;
cleanup:
	softirq_stop(s);
	return err;
}

static int softirq_fd(void *state)
{
	struct det_softirq *s = state;

	return ring_buffer__epoll_fd(s->rb);
}

static void softirq_poll(void *state)
{
	struct det_softirq *s = state;

	ring_buffer__consume(s->rb);
}

static void softirq_tick(void *state, int64_t wall_ns)
{
	struct det_softirq *s = state;
	uint64_t c[SH_SIRQ_CNT_MAX], seen;

	(void)wall_ns;
	if (++s->ticks % LOG_EVERY_S)
		return;
	/* a line a minute, only when something happened since the last */
	read_counters(s, c);
	seen = c[SH_SIRQ_CNT_DELAY] + c[SH_SIRQ_CNT_LONG] + c[SH_SIRQ_CNT_HARDIRQ] +
	       c[SH_SIRQ_CNT_STALE] + s->malformed + s->build_errors;
	if (seen == s->logged)
		return;
	s->logged = seen;
	sh_info("softirq: since start %llu delays, %llu long softirqs, %llu long hardirqs "
		"(%llu lost in the ring buffer, %llu rate-limited, %llu malformed, %llu not built), "
		"%llu stale times ignored",
		(unsigned long long)c[SH_SIRQ_CNT_DELAY], (unsigned long long)c[SH_SIRQ_CNT_LONG],
		(unsigned long long)c[SH_SIRQ_CNT_HARDIRQ], (unsigned long long)c[SH_SIRQ_CNT_LOST],
		(unsigned long long)s->suppressed, (unsigned long long)s->malformed,
		(unsigned long long)s->build_errors, (unsigned long long)c[SH_SIRQ_CNT_STALE]);
}

const struct agent_detector_ops det_softirq_ops = {
	.name = "softirq",
	.start = softirq_start,
	.fd = softirq_fd,
	.poll = softirq_poll,
	.tick = softirq_tick,
	.stop = softirq_stop,
};
