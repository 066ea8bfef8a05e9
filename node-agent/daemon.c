/* daemon.c: the always-on agent's collector loop. One thread (this one)
 * samples metrics and processes once a second and builds a Summary every
 * interval; the sender thread delivers what the spool holds. The spool is
 * the only thing the two share. */
#include "daemon.h"
#include "det_runq.h"
#include "capjobs.h"
#include "ctlclient.h"
#include "detect.h"
#include "events.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "hostinfo.h"
#include "log.h"
#include "metrics.h"
#include "privs.h"
#include "procs.h"
#include "record.h"
#include "recorder.h"
#include "sampler.h"
#include "sender.h"
#include "symbolize.h"
#include "spikehound.pb-c.h"
#include "spool.h"
#include "timeutil.h"

/* A summary holds at most this many process changes; more are counted. */
#define MAX_PROC_CHANGES 100000

struct proc_list {
	Spikehound__Process *items;
	size_t n, cap;
	uint64_t overflow;
};

struct daemon {
	const struct agent_config *cfg;
	struct sh_tls tls; /* borrowed from cfg */
	struct agent_hostinfo host;
	Spikehound__Hello__LabelsEntry *label_entries;
	Spikehound__Hello__LabelsEntry **label_ptrs;
	struct agent_spool *spool;
	struct agent_sender *sender;
	struct agent_metrics metrics;
	struct agent_procs procs;
	Spikehound__MetricSecond *secs;
	size_t n_secs, cap_secs;
	struct proc_list started, exited;
	/* the flight recorder (absent when BPF is unavailable) */
	struct agent_recorder *rec;
	struct agent_symbolizer *sym;
	struct agent_sampler *sampler;
	struct agent_record_feed feed;
	struct agent_events *events;
	struct agent_detectors *detectors;
	/* captures: commands from the control plane, local triggers */
	struct agent_capjobs *capjobs;
	struct agent_control *ctl;
	Spikehound__Hello cap_hello;
	int64_t interval_start_ns;
	uint64_t intervals;
	int64_t cpu_ns_last, cpu_wall_last;
	uint64_t summaries, spool_errors;
};

static void fill_hello_cb(void *arg, Spikehound__Hello *h)
{
	struct daemon *d = arg;

	/* runs on the sender thread: everything read here is immutable */
	agent_hostinfo_to_hello(&d->host, h);
	h->labels = d->label_ptrs;
	h->n_labels = d->cfg->n_labels;
	h->agent_version = SH_VERSION;
	h->clock_offset_ns = sh_now_wall_ns() - sh_now_mono_ns();
}

static void proc_copy(Spikehound__Process *dst, const struct agent_proc *p)
{
	Spikehound__Process tmp;

	agent_proc_to_process(p, &tmp);
	*dst = tmp;
	dst->comm = strdup(tmp.comm ? tmp.comm : "");
	dst->exe = strdup(tmp.exe ? tmp.exe : "");
	dst->cmdline = strdup(tmp.cmdline ? tmp.cmdline : "");
	dst->cgroup = strdup(tmp.cgroup ? tmp.cgroup : "");
}

static void proc_free(Spikehound__Process *p)
{
	free(p->comm);
	free(p->exe);
	free(p->cmdline);
	free(p->cgroup);
}

/* fill_procs_cb hands a capture the current process inventory. */
static void fill_procs_cb(void *arg, Spikehound__Process ***out, size_t *n_out)
{
	struct daemon *d = arg;
	const struct agent_proc *const *all;
	Spikehound__Process **v;
	size_t n = 0, k = 0;

	*out = NULL;
	*n_out = 0;
	if (agent_procs_snapshot(&d->procs, &all, &n) != 0 || n == 0 ||
	    !(v = calloc(n, sizeof(*v))))
		return;
	for (size_t i = 0; i < n; i++) {
		Spikehound__Process *p = malloc(sizeof(*p));

		if (!p)
			break;
		proc_copy(p, all[i]);
		if (!p->comm || !p->exe || !p->cmdline || !p->cgroup) {
			spikehound__process__free_unpacked(p, NULL);
			break;
		}
		v[k++] = p;
	}
	*out = v;
	*n_out = k;
}

static void list_add(struct proc_list *l, const struct agent_proc *p)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		Spikehound__Process *n;

		if (cap > MAX_PROC_CHANGES || !(n = realloc(l->items, cap * sizeof(*n)))) {
			l->overflow++;
			return;
		}
		l->items = n;
		l->cap = cap;
	}
	proc_copy(&l->items[l->n], p);
	if (!l->items[l->n].comm || !l->items[l->n].exe || !l->items[l->n].cmdline ||
	    !l->items[l->n].cgroup) {
		proc_free(&l->items[l->n]);
		l->overflow++;
		return;
	}
	l->n++;
}

static void list_clear(struct proc_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		proc_free(&l->items[i]);
	l->n = 0;
}

static void list_fini(struct proc_list *l)
{
	list_clear(l);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

/* self_usage returns the agent's CPU % since the last call and its RSS. */
static void self_usage(struct daemon *d, float *cpu_pct, uint64_t *rss_kb)
{
	struct rusage ru;
	int64_t cpu_ns, wall = sh_now_mono_ns();
	char buf[128];
	unsigned long size = 0, rss = 0;

	getrusage(RUSAGE_SELF, &ru);
	cpu_ns = ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * SH_NS_PER_SEC +
		 ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
	*cpu_pct = 0;
	if (d->cpu_wall_last && wall > d->cpu_wall_last)
		*cpu_pct = (float)(100.0 * (double)(cpu_ns - d->cpu_ns_last) /
				   (double)(wall - d->cpu_wall_last));
	d->cpu_ns_last = cpu_ns;
	d->cpu_wall_last = wall;
	*rss_kb = 0;
	if (sh_read_file("/proc/self/statm", buf, sizeof(buf)) > 0 &&
	    sscanf(buf, "%lu %lu", &size, &rss) == 2)
		*rss_kb = (uint64_t)rss * (uint64_t)(sysconf(_SC_PAGESIZE) / 1024);
}

/* emit_summary packs the interval into an AgentMessage and spools it. */
static void emit_summary(struct daemon *d, int64_t end_ns)
{
	Spikehound__AgentMessage m = SPIKEHOUND__AGENT_MESSAGE__INIT;
	Spikehound__Summary s = SPIKEHOUND__SUMMARY__INIT;
	Spikehound__AgentHealth h = SPIKEHOUND__AGENT_HEALTH__INIT;
	Spikehound__MetricSecond **secs = NULL;
	Spikehound__Histogram *hist = NULL;
	Spikehound__Process **started = NULL, **exited = NULL, **snap = NULL, *snap_items = NULL;
	const struct agent_proc *const *live = NULL;
	size_t n_live = 0, len;
	uint8_t *buf = NULL;
	uint64_t seq;
	int rv;

	s.start_ns = d->interval_start_ns;
	s.end_ns = end_ns;
	secs = calloc(d->n_secs + 1, sizeof(*secs));
	started = calloc(d->started.n + 1, sizeof(*started));
	exited = calloc(d->exited.n + 1, sizeof(*exited));
	if (!secs || !started || !exited)
		goto cleanup;
	for (size_t i = 0; i < d->n_secs; i++)
		secs[i] = &d->secs[i];
	for (size_t i = 0; i < d->started.n; i++)
		started[i] = &d->started.items[i];
	for (size_t i = 0; i < d->exited.n; i++)
		exited[i] = &d->exited.items[i];
	s.metrics = secs;
	s.n_metrics = d->n_secs;
	s.started = started;
	s.n_started = d->started.n;
	s.exited = exited;
	s.n_exited = d->exited.n;
	if (d->intervals % d->cfg->snapshot_every == 0 &&
	    agent_procs_snapshot(&d->procs, &live, &n_live) == 0) {
		snap = calloc(n_live + 1, sizeof(*snap));
		snap_items = calloc(n_live + 1, sizeof(*snap_items));
		if (snap && snap_items) {
			for (size_t i = 0; i < n_live; i++) {
				agent_proc_to_process(live[i], &snap_items[i]);
				snap[i] = &snap_items[i];
			}
			s.snapshot = snap;
			s.n_snapshot = n_live;
			s.has_snapshot = true;
		}
	}
	if (d->rec) {
		int64_t off = sh_now_wall_ns() - sh_now_mono_ns();
		struct agent_sampler_health sh;
		struct agent_recorder_stats rs;

		agent_record_top_stacks(d->rec, d->sym, d->interval_start_ns - off, end_ns - off,
					d->cfg->topk_stacks, &s.stacks, &s.n_stacks);
		agent_record_proc_samples(d->rec, d->interval_start_ns - off, end_ns - off,
					  &s.proc_samples, &s.n_proc_samples);
		agent_sampler_health(d->sampler, &sh);
		agent_recorder_stats(d->rec, &rs);
		h.samples = sh.samples;
		h.samples_lost = sh.samples_lost;
		h.stack_errors = sh.stack_errors;
		h.user_stacks_depth1 = sh.user_stacks_depth1;
		h.recorder_seconds = (float)rs.seconds;
		h.recorder_bytes = rs.bytes_used;
	}
	/* latency histograms of the interval (fixed buckets: they add up
	 * across hosts) */
	if (agent_detectors_state(d->detectors, "runq") &&
	    agent_det_runq_histogram(agent_detectors_state(d->detectors, "runq"), &hist) == 0) {
		s.histograms = &hist;
		s.n_histograms = 1;
	}
	if (d->events) {
		struct agent_events_stats es;

		agent_events_get_stats(d->events, &es);
		h.events_suppressed = es.suppressed;
	}
	self_usage(d, &h.agent_cpu_pct, &h.agent_rss_kb);
	h.spool_dropped = agent_spool_dropped_total(d->spool);
	h.spool_bytes = agent_spool_bytes(d->spool);
	s.health = &h;

	if ((rv = agent_spool_next_seq(d->spool, d->host.boot_id, &seq)) != 0) {
		sh_err("could not allocate a sequence number: %s", strerror(-rv));
		d->spool_errors++;
		goto cleanup;
	}
	m.host_id = d->host.host_id;
	m.boot_id = d->host.boot_id;
	m.seq = seq;
	m.created_ns = sh_now_wall_ns();
	m.dropped_before = agent_spool_dropped_take(d->spool);
	m.body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_SUMMARY;
	m.summary = &s;
	len = spikehound__agent_message__get_packed_size(&m);
	buf = malloc(len ? len : 1);
	if (!buf)
		goto cleanup;
	spikehound__agent_message__pack(&m, buf);
	rv = agent_spool_append(d->spool, AGENT_SPOOL_SUMMARY, d->host.boot_id, seq, buf, len);
	if (rv != 0) {
		d->spool_errors++;
		sh_warn("could not spool summary %llu (%zu bytes): %s", (unsigned long long)seq, len,
			strerror(-rv));
	} else {
		d->summaries++;
		sh_debug("summary %llu: %zu seconds, %zu started, %zu exited, %zu in snapshot, %zu bytes",
			 (unsigned long long)seq, d->n_secs, d->started.n, d->exited.n, n_live, len);
	}
cleanup:
	if (d->started.overflow || d->exited.overflow)
		sh_warn("process changes over %d per interval: %llu not sent", MAX_PROC_CHANGES,
			(unsigned long long)(d->started.overflow + d->exited.overflow));
	free(buf);
	free(secs);
	free(started);
	free(exited);
	free(snap);
	free(snap_items);
	if (hist)
		spikehound__histogram__free_unpacked(hist, NULL);
	agent_record_free_stacks(s.stacks, s.n_stacks);
	agent_record_free_proc_samples(s.proc_samples, s.n_proc_samples);
	list_clear(&d->started);
	list_clear(&d->exited);
	d->started.overflow = d->exited.overflow = 0;
	d->n_secs = 0;
	d->interval_start_ns = end_ns;
	d->intervals++;
}

/* tick does the once-a-second work for the second starting at sec_ns. */
static void tick(struct daemon *d, int64_t sec_ns)
{
	struct agent_proc_delta delta;

	if (d->n_secs == d->cap_secs) {
		size_t cap = d->cap_secs ? d->cap_secs * 2 : 16;
		Spikehound__MetricSecond *n = realloc(d->secs, cap * sizeof(*n));

		if (!n)
			return;
		d->secs = n;
		d->cap_secs = cap;
	}
	agent_metrics_sample(&d->metrics, sec_ns, &d->secs[d->n_secs]);
	if (d->rec) {
		uint8_t buf[512];
		size_t len = spikehound__metric_second__get_packed_size(&d->secs[d->n_secs]);

		if (len <= sizeof(buf)) {
			spikehound__metric_second__pack(&d->secs[d->n_secs], buf);
			agent_recorder_add_blob(d->rec, AGENT_REC_METRICS, sh_now_mono_ns(), buf, len);
		}
	}
	d->n_secs++;
	if (agent_procs_scan(&d->procs, sh_now_wall_ns(), &delta) != 0)
		return;
	if (delta.initial)
		return; /* the first summary carries the full snapshot */
	for (size_t i = 0; i < delta.n_started; i++)
		list_add(&d->started, delta.started[i]);
	for (size_t i = 0; i < delta.n_changed; i++)
		list_add(&d->started, delta.changed[i]);
	for (size_t i = 0; i < delta.n_exited; i++)
		list_add(&d->exited, delta.exited[i]);
}

/* start_recorder starts the BPF sampler feeding the flight recorder. An
 * agent without BPF (not root, no BTF) still sends metrics and processes. */
static void start_recorder(struct daemon *d)
{
	struct agent_sampler_opts so = { 0 };
	int rv;

	if (d->cfg->sample_hz == 0) {
		sh_info("stack sampling off (sample_hz = 0)");
		return;
	}
	if ((rv = agent_recorder_new(d->cfg->recorder_bytes, &d->rec)) != 0 ||
	    (rv = agent_symbolizer_new(NULL, &d->sym)) != 0) {
		sh_warn("flight recorder unavailable: %s", strerror(-rv));
		goto fail;
	}
	d->feed.rec = d->rec;
	d->feed.sym = d->sym;
	so.hz = d->cfg->sample_hz;
	so.cpu = -1;
	so.skip_idle = true;
	rv = agent_sampler_new(&so, agent_record_feed_sample_cb, agent_record_feed_proc_cb,
			       &d->feed, &d->sampler);
	if (rv != 0) {
		sh_warn("stack sampling unavailable (%s): needs root and a kernel with BTF; "
			"sending metrics and processes only",
			strerror(-rv));
		goto fail;
	}
	sh_info("flight recorder: %u Hz stack samples on every CPU, %.0f MiB cap", so.hz,
		(double)d->cfg->recorder_bytes / (1 << 20));
	return;
fail:
	agent_symbolizer_free(d->sym);
	agent_recorder_free(d->rec);
	d->sym = NULL;
	d->rec = NULL;
}

/* start_captures makes the capture jobs (commands and local triggers). */
static int start_captures(struct daemon *d)
{
	struct agent_capjobs_opts co = { 0 };

	spikehound__hello__init(&d->cap_hello);
	fill_hello_cb(d, &d->cap_hello);
	co.src.rec = d->rec;
	co.src.sym = d->sym;
	co.src.hello = &d->cap_hello;
	co.src.sample_hz = d->cfg->sample_hz;
	co.src.default_max_bytes = d->cfg->capture_max_bytes;
	co.fill_procs = fill_procs_cb;
	co.procs_arg = d;
	co.spool = d->spool;
	co.host_id = d->host.host_id;
	co.boot_id = d->host.boot_id;
	co.chunk_bytes = d->cfg->capture_chunk_bytes;
	co.local_min_ns = d->rec ? d->cfg->capture_local_min_ns : 0;
	co.local_interval_ns = d->cfg->capture_local_interval_ns;
	co.before_ns = d->cfg->capture_before_ns;
	co.after_ns = d->cfg->capture_after_ns;
	return agent_capjobs_new(&co, &d->capjobs);
}

/* start_control dials the control plane (when configured): the aggregator
 * can then ask for recordings. */
static int start_control(struct daemon *d)
{
	struct agent_control_opts ctl = { 0 };
	char url[AGENT_CONFIG_URL_MAX];
	int rv;

	if (agent_config_control_url(d->cfg, url, sizeof(url)) != 0) {
		sh_info("control plane off: the aggregator cannot ask this agent for captures");
		return 0;
	}
	ctl.url = url;
	ctl.tls = &d->tls;
	ctl.fill_hello = fill_hello_cb;
	ctl.hello_arg = d;
	ctl.on_command = agent_capjobs_command_cb;
	ctl.cmd_arg = d->capjobs;
	if ((rv = agent_control_start(&d->ctl, &ctl)) != 0) {
		sh_err("could not dial the control plane at \"%s\": %s", url, strerror(-rv));
		return rv;
	}
	agent_capjobs_set_control(d->capjobs, d->ctl);
	sh_info("control plane: polling %s for capture requests", url);
	return 0;
}

/* start_detectors starts the spike event path and the detectors. */
static int start_detectors(struct daemon *d)
{
	struct agent_events_opts eo = { 0 };
	struct agent_det_ctx ctx = { 0 };
	char names[256];
	size_t n;
	int rv;

	eo.spool = d->spool;
	eo.rec = d->rec;
	eo.sym = d->sym;
	eo.host_id = d->host.host_id;
	eo.boot_id = d->host.boot_id;
	eo.burst = d->cfg->event_burst;
	eo.per_minute = d->cfg->event_rate;
	eo.on_event = d->capjobs ? agent_capjobs_spike_cb : NULL;
	eo.on_event_arg = d->capjobs;
	if ((rv = agent_events_new(&eo, &d->events)) != 0)
		return rv;
	ctx.cfg = d->cfg;
	ctx.events = d->events;
	ctx.rec = d->rec;
	ctx.sym = d->sym;
	ctx.wall_minus_mono_ns = sh_now_wall_ns() - sh_now_mono_ns();
	if ((rv = agent_detectors_start(&ctx, &d->detectors)) != 0)
		return rv;
	/* the detectors' BPF programs are new kernel text: let kernel stacks
	 * that pass through them resolve to them */
	if (d->sym)
		agent_symbolizer_reload_kernel(d->sym);
	n = agent_detectors_running(d->detectors, names, sizeof(names));
	if (n)
		sh_info("spike detectors running: %s", names);
	else
		sh_info("no spike detectors running");
	return 0;
}

static int setup_labels(struct daemon *d)
{
	size_t n = d->cfg->n_labels;

	d->label_entries = calloc(n + 1, sizeof(*d->label_entries));
	d->label_ptrs = calloc(n + 1, sizeof(*d->label_ptrs));
	if (!d->label_entries || !d->label_ptrs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		spikehound__hello__labels_entry__init(&d->label_entries[i]);
		d->label_entries[i].key = (char *)d->cfg->labels[i].key;
		d->label_entries[i].value = (char *)d->cfg->labels[i].value;
		d->label_ptrs[i] = &d->label_entries[i];
	}
	return 0;
}

static void log_sender(struct daemon *d)
{
	struct agent_sender_stats st;

	agent_sender_get_stats(d->sender, &st);
	sh_info("delivery: %llu summaries made, %llu acknowledged, %llu rejected, %zu waiting in "
		"the spool (%llu bytes), %llu dropped, %llu retries%s%s",
		(unsigned long long)d->summaries, (unsigned long long)st.acked,
		(unsigned long long)st.rejected, agent_spool_count(d->spool),
		(unsigned long long)agent_spool_bytes(d->spool),
		(unsigned long long)agent_spool_dropped_total(d->spool),
		(unsigned long long)st.retries, st.last_error ? ", last error: " : "",
		st.last_error ? st.last_error_msg : "");
}

int agent_daemon_run(const struct agent_config *cfg)
{
	struct agent_sender_opts so = { 0 };
	char *addrs[16];
	struct daemon d;
	sigset_t sigs;
	int64_t next_ns, interval_end;
	int rv, sig = 0, sigfd = -1;
	bool metrics_ok = false, procs_ok = false;
	int64_t cap_due = INT64_MAX;

	memset(&d, 0, sizeof(d));
	d.cfg = cfg;
	if ((rv = agent_hostinfo_read(cfg->proc_root, "/etc", &d.host)) != 0) {
		sh_err("could not read this host's identity from %s and /etc: %s", cfg->proc_root,
		       strerror(-rv));
		return rv;
	}
	if ((rv = setup_labels(&d)) != 0)
		goto cleanup;
	/* the signals are taken synchronously by this thread; every thread
	 * started from here on inherits the mask */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0) {
		rv = -errno;
		sh_err("could not create a signalfd: %s", strerror(errno));
		goto cleanup;
	}
	signal(SIGPIPE, SIG_IGN);

	rv = agent_spool_open(cfg->spool_dir, cfg->spool_cap_bytes, cfg->spool_fsync, &d.spool);
	if (rv != 0) {
		sh_err("could not open the spool \"%s\": %s", cfg->spool_dir, strerror(-rv));
		goto cleanup;
	}
	if (agent_spool_count(d.spool))
		sh_info("spool \"%s\" holds %zu undelivered messages: sending them first",
			cfg->spool_dir, agent_spool_count(d.spool));
	for (size_t i = 0; i < cfg->n_aggregators && i < 16; i++)
		addrs[i] = (char *)cfg->aggregators[i];
	so.addrs = addrs;
	d.tls.ca = cfg->tls_ca;
	d.tls.cert = cfg->tls_cert;
	d.tls.key = cfg->tls_key;
	d.tls.server_name = cfg->tls_server_name;
	so.tls = &d.tls;
	so.n_addrs = cfg->n_aggregators < 16 ? cfg->n_aggregators : 16;
	so.spool = d.spool;
	so.fill_hello = fill_hello_cb;
	so.hello_arg = &d;
	if ((rv = agent_metrics_init(&d.metrics, cfg->proc_root)) != 0) {
		sh_err("could not read metrics from %s: %s", cfg->proc_root, strerror(-rv));
		goto cleanup;
	}
	metrics_ok = true;
	if ((rv = agent_procs_init(&d.procs, cfg->proc_root)) != 0) {
		sh_err("could not read processes from %s: %s", cfg->proc_root, strerror(-rv));
		goto cleanup;
	}
	procs_ok = true;
	start_recorder(&d);
	if ((rv = start_captures(&d)) != 0)
		goto cleanup;
	if ((rv = start_detectors(&d)) != 0)
		goto cleanup;
	/* BPF is loaded and attached: give up the rest before any network
	 * socket (and nng's threads) exists */
	if (cfg->drop_privileges) {
		char kept[256], why[256];

		if (agent_drop_privileges(kept, sizeof(kept), why, sizeof(why)) == 0)
			sh_info("capabilities kept: %s", kept[0] ? kept : "none");
		else
			sh_warn("could not drop privileges (running with all of them): %s", why);
	}
	if ((rv = agent_sender_start(&d.sender, &so)) != 0) {
		sh_err("could not start sending to the aggregator: %s", strerror(-rv));
		goto cleanup;
	}
	if ((rv = start_control(&d)) != 0)
		goto cleanup;
	sh_info("spikehound-agent %s on %s (%s, kernel %s): sending every %.1f s to %s%s",
		SH_VERSION, d.host.hostname, d.host.host_id, d.host.kernel_release,
		(double)cfg->interval_ns / 1e9, cfg->aggregators[0],
		cfg->n_aggregators > 1 ? " and others" : "");

	/* seconds are aligned to the wall clock so hosts' series line up */
	next_ns = (sh_now_wall_ns() / SH_NS_PER_SEC) * SH_NS_PER_SEC;
	d.interval_start_ns = next_ns;
	interval_end = next_ns + cfg->interval_ns;
	for (;;) {
		int64_t now = sh_now_wall_ns(), wait = next_ns + SH_NS_PER_SEC - now;

		if (cap_due <= now)
			cap_due = agent_capjobs_run(d.capjobs);
		if (cap_due - now < wait)
			wait = cap_due - now;
		if (wait > 0) {
			struct pollfd pfd[3 + 16];
			int fds[16];
			size_t nd = agent_detectors_fds(d.detectors, fds, 16), np = 3;
			int n;

			pfd[0] = (struct pollfd){ sigfd, POLLIN, 0 };
			pfd[1] = (struct pollfd){ d.sampler ? agent_sampler_fd(d.sampler) : -1, POLLIN, 0 };
			pfd[2] = (struct pollfd){ agent_capjobs_fd(d.capjobs), POLLIN, 0 };
			for (size_t i = 0; i < nd; i++)
				pfd[np++] = (struct pollfd){ fds[i], POLLIN, 0 };
			if (wait > 50 * SH_NS_PER_MS)
				wait = 50 * SH_NS_PER_MS; /* events wait ~200 ms to be sent */
			n = poll(pfd, np, (int)((wait + SH_NS_PER_MS - 1) / SH_NS_PER_MS));
			if (n < 0 && errno != EINTR)
				break;
			if (n > 0 && (pfd[0].revents & POLLIN)) {
				struct signalfd_siginfo si;

				if (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
					sig = (int)si.ssi_signo;
					break;
				}
			}
			/* samples first, so an event's window finds them; the
			 * sampler does not wake us, so drain it every pass */
			if (d.sampler)
				agent_sampler_poll(d.sampler, 0);
			if (nd)
				agent_detectors_poll(d.detectors);
			agent_events_flush(d.events);
			if (n > 0 && (pfd[2].revents & POLLIN))
				cap_due = agent_capjobs_run(d.capjobs);
			continue;
		}
		tick(&d, next_ns);
		agent_detectors_tick(d.detectors, next_ns);
		next_ns += SH_NS_PER_SEC;
		if (sh_now_wall_ns() - next_ns > 5 * SH_NS_PER_SEC) {
			/* suspended or the clock jumped: resynchronize */
			next_ns = (sh_now_wall_ns() / SH_NS_PER_SEC) * SH_NS_PER_SEC;
			interval_end = next_ns;
		}
		if (next_ns >= interval_end) {
			emit_summary(&d, next_ns);
			interval_end = next_ns + cfg->interval_ns;
			if (d.intervals % 6 == 1)
				log_sender(&d);
		}
	}
	sh_info("received %s: sending the last partial summary and stopping",
		sig == SIGINT ? "SIGINT" : "SIGTERM");
	agent_detectors_stop(d.detectors);
	d.detectors = NULL;
	usleep(250 * 1000); /* let the last events' windows fill, then send them */
	if (d.sampler)
		agent_sampler_poll(d.sampler, 0);
	agent_events_flush(d.events);
	if (d.n_secs)
		emit_summary(&d, sh_now_wall_ns());
	/* give the sender a moment to deliver; what it cannot stays spooled */
	for (int i = 0; i < 30 && agent_spool_count(d.spool); i++)
		usleep(100 * 1000);
	log_sender(&d);
	rv = 0;
cleanup:
	agent_control_stop(d.ctl);
	agent_capjobs_free(d.capjobs);
	agent_sender_stop(d.sender);
	agent_detectors_stop(d.detectors);
	agent_events_free(d.events);
	agent_sampler_free(d.sampler);
	agent_symbolizer_free(d.sym);
	agent_recorder_free(d.rec);
	if (sigfd >= 0)
		close(sigfd);
	if (procs_ok)
		agent_procs_fini(&d.procs);
	if (metrics_ok)
		agent_metrics_fini(&d.metrics);
	if (d.spool)
		agent_spool_close(d.spool);
	list_fini(&d.started);
	list_fini(&d.exited);
	free(d.secs);
	free(d.label_entries);
	free(d.label_ptrs);
	return rv;
}
