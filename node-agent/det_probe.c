/* det_probe.c: the "probe" detector's user side: user-defined probes from
 * the config (key "probe", repeatable; --probe on the command line).
 *
 *   uprobe:PATH:FUNCTION[:THRESHOLD]
 *       Function latency, like funcslower: every call of FUNCTION in the
 *       ELF file PATH (an executable or a shared library; any process that
 *       maps it) that takes at least THRESHOLD (a duration: "5ms", "500us";
 *       default 5 ms) is a "probe" event. FUNCTION is a symbol name
 *       (libbpf resolves it; "name@LIBVERSION" for versioned symbols).
 *   usdt:PATH:PROVIDER:NAME[:THRESHOLD]
 *       A USDT probe point. A probe point has no duration of its own:
 *       without THRESHOLD every hit is an instant event (duration 0)
 *       carrying the probe's arguments, rate-limited in the kernel to 20
 *       hits per second per probe (and by the agent's per-kind event
 *       budget); with THRESHOLD, arg0 is taken as a duration in ns and only
 *       hits with arg0 >= THRESHOLD are events (duration = arg0, ending at
 *       the hit) -- the shape of probes such as "query__done(latency_ns)".
 *
 * PATH may not contain ':'. A bare number THRESHOLD is seconds (as every
 * duration in the config). Specs that do not parse or attach are logged and
 * skipped; the detector runs if at least one probe attached.
 *
 * Each event: kind "probe", detail "PATH:FUNCTION" (or
 * "PATH:PROVIDER:NAME"), start/duration of the call, the victim thread
 * with its user stack at the return (the function, then its callers) and
 * the kernel stack where the call spent its longest stretch off CPU, and
 * attrs threshold_ns, retval, off_cpu_ns, blocked_max_ns, blocked_state
 * (USDT: arg0..argN). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "det_probe.h"
#include "det_probe.skel.h"
#include "detect.h"
#include "events.h"
#include "log.h"
#include "symbolize.h"
#include "timeutil.h"

#define DEFAULT_THRESHOLD_NS (5 * SH_NS_PER_MS)
#define KSTACK_DEPTH 127
#define LOG_EVERY_NS (60 * SH_NS_PER_SEC)

_Static_assert(DET_PROBE_MAX >= AGENT_CONFIG_MAX_PROBES, "every configured probe has a slot");

enum probe_kind { PROBE_UPROBE, PROBE_USDT };

struct probe {
	enum probe_kind kind;
	char path[AGENT_CONFIG_URL_MAX];
	char func[AGENT_CONFIG_URL_MAX]; /* uprobe: function; usdt: provider */
	char name[AGENT_CONFIG_URL_MAX]; /* usdt: probe name */
	char detail[3 * AGENT_CONFIG_URL_MAX + 4];
	int64_t threshold_ns;
	bool has_threshold;
	struct bpf_link *entry, *ret; /* usdt: entry only */
	uint64_t events, suppressed;
};

struct det_probe {
	struct agent_det_ctx ctx;
	struct det_probe_bpf *skel;
	struct ring_buffer *rb;
	struct probe probes[DET_PROBE_MAX];
	size_t n;
	struct bpf_link *switch_link;
	struct bpf_program *usdt_prog; /* NULL when built without USDT support */
	uint64_t malformed;
	uint64_t last_counters[DET_PROBE_CNT_MAX];
	int64_t next_log_ns;
};

/* parse_spec parses one "probe" value into *p. Returns 0 or -EINVAL with
 * the reason in why. */
static int parse_spec(const char *spec, struct probe *p, const char **why)
{
	char buf[AGENT_CONFIG_URL_MAX], *rest, *colon;
	int64_t ns;

	memset(p, 0, sizeof(*p));
	p->threshold_ns = DEFAULT_THRESHOLD_NS;
	snprintf(buf, sizeof(buf), "%s", spec);
	if (strncmp(buf, "uprobe:", 7) == 0) {
		p->kind = PROBE_UPROBE;
		rest = buf + 7;
	} else if (strncmp(buf, "usdt:", 5) == 0) {
		p->kind = PROBE_USDT;
		rest = buf + 5;
	} else {
		*why = "expected uprobe: or usdt:";
		return -EINVAL;
	}
	/* a trailing duration is the threshold (no function or probe name
	 * parses as one: they cannot start with a digit) */
	colon = strrchr(rest, ':');
	if (colon && colon[1] >= '0' && colon[1] <= '9') {
		if (sh_parse_duration(colon + 1, &ns) != 0 || ns < 0) {
			*why = "bad threshold (expected a duration such as 5ms)";
			return -EINVAL;
		}
		p->threshold_ns = ns;
		p->has_threshold = true;
		*colon = '\0';
	}
	colon = strrchr(rest, ':');
	if (!colon || !colon[1]) {
		*why = p->kind == PROBE_UPROBE ? "expected uprobe:PATH:FUNCTION[:THRESHOLD]"
					       : "expected usdt:PATH:PROVIDER:NAME[:THRESHOLD]";
		return -EINVAL;
	}
	*colon = '\0';
	if (p->kind == PROBE_UPROBE) {
		snprintf(p->func, sizeof(p->func), "%s", colon + 1);
	} else {
		char *pc = strrchr(rest, ':');

		snprintf(p->name, sizeof(p->name), "%s", colon + 1);
		if (!pc || !pc[1]) {
			*why = "expected usdt:PATH:PROVIDER:NAME[:THRESHOLD]";
			return -EINVAL;
		}
		*pc = '\0';
		snprintf(p->func, sizeof(p->func), "%s", pc + 1);
	}
	if (!rest[0]) {
		*why = "empty PATH";
		return -EINVAL;
	}
	snprintf(p->path, sizeof(p->path), "%s", rest);
	if (p->kind == PROBE_UPROBE)
		snprintf(p->detail, sizeof(p->detail), "%s:%s", p->path, p->func);
	else
		snprintf(p->detail, sizeof(p->detail), "%s:%s:%s", p->path, p->func, p->name);
	return 0;
}

static const char *state_name(uint32_t state)
{
	if (state == 0)
		return "preempted";
	if (state & 0x0002) /* TASK_UNINTERRUPTIBLE */
		return "uninterruptible";
	if (state & 0x0001) /* TASK_INTERRUPTIBLE */
		return "sleeping";
	return "other";
}

/* add_kstack copies the kernel stack with id into the victim, without the
 * frames of the tracing machinery that captured it (the BPF program and
 * the tracepoint's dispatcher above __schedule). */
static void add_kstack(struct det_probe *d, Spikehound__Task *t, int32_t id)
{
	uint64_t ips[KSTACK_DEPTH];
	size_t n = 0, skip = 0;

	if (id < 0)
		return;
	memset(ips, 0, sizeof(ips));
	if (bpf_map_lookup_elem(bpf_map__fd(d->skel->maps.kstacks), &id, ips) != 0)
		return;
	while (n < KSTACK_DEPTH && ips[n])
		n++;
	for (; d->ctx.sym && skip < n && skip < 4; skip++) {
		struct agent_frame f;

		if (agent_symbolize_kernel(d->ctx.sym, ips[skip], &f) == 0 && f.name &&
		    strncmp(f.name, "bpf_", 4) != 0 && strncmp(f.name, "__bpf_", 6) != 0)
			break;
	}
	if (skip == n || skip == 4)
		skip = 0; /* not the expected shape: keep everything */
	if (n > skip)
		agent_task_set_kstack(t, d->ctx.sym, ips + skip, n - skip);
}

static int event_cb(void *arg, void *data, size_t size)
{
	struct det_probe *d = arg;
	const struct det_probe_event *e = data;
	Spikehound__SpikeEvent *ev;
	Spikehound__Task *victim;
	struct probe *p;
	char comm[DET_PROBE_COMM_LEN + 1];
	int cpus[2];
	int rv;

	if (size < sizeof(*e) || e->probe >= d->n ||
	    (e->type != DET_PROBE_CALL && e->type != DET_PROBE_USDT)) {
		d->malformed++;
		return 0;
	}
	p = &d->probes[e->probe];
	memcpy(comm, e->comm, DET_PROBE_COMM_LEN);
	comm[DET_PROBE_COMM_LEN] = '\0';
	ev = malloc(sizeof(*ev));
	if (!ev)
		return 0;
	spikehound__spike_event__init(ev);
	ev->kind = strdup("probe");
	ev->detail = strdup(p->detail);
	ev->start_ns = (int64_t)e->start_ns + d->ctx.wall_minus_mono_ns;
	ev->duration_ns = (int64_t)(e->end_ns - e->start_ns);
	ev->cpu = (int32_t)e->cpu;
	victim = agent_task_new((int32_t)e->pid, (int32_t)e->tid, comm, "victim");
	ev->victim = victim;
	if (!ev->kind || !ev->detail || !victim) {
		spikehound__spike_event__free_unpacked(ev, NULL);
		return 0;
	}
	if (e->ustack_depth) {
		size_t n = e->ustack_depth < DET_PROBE_USTACK_DEPTH ? e->ustack_depth
								    : DET_PROBE_USTACK_DEPTH;

		if (d->ctx.sym)
			agent_symbolizer_note_pid(d->ctx.sym, e->pid, (int64_t)e->end_ns);
		agent_task_set_ustack(victim, d->ctx.sym, e->pid, (int64_t)e->end_ns,
				      (const uint64_t *)e->ustack, n);
	}
	add_kstack(d, victim, e->kstack_id);
	if (e->type == DET_PROBE_CALL) {
		agent_event_attr(ev, "threshold_ns", "%lld", (long long)p->threshold_ns);
		agent_event_attr(ev, "retval", "%lld", (long long)e->retval);
		agent_event_attr(ev, "off_cpu_ns", "%llu", (unsigned long long)e->off_cpu_ns);
		if (e->block_max_ns) {
			agent_event_attr(ev, "blocked_max_ns", "%llu",
					 (unsigned long long)e->block_max_ns);
			agent_event_attr(ev, "blocked_state", "%s", state_name(e->block_state));
		}
	} else {
		if (p->has_threshold)
			agent_event_attr(ev, "threshold_ns", "%lld", (long long)p->threshold_ns);
		for (uint32_t i = 0; i < e->nargs && i < DET_PROBE_NARGS; i++) {
			char key[8];

			snprintf(key, sizeof(key), "arg%u", i);
			agent_event_attr(ev, key, "%lld", (long long)e->args[i]);
		}
	}
	agent_event_attr(ev, "probe", "%s", p->kind == PROBE_UPROBE ? "uprobe" : "usdt");
	if (e->type == DET_PROBE_CALL)
		sh_debug("probe: %s in %s[%u/%u] took %.3f ms (retval %lld, off CPU %.3f ms)",
			 p->detail, comm, e->pid, e->tid, (double)(e->end_ns - e->start_ns) / 1e6,
			 (long long)e->retval, (double)e->off_cpu_ns / 1e6);
	else
		sh_debug("probe: %s in %s[%u/%u]: %u args, arg0 %lld, arg1 %lld", p->detail, comm,
			 e->pid, e->tid, e->nargs, (long long)e->args[0], (long long)e->args[1]);
	cpus[0] = (int)e->cpu;
	cpus[1] = (int)e->entry_cpu;
	rv = agent_events_emit(d->ctx.events, ev, cpus, e->cpu == e->entry_cpu ? 1 : 2);
	if (rv == 0)
		p->events++;
	else
		p->suppressed++;
	return 0;
}

static void read_counters(struct det_probe *d, uint64_t *sums)
{
	int nr = libbpf_num_possible_cpus();
	uint64_t *vals;

	memset(sums, 0, DET_PROBE_CNT_MAX * sizeof(*sums));
	if (nr <= 0 || !(vals = calloc((size_t)nr, sizeof(*vals))))
		return;
	for (uint32_t k = 0; k < DET_PROBE_CNT_MAX; k++) {
		if (bpf_map_lookup_elem(bpf_map__fd(d->skel->maps.counters), &k, vals) != 0)
			continue;
		for (int c = 0; c < nr; c++)
			sums[k] += vals[c];
	}
	free(vals);
}

static void probe_stop(void *state)
{
	struct det_probe *d = state;

	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++) {
		bpf_link__destroy(d->probes[i].entry);
		bpf_link__destroy(d->probes[i].ret);
	}
	bpf_link__destroy(d->switch_link);
	ring_buffer__free(d->rb);
	det_probe_bpf__destroy(d->skel);
	free(d);
}

/* attach_probe attaches p (index i); returns 0 or a negative errno. */
static int attach_probe(struct det_probe *d, size_t i)
{
	struct probe *p = &d->probes[i];
	int err;

	if (p->kind == PROBE_UPROBE) {
		LIBBPF_OPTS(bpf_uprobe_opts, o, .func_name = p->func, .bpf_cookie = i);

		/* the return probe first, so no timed entry misses its return */
		o.retprobe = true;
		p->ret = bpf_program__attach_uprobe_opts(d->skel->progs.uretprobe_return, -1,
							 p->path, 0, &o);
		if (!p->ret)
			return -errno;
		o.retprobe = false;
		p->entry = bpf_program__attach_uprobe_opts(d->skel->progs.uprobe_entry, -1,
							   p->path, 0, &o);
		if (!p->entry) {
			err = -errno;
			bpf_link__destroy(p->ret);
			p->ret = NULL;
			return err;
		}
		return 0;
	}
	if (!d->usdt_prog)
		return -EOPNOTSUPP; /* see det_probe.bpf.c: built without usdt.bpf.h */
	{
		LIBBPF_OPTS(bpf_usdt_opts, o, .usdt_cookie = i);

		p->entry = bpf_program__attach_usdt(d->usdt_prog, -1, p->path, p->func, p->name, &o);
		if (!p->entry)
			return -errno;
	}
	return 0;
}

static int probe_start(const struct agent_det_ctx *ctx, void **state)
{
	const struct agent_config *cfg = ctx->cfg;
	struct det_probe *d;
	bool any_uprobe = false, any_usdt = false;
	size_t attached = 0;
	int err;

	if (cfg->n_probes == 0) {
		sh_info("detector \"probe\": no probe configured "
			"(probe = uprobe:PATH:FUNCTION[:THRESHOLD] or usdt:PATH:PROVIDER:NAME[:THRESHOLD])");
		return -ENODATA;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->ctx = *ctx;
	for (size_t i = 0; i < cfg->n_probes && d->n < DET_PROBE_MAX; i++) {
		struct probe *p = &d->probes[d->n];
		const char *why = "";
		bool dup = false;

		if (parse_spec(cfg->probes[i], p, &why) != 0) {
			sh_warn("probe \"%s\" ignored: %s", cfg->probes[i], why);
			continue;
		}
		/* one timing per function: a return is matched by probe index */
		for (size_t k = 0; k < d->n; k++)
			dup |= strcmp(d->probes[k].detail, p->detail) == 0;
		if (dup) {
			sh_warn("probe \"%s\" ignored: %s is probed already", cfg->probes[i], p->detail);
			continue;
		}
		any_uprobe |= p->kind == PROBE_UPROBE;
		any_usdt |= p->kind == PROBE_USDT;
		d->n++;
	}
	if (d->n == 0) {
		err = -EINVAL;
		goto cleanup;
	}
	d->skel = det_probe_bpf__open();
	if (!d->skel) {
		err = -errno;
		sh_warn("could not open the probe BPF object: %s", strerror(-err));
		goto cleanup;
	}
	for (size_t i = 0; i < d->n; i++) {
		d->skel->rodata->thresholds_ns[i] = (uint64_t)d->probes[i].threshold_ns;
		d->skel->rodata->usdt_mode[i] = d->probes[i].kind == PROBE_USDT &&
							d->probes[i].has_threshold
						? DET_PROBE_USDT_DURATION
						: DET_PROBE_USDT_INSTANT;
	}
	bpf_program__set_autoload(d->skel->progs.uprobe_entry, any_uprobe);
	bpf_program__set_autoload(d->skel->progs.uretprobe_return, any_uprobe);
	bpf_program__set_autoload(d->skel->progs.sched_switch, any_uprobe);
	d->usdt_prog = bpf_object__find_program_by_name(d->skel->obj, "usdt_hit");
	if (d->usdt_prog)
		bpf_program__set_autoload(d->usdt_prog, any_usdt);
	err = det_probe_bpf__load(d->skel);
	if (err) {
		sh_warn("could not load the probe BPF programs: %s", strerror(-err));
		goto cleanup;
	}
	for (size_t i = 0; i < d->n; i++) {
		err = attach_probe(d, i);
		if (err == -EOPNOTSUPP) {
			sh_warn("probe \"%s\" not attached: this agent was built without USDT support "
				"(bpf/det_probe.bpf.c needs <asm/errno.h> for libbpf's usdt.bpf.h)",
				d->probes[i].detail);
			continue;
		}
		if (err) {
			sh_warn("probe \"%s\" not attached: %s", d->probes[i].detail, strerror(-err));
			continue;
		}
		attached++;
		if (d->probes[i].kind == PROBE_USDT && !d->probes[i].has_threshold)
			sh_info("probe %s attached (usdt, every hit, at most %u per second)",
				d->probes[i].detail, d->skel->rodata->instant_per_sec);
		else
			sh_info("probe %s attached (%s, threshold %.3f ms)", d->probes[i].detail,
				d->probes[i].kind == PROBE_UPROBE ? "uprobe" : "usdt",
				(double)d->probes[i].threshold_ns / 1e6);
	}
	if (!attached) {
		err = -ENOENT;
		goto cleanup;
	}
	if (any_uprobe) {
		d->switch_link = bpf_program__attach(d->skel->progs.sched_switch);
		if (!d->switch_link) /* only the off-CPU evidence is lost */
			sh_warn("probe: could not attach sched_switch (no off-CPU stacks): %s",
				strerror(errno));
	}
	d->rb = ring_buffer__new(bpf_map__fd(d->skel->maps.events), event_cb, d, NULL);
	if (!d->rb) {
		err = -errno;
		sh_warn("could not create the probe ring buffer reader: %s", strerror(-err));
		goto cleanup;
	}
	d->next_log_ns = sh_now_mono_ns() + LOG_EVERY_NS;
	*state = d;
	return 0;
cleanup:
	probe_stop(d);
	return err;
}

static int probe_fd(void *state)
{
	struct det_probe *d = state;

	return ring_buffer__epoll_fd(d->rb);
}

static void probe_poll(void *state)
{
	struct det_probe *d = state;

	ring_buffer__consume(d->rb);
}

static void probe_tick(void *state, int64_t wall_ns)
{
	struct det_probe *d = state;
	uint64_t c[DET_PROBE_CNT_MAX];
	int64_t now = sh_now_mono_ns();
	uint64_t dropped;

	(void)wall_ns;
	if (now < d->next_log_ns)
		return;
	d->next_log_ns = now + LOG_EVERY_NS;
	read_counters(d, c);
	dropped = (c[DET_PROBE_CNT_LOST] - d->last_counters[DET_PROBE_CNT_LOST]) +
		  (c[DET_PROBE_CNT_RATE] - d->last_counters[DET_PROBE_CNT_RATE]) +
		  (c[DET_PROBE_CNT_DEEP] - d->last_counters[DET_PROBE_CNT_DEEP]) +
		  (c[DET_PROBE_CNT_NOSLOT] - d->last_counters[DET_PROBE_CNT_NOSLOT]);
	if (dropped || d->malformed)
		sh_info("probe: last minute %llu calls timed, %llu slow, %llu lost (ring full), %llu "
			"over the rate limit, %llu too deeply nested, %llu untracked threads, "
			"%llu malformed so far",
			(unsigned long long)(c[DET_PROBE_CNT_CALLS] - d->last_counters[DET_PROBE_CNT_CALLS]),
			(unsigned long long)(c[DET_PROBE_CNT_SLOW] - d->last_counters[DET_PROBE_CNT_SLOW]),
			(unsigned long long)(c[DET_PROBE_CNT_LOST] - d->last_counters[DET_PROBE_CNT_LOST]),
			(unsigned long long)(c[DET_PROBE_CNT_RATE] - d->last_counters[DET_PROBE_CNT_RATE]),
			(unsigned long long)(c[DET_PROBE_CNT_DEEP] - d->last_counters[DET_PROBE_CNT_DEEP]),
			(unsigned long long)(c[DET_PROBE_CNT_NOSLOT] -
					     d->last_counters[DET_PROBE_CNT_NOSLOT]),
			(unsigned long long)d->malformed);
	memcpy(d->last_counters, c, sizeof(c));
}

const struct agent_detector_ops det_probe_ops = {
	.name = "probe",
	.start = probe_start,
	.fd = probe_fd,
	.poll = probe_poll,
	.tick = probe_tick,
	.stop = probe_stop,
};
