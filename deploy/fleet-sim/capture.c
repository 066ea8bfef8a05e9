/* capture.c: a simulated host's captures (see capture.h). */
#include "capture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capwire.h"
#include "rng.h"
#include "timeutil.h"

#define DEFAULT_HZ 99
#define SAMPLE_BYTES 24	    /* a packed CaptureSample with its key, about */
#define MAX_SPIKE_STACKS 32 /* spike events whose culprit gets samples */
#define MAX_FRAMES 64
#define JITTER_NS 20000		      /* a sample lands up to 20 us after its tick */
#define STREAM_CAPTURE 0x300000000ULL /* above host and cause streams (fleet.c) */

/* struct spike_win is a spike event's time on one CPU, sampled with the
 * stack of its culprit. */
struct spike_win {
	uint32_t cpu;
	int64_t from_ns, to_ns;
	uint32_t stack;
	int32_t tid;
};

/* struct take is one capture being assembled. Everything it allocates is
 * freed by take_fini. */
struct take {
	const struct fsim_capture_src *src;
	struct fsim_host *h;
	struct fsim_rng rng;
	int64_t from_ns, to_ns; /* the window held, host clock */
	void **mem;		/* allocations to free */
	size_t n_mem, cap_mem;
	Spikehound__CaptureStack *stacks, **stack_ptrs;
	size_t n_stacks, cap_stacks;
	struct fsim_stack_share usual[FSIM_GEN_MAX_STACKS];
	uint32_t usual_stack[FSIM_GEN_MAX_STACKS];
	int32_t usual_pid[FSIM_GEN_MAX_STACKS];
	uint32_t usual_threads[FSIM_GEN_MAX_STACKS];
	size_t n_usual;
	struct spike_win spikes[MAX_SPIKE_STACKS];
	size_t n_spikes;
	Spikehound__CaptureSample *samples, **sample_ptrs; /* samples: malloc'd */
	size_t n_samples, cap_samples;
	Spikehound__SpikeEvent **events;
	Spikehound__MetricSecond **metrics;
	Spikehound__CaptureProcEvent **procs;
	size_t n_events, n_metrics, n_procs;
	Spikehound__Process *processes, **process_ptrs;
	size_t n_processes;
	int64_t first_ns, last_ns; /* of the records included */
	bool truncated;
};

/* talloc returns size zeroed bytes that take_fini frees; NULL on ENOMEM. */
static void *talloc(struct take *t, size_t size)
{
	void *p;

	if (t->n_mem == t->cap_mem) {
		size_t cap = t->cap_mem ? 2 * t->cap_mem : 64;
		void **v = realloc(t->mem, cap * sizeof(*v));

		if (!v)
			return NULL;
		t->mem = v;
		t->cap_mem = cap;
	}
	if (!(p = calloc(1, size ? size : 1)))
		return NULL;
	t->mem[t->n_mem++] = p;
	return p;
}

static char *tstrdup(struct take *t, const char *s)
{
	size_t n = strlen(s);
	char *p = talloc(t, n + 1);

	if (p)
		memcpy(p, s, n + 1);
	return p;
}

static uint64_t str_hash(const char *s)
{
	uint64_t v = 0xcbf29ce484222325ULL; /* FNV-1a */

	for (; *s; s++)
		v = (v ^ (uint8_t)*s) * 0x100000001b3ULL;
	return v;
}

/* build_id writes a stable 20-byte build id of the file at path as hex. */
static void build_id(const char *path, char out[41])
{
	uint8_t b[24];
	uint64_t h = str_hash(path);

	for (int i = 0; i < 3; i++) {
		uint64_t v = fsim_hash(h, (uint64_t)i);

		memcpy(b + 8 * i, &v, 8);
	}
	sh_capwire_hex(b, 20, out);
}

/* is_libc tells whether a user frame is one of the C library's. */
static bool is_libc(const char *f)
{
	static const char *const names[] = {"__libc_start_main", "start_thread", "epoll_wait",
					    "clock_nanosleep",	 "__write",	 "pwrite64",
					    "__GI_epoll_wait"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(f, names[i]) == 0)
			return true;
	return false;
}

/* is_kernel_entry tells whether a folded frame is where the kernel part
 * of a stack begins (this frame and every inner one are the kernel's). */
static bool is_kernel_entry(const char *f)
{
	return strncmp(f, "entry_SYSCALL_64", 16) == 0 || strncmp(f, "asm_", 4) == 0;
}

static Spikehound__CaptureStack *stack_add(struct take *t)
{
	Spikehound__CaptureStack *cs;

	if (t->n_stacks == t->cap_stacks)
		return NULL;
	cs = &t->stacks[t->n_stacks];
	spikehound__capture_stack__init(cs);
	cs->id = (uint32_t)t->n_stacks;
	t->stack_ptrs[t->n_stacks++] = cs;
	return cs;
}

/* set_user_frames gives cs the n user frames (innermost first) of a
 * process running exe ("" for none). */
static int set_user_frames(struct take *t, Spikehound__CaptureStack *cs, const char *const *frames,
			   size_t n, const char *exe)
{
	char exe_id[41], libc_id[41];

	build_id(exe, exe_id);
	build_id("/usr/lib/x86_64-linux-gnu/libc.so.6", libc_id);
	cs->user_frames = talloc(t, (n + 1) * sizeof(char *));
	cs->user_build_ids = talloc(t, (n + 1) * sizeof(char *));
	cs->user_offsets = talloc(t, (n + 1) * sizeof(uint64_t));
	if (!cs->user_frames || !cs->user_build_ids || !cs->user_offsets)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		bool libc = is_libc(frames[i]);

		if (!(cs->user_frames[i] = tstrdup(t, frames[i])) ||
		    !(cs->user_build_ids[i] = tstrdup(t, libc	  ? libc_id
							 : exe[0] ? exe_id
								  : "")))
			return -ENOMEM;
		cs->user_offsets[i] = 0x1000 + (str_hash(frames[i]) & 0xfffff0);
	}
	cs->n_user_frames = cs->n_user_build_ids = cs->n_user_offsets = n;
	return 0;
}

/* stack_of_folded interns "comm;outer;...;inner" of process pid running
 * exe as a CaptureStack; returns its id or a negative errno. */
static int64_t stack_of_folded(struct take *t, const char *folded, int32_t pid, const char *exe)
{
	char buf[sizeof(t->usual[0].folded)], *tok[MAX_FRAMES], *save = NULL;
	const char *user[MAX_FRAMES];
	size_t n = 0, k, nu = 0;
	Spikehound__CaptureStack *cs = stack_add(t);

	if (!cs)
		return -ENOSPC;
	snprintf(buf, sizeof(buf), "%s", folded);
	for (char *p = strtok_r(buf, ";", &save); p && n < MAX_FRAMES;
	     p = strtok_r(NULL, ";", &save))
		tok[n++] = p;
	if (n == 0)
		return -EINVAL;
	for (k = 1; k < n && !is_kernel_entry(tok[k]); k++)
		;
	cs->pid = pid;
	if (!(cs->comm = tstrdup(t, tok[0])))
		return -ENOMEM;
	/* innermost first: the folded order reversed */
	cs->kernel_frames = talloc(t, (n - k + 1) * sizeof(char *));
	if (!cs->kernel_frames)
		return -ENOMEM;
	for (size_t i = n; i-- > k;)
		if (!(cs->kernel_frames[cs->n_kernel_frames++] = tstrdup(t, tok[i])))
			return -ENOMEM;
	for (size_t i = k; i-- > 1;)
		user[nu++] = tok[i];
	if (set_user_frames(t, cs, user, nu, exe) != 0)
		return -ENOMEM;
	return cs->id;
}

/* stack_of_task interns the stack a spike's culprit (or victim) shows on
 * its CPU: its kernel stack and, for a process with a program, one
 * unresolved user frame. */
static int64_t stack_of_task(struct take *t, const Spikehound__Task *task)
{
	struct fsim_proc *p = fsim_host_proc(t->h, task->pid);
	Spikehound__CaptureStack *cs;
	char unknown[160];
	const char *frames[1] = {unknown};

	for (size_t i = 0; i < t->n_stacks; i++) {
		cs = t->stack_ptrs[i];
		if (cs->pid == task->pid && strcmp(cs->comm, task->comm ? task->comm : "") == 0 &&
		    cs->n_kernel_frames == task->n_kernel_stack &&
		    (task->n_kernel_stack == 0 ||
		     strcmp(cs->kernel_frames[0], task->kernel_stack[0]) == 0))
			return cs->id;
	}
	if (!(cs = stack_add(t)))
		return -ENOSPC;
	cs->pid = task->pid;
	if (!(cs->comm = tstrdup(t, task->comm ? task->comm : "")))
		return -ENOMEM;
	cs->kernel_frames = talloc(t, (task->n_kernel_stack + 1) * sizeof(char *));
	if (!cs->kernel_frames)
		return -ENOMEM;
	for (size_t i = 0; i < task->n_kernel_stack; i++)
		if (!(cs->kernel_frames[cs->n_kernel_frames++] =
			      tstrdup(t, task->kernel_stack[i] ? task->kernel_stack[i] : "")))
			return -ENOMEM;
	if (p && p->def->exe[0] && strcmp(p->def->comm, cs->comm) == 0) {
		const char *base = strrchr(p->def->exe, '/');

		snprintf(unknown, sizeof(unknown), "[unknown] (%s)", base ? base + 1 : p->def->exe);
		if (set_user_frames(t, cs, frames, 1, p->def->exe) != 0)
			return -ENOMEM;
	}
	return cs->id;
}

static int rec_cmp(const void *a, const void *b)
{
	const struct fsim_rec *x = *(const struct fsim_rec *const *)a;
	const struct fsim_rec *y = *(const struct fsim_rec *const *)b;

	return x->t_ns < y->t_ns ? -1 : x->t_ns > y->t_ns;
}

static void note_time(struct take *t, int64_t ts)
{
	if (!t->first_ns || ts < t->first_ns)
		t->first_ns = ts;
	if (ts > t->last_ns)
		t->last_ns = ts;
}

/* read_records unpacks the recorder's records of the window, each type in
 * time order. */
static int read_records(struct take *t)
{
	const struct fsim_recorder *r = &t->h->rec;
	const struct fsim_rec **sel;
	size_t n = 0, ne = 0, nm = 0, np = 0;
	int rv = 0;

	if (!(sel = malloc((r->n + 1) * sizeof(*sel))))
		return -ENOMEM;
	for (size_t i = 0; i < r->n; i++) {
		const struct fsim_rec *e = &r->v[i];

		if (e->t_ns < t->from_ns || e->t_ns >= t->to_ns)
			continue;
		sel[n++] = e;
		ne += e->type == FSIM_REC_EVENT;
		nm += e->type == FSIM_REC_METRICS;
		np += e->type == FSIM_REC_PROC;
	}
	qsort(sel, n, sizeof(*sel), rec_cmp);
	t->events = talloc(t, (ne + 1) * sizeof(*t->events));
	t->metrics = talloc(t, (nm + 1) * sizeof(*t->metrics));
	t->procs = talloc(t, (np + 1) * sizeof(*t->procs));
	if (!t->events || !t->metrics || !t->procs) {
		free(sel);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n && rv == 0; i++) {
		const struct fsim_rec *e = sel[i];

		switch (e->type) {
		case FSIM_REC_EVENT:
			t->events[t->n_events] =
				spikehound__spike_event__unpack(NULL, e->len, e->buf);
			rv = t->events[t->n_events] ? (t->n_events++, 0) : -ENOMEM;
			break;
		case FSIM_REC_METRICS:
			t->metrics[t->n_metrics] =
				spikehound__metric_second__unpack(NULL, e->len, e->buf);
			rv = t->metrics[t->n_metrics] ? (t->n_metrics++, 0) : -ENOMEM;
			break;
		default:
			t->procs[t->n_procs] =
				spikehound__capture_proc_event__unpack(NULL, e->len, e->buf);
			rv = t->procs[t->n_procs] ? (t->n_procs++, 0) : -ENOMEM;
			break;
		}
		if (rv == 0)
			note_time(t, e->t_ns);
	}
	free(sel);
	return rv;
}

/* usual_stacks interns the host's usual stacks and finds their processes. */
static int usual_stacks(struct take *t)
{
	struct fsim_host *h = t->h;

	t->n_usual = fsim_gen_stacks(t->src->g, h, t->usual);
	for (size_t i = 0; i < t->n_usual; i++) {
		char comm[16];
		const char *semi = strchr(t->usual[i].folded, ';');
		size_t len = semi ? (size_t)(semi - t->usual[i].folded) : 0;
		struct fsim_proc *p;
		int64_t id;

		snprintf(comm, sizeof(comm), "%.*s", (int)(len < 15 ? len : 15),
			 t->usual[i].folded);
		p = fsim_host_find_comm(h, comm);
		if (!p && h->main_pid)
			p = fsim_host_proc(h, h->main_pid);
		t->usual_pid[i] = p ? p->pid : 1;
		t->usual_threads[i] = p ? p->def->threads : 1;
		id = stack_of_folded(t, t->usual[i].folded, t->usual_pid[i], p ? p->def->exe : "");
		if (id < 0)
			return (int)id;
		t->usual_stack[i] = (uint32_t)id;
	}
	return 0;
}

/* spike_stacks picks, for the spike events of the window, the stack their
 * CPU shows while they last. */
static int spike_stacks(struct take *t)
{
	for (size_t i = 0; i < t->n_events && t->n_spikes < MAX_SPIKE_STACKS; i++) {
		const Spikehound__SpikeEvent *ev = t->events[i];
		const Spikehound__Task *task = ev->n_culprits ? ev->culprits[0] : ev->victim;
		struct spike_win *w;
		int64_t id;

		if (!task || ev->cpu < 0 || (uint32_t)ev->cpu >= t->h->cpus)
			continue;
		if ((id = stack_of_task(t, task)) < 0)
			return (int)id;
		w = &t->spikes[t->n_spikes++];
		w->cpu = (uint32_t)ev->cpu;
		w->from_ns = ev->start_ns;
		w->to_ns = ev->start_ns + ev->duration_ns;
		w->stack = (uint32_t)id;
		w->tid = task->tid ? task->tid : task->pid;
	}
	return 0;
}

/* struct cpu_phase is where a CPU's ticks fall within the period. */
struct cpu_phase {
	int64_t off;
	uint32_t cpu;
};

static int phase_cmp(const void *a, const void *b)
{
	const struct cpu_phase *x = a, *y = b;

	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	return x->cpu < y->cpu ? -1 : x->cpu > y->cpu;
}

/* draw_samples draws the window's stack samples: every tick of every CPU
 * that is busy (or in a spike) gives one. At most max of them: later ones
 * are left out (truncated). Each CPU ticks at its own offset within the
 * period (plus a jitter below JITTER_NS); visiting the CPUs in offset
 * order yields the samples in time order, as a recorder holds them. */
static int draw_samples(struct take *t, uint32_t hz, size_t max)
{
	static const Spikehound__CaptureSample sample_init = SPIKEHOUND__CAPTURE_SAMPLE__INIT;
	struct fsim_host *h = t->h;
	int64_t period = SH_NS_PER_SEC / hz, span = t->to_ns - t->from_ns;
	size_t n_secs = (size_t)(span / SH_NS_PER_SEC) + 2, cap;
	double *busy = calloc(n_secs, sizeof(*busy)), level, cum[FSIM_GEN_MAX_STACKS];
	struct cpu_phase *phase = calloc(h->cpus, sizeof(*phase));
	int rv = 0;

	if (!busy || !phase) {
		rv = -ENOMEM;
		goto out;
	}
	/* the share of busy CPU in each second, from its metrics */
	level = (h->ms.user + h->ms.sys) / 100;
	for (size_t i = 0; i < n_secs; i++)
		busy[i] = level;
	for (size_t i = 0; i < t->n_metrics; i++) {
		const Spikehound__MetricSecond *m = t->metrics[i];
		int64_t k = (m->time_ns - t->from_ns) / SH_NS_PER_SEC;
		double b =
			(m->cpu_user_pct + m->cpu_sys_pct + m->cpu_irq_pct + m->cpu_softirq_pct) /
			100.0;

		if (m->time_ns < t->from_ns) /* the second the window starts in */
			k = 0;
		if (k >= 0 && (size_t)k < n_secs)
			busy[k] = b < 0 ? 0 : b > 1 ? 1 : b;
	}
	for (size_t i = 0; i < t->n_usual; i++)
		cum[i] = (i ? cum[i - 1] : 0) + t->usual[i].share;
	for (uint32_t c = 0; c < h->cpus; c++) {
		phase[c].cpu = c;
		phase[c].off = (int64_t)fsim_rng_below(&t->rng, (uint64_t)(period - JITTER_NS));
	}
	qsort(phase, h->cpus, sizeof(*phase), phase_cmp);
	/* room for about what the busy level gives; grown when needed */
	cap = (size_t)(((double)span / (double)period + 2) * h->cpus * (level + 0.1));
	if (cap > max)
		cap = max;
	t->samples = malloc((cap + 1) * sizeof(*t->samples));
	if (!t->samples) {
		rv = -ENOMEM;
		goto out;
	}
	t->cap_samples = cap + 1;
	/* ticks on a grid of the period from the window's start */
	for (int64_t base = t->from_ns; base < t->to_ns && !t->truncated; base += period) {
		for (uint32_t i = 0; i < h->cpus; i++) {
			uint32_t c = phase[i].cpu;
			int64_t ts = base + phase[i].off;
			size_t sec = (size_t)((ts - t->from_ns) / SH_NS_PER_SEC);
			Spikehound__CaptureSample *s;
			const struct spike_win *in = NULL;
			uint32_t stack;
			int32_t tid;

			if (ts >= t->to_ns)
				continue;
			for (size_t k = 0; k < t->n_spikes && !in; k++)
				if (t->spikes[k].cpu == c && ts >= t->spikes[k].from_ns &&
				    ts < t->spikes[k].to_ns)
					in = &t->spikes[k];
			if (in) {
				stack = in->stack;
				tid = in->tid;
			} else {
				double u;
				size_t k = 0;

				if (t->n_usual == 0 || sec >= n_secs ||
				    fsim_rng_unit(&t->rng) >= busy[sec])
					continue; /* idle: not recorded */
				u = fsim_rng_unit(&t->rng);
				while (k + 1 < t->n_usual && u >= cum[k])
					k++;
				stack = t->usual_stack[k];
				tid = t->usual_pid[k];
				if (t->usual_threads[k] > 1)
					tid += 1 + (int32_t)(c % t->usual_threads[k]);
			}
			if (t->n_samples == max) {
				t->truncated = true;
				break;
			}
			if (t->n_samples == t->cap_samples) {
				size_t nc = t->cap_samples * 2;
				Spikehound__CaptureSample *v = realloc(t->samples, nc * sizeof(*v));

				if (!v) {
					rv = -ENOMEM;
					goto out;
				}
				t->samples = v;
				t->cap_samples = nc;
			}
			s = &t->samples[t->n_samples];
			*s = sample_init;
			s->time_ns = ts + (int64_t)fsim_rng_below(&t->rng, JITTER_NS);
			s->cpu = c;
			s->tid = tid;
			s->stack_id = stack;
			t->n_samples++;
		}
	}
	if (!(t->sample_ptrs = talloc(t, (t->n_samples + 1) * sizeof(*t->sample_ptrs)))) {
		rv = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < t->n_samples; i++) {
		t->sample_ptrs[i] = &t->samples[i];
		note_time(t, t->samples[i].time_ns);
	}
out:
	free(busy);
	free(phase);
	return rv;
}

/* inventory lists the processes alive when the capture is taken. */
static int inventory(struct take *t)
{
	struct fsim_host *h = t->h;
	int64_t now = t->src->now_ns;

	t->processes = talloc(t, (h->n_procs + 1) * sizeof(*t->processes));
	t->process_ptrs = talloc(t, (h->n_procs + 1) * sizeof(*t->process_ptrs));
	if (!t->processes || !t->process_ptrs)
		return -ENOMEM;
	for (size_t i = 0; i < h->n_procs; i++) {
		const struct fsim_proc *p = &h->procs[i];
		Spikehound__Process *m = &t->processes[t->n_processes];

		/* the host has been generated a little ahead of now */
		if (p->start_ns > now || (p->exit_ns && p->exit_ns <= now))
			continue;
		spikehound__process__init(m);
		m->pid = p->pid;
		m->ppid = p->ppid;
		m->comm = (char *)p->def->comm;
		m->exe = (char *)p->def->exe;
		m->cmdline = (char *)fsim_proc_cmdline(p);
		m->cgroup = (char *)p->def->cgroup;
		m->start_time_ns = p->start_ns;
		m->uid = p->def->uid;
		t->process_ptrs[t->n_processes++] = m;
	}
	return 0;
}

static void take_fini(struct take *t)
{
	for (size_t i = 0; i < t->n_events; i++)
		spikehound__spike_event__free_unpacked(t->events[i], NULL);
	for (size_t i = 0; i < t->n_metrics; i++)
		spikehound__metric_second__free_unpacked(t->metrics[i], NULL);
	for (size_t i = 0; i < t->n_procs; i++)
		spikehound__capture_proc_event__free_unpacked(t->procs[i], NULL);
	for (size_t i = 0; i < t->n_mem; i++)
		free(t->mem[i]);
	free(t->mem);
	free(t->samples);
}

/* pack_compress packs cap, compresses it and hashes the result into res. */
static int pack_compress(const Spikehound__Capture *cap, uint64_t max_bytes,
			 struct fsim_capture_result *res)
{
	int rv = sh_capwire_compress(cap, max_bytes, &res->data, &res->len, &res->raw_bytes,
				     res->error, sizeof(res->error));

	if (rv)
		return rv;
	if (sh_capwire_sha256_hex(res->data, res->len, res->sha256) != 0) {
		snprintf(res->error, sizeof(res->error), "could not compute the SHA-256");
		fsim_capture_result_fini(res);
		res->raw_bytes = 0;
		return -EIO;
	}
	return 0;
}

int fsim_capture_take(const struct fsim_capture_src *src, const Spikehound__CaptureRequest *req,
		      struct fsim_capture_result *res)
{
	Spikehound__Capture cap = SPIKEHOUND__CAPTURE__INIT;
	struct fsim_hello hello;
	struct take t = {0};
	uint64_t max_bytes = sh_capwire_max_bytes(req, src->default_max_bytes);
	uint32_t hz = src->sample_hz ? src->sample_hz : DEFAULT_HZ;
	size_t n_max;
	int rv;

	memset(res, 0, sizeof(*res));
	if ((rv = sh_capwire_check_window(req, res->error, sizeof(res->error))) != 0)
		return rv;
	if (req->to_ns <= src->held_since_ns || req->from_ns >= src->now_ns) {
		double held = (double)(src->now_ns - src->held_since_ns) / 1e9;

		snprintf(
			res->error, sizeof(res->error),
			"window_gone: the recorder holds %.1f s (%.1f s to %.1f s ago), not the window asked for",
			held, held, 0.0);
		return -ENODATA;
	}
	t.src = src;
	t.h = src->h;
	t.from_ns = req->from_ns > src->held_since_ns ? req->from_ns : src->held_since_ns;
	t.to_ns = req->to_ns < src->now_ns ? req->to_ns : src->now_ns;
	fsim_rng_seed(&t.rng, src->f->seed ^ str_hash(req->capture_id ? req->capture_id : ""),
		      STREAM_CAPTURE + src->h->idx);
	t.cap_stacks = FSIM_GEN_MAX_STACKS + MAX_SPIKE_STACKS;
	t.stacks = talloc(&t, t.cap_stacks * sizeof(*t.stacks));
	t.stack_ptrs = talloc(&t, t.cap_stacks * sizeof(*t.stack_ptrs));
	n_max = max_bytes > SIZE_MAX / SH_CAPWIRE_RAW_PER_COMPRESSED
			? SIZE_MAX / SAMPLE_BYTES
			: (size_t)max_bytes * SH_CAPWIRE_RAW_PER_COMPRESSED / SAMPLE_BYTES;
	if (!t.stacks || !t.stack_ptrs || (rv = read_records(&t)) != 0 ||
	    (sh_capwire_wants(req, "samples") &&
	     ((rv = usual_stacks(&t)) != 0 || (rv = spike_stacks(&t)) != 0 ||
	      (rv = draw_samples(&t, hz, n_max)) != 0)) ||
	    (rv = inventory(&t)) != 0) {
		snprintf(res->error, sizeof(res->error), "out of memory while taking the capture");
		rv = -ENOMEM;
		goto out;
	}
	fsim_host_hello(src->f, src->h, src->now_ns - src->h->skew_ns, &hello);
	cap.capture_id = req->capture_id ? req->capture_id : (char *)"";
	cap.host = &hello.hello;
	cap.from_ns = req->from_ns;
	cap.to_ns = req->to_ns;
	cap.held_from_ns = t.first_ns;
	cap.held_to_ns = t.last_ns;
	cap.trigger = req->trigger ? req->trigger : (char *)"";
	cap.truncated = t.truncated;
	cap.sample_hz = hz;
	if (sh_capwire_wants(req, "samples")) {
		cap.stacks = t.stack_ptrs;
		cap.n_stacks = t.n_stacks;
		cap.samples = t.sample_ptrs;
		cap.n_samples = t.n_samples;
	}
	if (sh_capwire_wants(req, "events")) {
		cap.events = t.events;
		cap.n_events = t.n_events;
	}
	if (sh_capwire_wants(req, "metrics")) {
		cap.metrics = t.metrics;
		cap.n_metrics = t.n_metrics;
	}
	if (sh_capwire_wants(req, "procs")) {
		cap.procs = t.procs;
		cap.n_procs = t.n_procs;
		cap.processes = t.process_ptrs;
		cap.n_processes = t.n_processes;
	}
	if ((rv = pack_compress(&cap, max_bytes, res)) != 0)
		goto out;
	res->held_from_ns = cap.held_from_ns;
	res->held_to_ns = cap.held_to_ns;
	res->samples = cap.n_samples;
	res->stacks = cap.n_stacks;
	res->events = cap.n_events;
	res->metrics = cap.n_metrics;
	res->procs = cap.n_procs;
	res->processes = cap.n_processes;
	res->truncated = cap.truncated;
out:
	take_fini(&t);
	return rv;
}

void fsim_capture_result_fini(struct fsim_capture_result *res)
{
	free(res->data);
	res->data = NULL;
	res->len = 0;
}
