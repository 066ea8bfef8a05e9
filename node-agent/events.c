/* events.c: spike events from the detectors to the spool, rate-limited per
 * kind, with the flight recorder's samples of the spike window attached. */
#include "events.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "log.h"
#include "record.h"
#include "recorder.h"
#include "spool.h"
#include "symbolize.h"
#include "timeutil.h"

#define MAX_PENDING 1024
#define MAX_CPUS_PER_EVENT 8
#define MINUTE_NS (60 * SH_NS_PER_SEC)

/* kind_state: a kind's token bucket, and what lets a spike longer than any
 * sent recently through an empty bucket: the longest durations sent in
 * this minute and the one before, and this minute's such escalations. */
struct kind_state {
	char kind[64];
	double tokens;
	int64_t last_refill_ns;
	uint64_t suppressed; /* since the last one sent */
	int64_t minute_ns;   /* start of the current minute (monotonic) */
	int64_t longest_ns, longest_prev_ns;
	uint32_t escalations; /* in the current minute */
	UT_hash_handle hh;
};

struct pending {
	Spikehound__SpikeEvent *ev;
	int cpus[MAX_CPUS_PER_EVENT];
	size_t ncpus;
	int64_t due_mono_ns;
};

struct agent_events {
	struct agent_events_opts o;
	struct kind_state *kinds;
	struct pending pending[MAX_PENDING];
	size_t head, n;
	struct agent_events_stats st;
};

int agent_events_new(const struct agent_events_opts *o, struct agent_events **out)
{
	struct agent_events *e = calloc(1, sizeof(*e));

	if (!e)
		return -ENOMEM;
	e->o = *o;
	if (!e->o.burst)
		e->o.burst = 20;
	if (!e->o.per_minute)
		e->o.per_minute = 60;
	if (!e->o.escalations)
		e->o.escalations = e->o.burst;
	if (!e->o.delay_ns)
		e->o.delay_ns = 200 * SH_NS_PER_MS;
	if (!e->o.window_stacks)
		e->o.window_stacks = 10;
	*out = e;
	return 0;
}

void agent_events_free(struct agent_events *e)
{
	struct kind_state *k, *tmp;

	if (!e)
		return;
	for (size_t i = 0; i < e->n; i++)
		spikehound__spike_event__free_unpacked(e->pending[(e->head + i) % MAX_PENDING].ev, NULL);
	HASH_ITER(hh, e->kinds, k, tmp)
	{
		HASH_DEL(e->kinds, k);
		free(k);
	}
	free(e);
}

/* admit applies the token bucket of ev's kind; with the bucket empty, a
 * spike longer than every one of its kind sent in this minute and the one
 * before still goes (at most o.escalations a minute), so a burst of small
 * spikes never hides the worst one. */
static struct kind_state *admit(struct agent_events *e, const char *kind, int64_t duration_ns,
				bool *ok)
{
	int64_t now = sh_now_mono_ns();
	struct kind_state *k;

	HASH_FIND_STR(e->kinds, kind, k);
	if (!k) {
		k = calloc(1, sizeof(*k));
		if (!k) {
			*ok = false;
			return NULL;
		}
		snprintf(k->kind, sizeof(k->kind), "%s", kind);
		k->tokens = e->o.burst;
		k->last_refill_ns = now;
		k->minute_ns = now;
		HASH_ADD_STR(e->kinds, kind, k);
	}
	k->tokens += (double)(now - k->last_refill_ns) / (60.0 * SH_NS_PER_SEC) * e->o.per_minute;
	if (k->tokens > e->o.burst)
		k->tokens = e->o.burst;
	k->last_refill_ns = now;
	if (now - k->minute_ns >= MINUTE_NS) {
		k->longest_prev_ns = now - k->minute_ns < 2 * MINUTE_NS ? k->longest_ns : 0;
		k->longest_ns = 0;
		k->escalations = 0;
		k->minute_ns = now;
	}
	*ok = k->tokens >= 1.0;
	if (*ok) {
		k->tokens -= 1.0;
	} else if (duration_ns > k->longest_ns && duration_ns > k->longest_prev_ns &&
		   k->escalations < e->o.escalations) {
		k->escalations++;
		e->st.escalated++;
		*ok = true;
	}
	if (*ok && duration_ns > k->longest_ns)
		k->longest_ns = duration_ns;
	return k;
}

int agent_events_emit(struct agent_events *e, Spikehound__SpikeEvent *ev, const int *cpus,
		      size_t ncpus)
{
	struct kind_state *k;
	struct pending *p;
	bool ok;

	e->st.emitted++;
	if (ev->duration_ns < 0 || ev->start_ns <= 0) {
		/* a detector's clocks disagreed: the aggregator would refuse it */
		e->st.invalid++;
		if ((e->st.invalid & (e->st.invalid - 1)) == 0)
			sh_warn("events: dropped a %s event with start %" PRId64 " and duration %" PRId64
				" ns (%" PRIu64 " so far)",
				ev->kind ? ev->kind : "?", ev->start_ns, ev->duration_ns, e->st.invalid);
		spikehound__spike_event__free_unpacked(ev, NULL);
		return -EINVAL;
	}
	if (e->o.on_event)
		e->o.on_event(e->o.on_event_arg, ev);
	k = admit(e, ev->kind ? ev->kind : "", ev->duration_ns, &ok);
	if (!ok || e->n == MAX_PENDING) {
		if (k)
			k->suppressed++;
		e->st.suppressed++;
		spikehound__spike_event__free_unpacked(ev, NULL);
		return -EBUSY;
	}
	ev->suppressed_before = k->suppressed;
	k->suppressed = 0;
	p = &e->pending[(e->head + e->n) % MAX_PENDING];
	e->n++;
	p->ev = ev;
	p->ncpus = 0;
	for (size_t i = 0; cpus && i < ncpus && p->ncpus < MAX_CPUS_PER_EVENT; i++) {
		bool dup = false;

		for (size_t j = 0; j < p->ncpus; j++)
			dup |= p->cpus[j] == cpus[i];
		if (!dup && cpus[i] >= 0)
			p->cpus[p->ncpus++] = cpus[i];
	}
	p->due_mono_ns = sh_now_mono_ns() + e->o.delay_ns;
	return 0;
}

struct window_ctx {
	struct agent_events *e;
	const struct pending *p;
	struct folded {
		char *text;
		uint32_t count;
		UT_hash_handle hh;
	} *stacks;
	size_t n;
	char buf[8192];
};

static int window_visit_cb(void *arg, const struct agent_record *r)
{
	struct window_ctx *w = arg;
	struct folded *f;
	bool want = w->p->ncpus == 0;

	if (r->type != AGENT_REC_SAMPLE || !r->sample.stack)
		return 0;
	for (size_t i = 0; i < w->p->ncpus; i++)
		want |= (uint32_t)w->p->cpus[i] == r->cpu;
	if (!want)
		return 0;
	agent_fold_stack(w->e->o.sym, r->sample.stack, r->ts_ns, w->buf, sizeof(w->buf));
	HASH_FIND_STR(w->stacks, w->buf, f);
	if (!f) {
		if (w->n >= 4096 || !(f = calloc(1, sizeof(*f))) || !(f->text = strdup(w->buf))) {
			free(f);
			return 0;
		}
		HASH_ADD_KEYPTR(hh, w->stacks, f->text, strlen(f->text), f);
		w->n++;
	}
	f->count++;
	return 0;
}

static int by_count_desc(const void *a, const void *b)
{
	const struct folded *x = *(struct folded *const *)a, *y = *(struct folded *const *)b;

	return x->count < y->count ? 1 : x->count > y->count ? -1 : 0;
}

/* attach_window adds the recorder's top stacks on the event's CPUs during
 * [start - 10 ms, end + 10 ms]. */
static void attach_window(struct agent_events *e, const struct pending *p)
{
	Spikehound__SpikeEvent *ev = p->ev;
	int64_t off = sh_now_wall_ns() - sh_now_mono_ns();
	int64_t from = ev->start_ns - off - 10 * SH_NS_PER_MS;
	int64_t to = ev->start_ns - off + ev->duration_ns + 10 * SH_NS_PER_MS;
	struct window_ctx *w;
	struct folded **v, *f, *tmp;
	size_t i = 0, n;

	if (!e->o.rec || ev->n_window_samples)
		return;
	w = calloc(1, sizeof(*w));
	if (!w)
		return;
	w->e = e;
	w->p = p;
	agent_recorder_foreach(e->o.rec, from, to, window_visit_cb, w);
	v = calloc(w->n + 1, sizeof(*v));
	if (v) {
		HASH_ITER(hh, w->stacks, f, tmp)
			v[i++] = f;
		qsort(v, i, sizeof(*v), by_count_desc);
		n = i < e->o.window_stacks ? i : e->o.window_stacks;
		ev->window_samples = calloc(n + 1, sizeof(*ev->window_samples));
		for (i = 0; ev->window_samples && i < n; i++) {
			Spikehound__FoldedStack *fs = malloc(sizeof(*fs));

			if (!fs)
				break;
			spikehound__folded_stack__init(fs);
			fs->stack = v[i]->text;
			v[i]->text = NULL; /* moved */
			fs->count = v[i]->count;
			ev->window_samples[ev->n_window_samples++] = fs;
		}
		free(v);
	}
	HASH_ITER(hh, w->stacks, f, tmp)
	{
		HASH_DEL(w->stacks, f);
		free(f->text);
		free(f);
	}
	free(w);
}

static void send_one(struct agent_events *e, struct pending *p)
{
	Spikehound__AgentMessage m = SPIKEHOUND__AGENT_MESSAGE__INIT;
	uint8_t *buf = NULL;
	uint64_t seq;
	size_t len;
	int rv;

	attach_window(e, p);
	rv = agent_spool_next_seq(e->o.spool, e->o.boot_id, &seq);
	if (rv != 0)
		goto fail;
	m.host_id = (char *)e->o.host_id;
	m.boot_id = (char *)e->o.boot_id;
	m.seq = seq;
	m.created_ns = sh_now_wall_ns();
	m.dropped_before = agent_spool_dropped_take(e->o.spool);
	m.body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_EVENT;
	m.event = p->ev;
	len = spikehound__agent_message__get_packed_size(&m);
	buf = malloc(len ? len : 1);
	if (!buf) {
		rv = -ENOMEM;
		goto fail;
	}
	spikehound__agent_message__pack(&m, buf);
	if (e->o.rec) {
		size_t elen = spikehound__spike_event__get_packed_size(p->ev);
		uint8_t *eb = malloc(elen ? elen : 1);

		if (eb) {
			spikehound__spike_event__pack(p->ev, eb);
			agent_recorder_add_blob(e->o.rec, AGENT_REC_SPIKE,
						p->ev->start_ns - (sh_now_wall_ns() - sh_now_mono_ns()),
						eb, elen);
			free(eb);
		}
	}
	rv = agent_spool_append(e->o.spool, AGENT_SPOOL_EVENT, e->o.boot_id, seq, buf, len);
	if (rv != 0)
		goto fail;
	e->st.sent++;
	free(buf);
	return;
fail:
	e->st.spool_errors++;
	sh_warn("could not spool a %s event: %s", p->ev->kind, strerror(-rv));
	free(buf);
}

void agent_events_flush(struct agent_events *e)
{
	int64_t now = sh_now_mono_ns();

	while (e->n) {
		struct pending *p = &e->pending[e->head];

		if (p->due_mono_ns > now)
			break;
		send_one(e, p);
		spikehound__spike_event__free_unpacked(p->ev, NULL);
		p->ev = NULL;
		e->head = (e->head + 1) % MAX_PENDING;
		e->n--;
	}
}

void agent_events_get_stats(const struct agent_events *e, struct agent_events_stats *st)
{
	*st = e->st;
}

Spikehound__Task *agent_task_new(int32_t pid, int32_t tid, const char *comm, const char *role)
{
	Spikehound__Task *t = malloc(sizeof(*t));

	if (!t)
		return NULL;
	spikehound__task__init(t);
	t->pid = pid;
	t->tid = tid;
	t->comm = strdup(comm ? comm : "");
	t->role = strdup(role ? role : "");
	t->cgroup = strdup("");
	if (!t->comm || !t->role || !t->cgroup) {
		spikehound__task__free_unpacked(t, NULL);
		return NULL;
	}
	return t;
}

static int set_stack(char ***out, size_t *n_out, struct agent_symbolizer *sym, bool kernel,
		     uint32_t pid, int64_t ts_ns, const uint64_t *ips, size_t n)
{
	char **v = calloc(n + 1, sizeof(*v));
	char buf[512];

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct agent_frame f;
		int rv = -ENOENT;

		if (sym)
			rv = kernel ? agent_symbolize_kernel(sym, ips[i], &f) :
				      agent_symbolize_user(sym, pid, ts_ns, ips[i], &f);
		if (rv == 0)
			agent_frame_format(&f, buf, sizeof(buf));
		else
			snprintf(buf, sizeof(buf), "0x%llx", (unsigned long long)ips[i]);
		v[i] = strdup(buf);
		if (!v[i]) {
			for (size_t k = 0; k < i; k++)
				free(v[k]);
			free(v);
			return -ENOMEM;
		}
	}
	*out = v;
	*n_out = n;
	return 0;
}

int agent_task_set_kstack(Spikehound__Task *t, struct agent_symbolizer *sym, const uint64_t *ips,
			  size_t n)
{
	return set_stack(&t->kernel_stack, &t->n_kernel_stack, sym, true, 0, 0, ips, n);
}

int agent_task_set_ustack(Spikehound__Task *t, struct agent_symbolizer *sym, uint32_t pid,
			  int64_t ts_ns, const uint64_t *ips, size_t n)
{
	return set_stack(&t->user_stack, &t->n_user_stack, sym, false, pid, ts_ns, ips, n);
}

int agent_event_attr(Spikehound__SpikeEvent *ev, const char *key, const char *fmt, ...)
{
	Spikehound__SpikeEvent__AttrsEntry **v, *a;
	char val[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	v = realloc(ev->attrs, (ev->n_attrs + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	ev->attrs = v;
	a = malloc(sizeof(*a));
	if (!a)
		return -ENOMEM;
	spikehound__spike_event__attrs_entry__init(a);
	a->key = strdup(key);
	a->value = strdup(val);
	if (!a->key || !a->value) {
		free(a->key);
		free(a->value);
		free(a);
		return -ENOMEM;
	}
	ev->attrs[ev->n_attrs++] = a;
	return 0;
}
