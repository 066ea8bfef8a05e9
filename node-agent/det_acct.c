/* det_acct.c: the "acct" detector (incident E): per-process CPU time in
 * /proc/PID/stat (utime + stime) against the scheduler's runtime
 * (/proc/PID/task/TID/schedstat summed), for the busiest processes, every
 * 5 s, from cfg->proc_root. The rule and the state live in acct.c; this
 * file reads /proc on the tick and turns findings into "accounting" events:
 * victim = the process, detail = the pattern (stat_frozen,
 * stat_behind_sched, stat_ahead_of_sched, stat_jump), the span of the
 * diverging checks, attrs stat_cpu_s, sched_cpu_s, ratio (stat / sched),
 * checks, threads and kernel_release (the fleet report groups by it). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "acct.h"
#include "detect.h"
#include "events.h"
#include "log.h"
#include "timeutil.h"

#define EXTRA_PIDS 64 /* suspects examined beyond the top_n */

struct det_acct {
	struct agent_det_ctx ctx;
	struct agent_acct *acct;
	struct agent_acct_opts opts;
	long clk_tck;
	char release[256];
	uint64_t checks, findings, emitted, read_errors;
	int scan_errno_logged;
};

static void read_release(const char *proc_root, char *buf, size_t len)
{
	char path[4096 + 32];
	struct utsname u;
	FILE *f;

	snprintf(path, sizeof(path), "%s/sys/kernel/osrelease", proc_root);
	f = fopen(path, "re");
	if (f) {
		if (fgets(buf, (int)len, f)) {
			buf[strcspn(buf, "\n")] = '\0';
			fclose(f);
			if (buf[0])
				return;
		} else {
			fclose(f);
		}
	}
	if (uname(&u) == 0)
		snprintf(buf, len, "%s", u.release);
	else
		snprintf(buf, len, "unknown");
}

static void found_cb(void *arg, const struct agent_acct_finding *f)
{
	struct det_acct *d = arg;
	Spikehound__SpikeEvent *ev = malloc(sizeof(*ev));
	double stat_s = (double)f->stat_ns / 1e9, sched_s = (double)f->sched_ns / 1e9;

	d->findings++;
	if (!ev)
		return;
	spikehound__spike_event__init(ev);
	ev->kind = strdup("accounting");
	ev->detail = strdup(agent_acct_pattern_name(f->pattern));
	ev->start_ns = f->from_ns + d->ctx.wall_minus_mono_ns;
	ev->duration_ns = f->to_ns - f->from_ns;
	ev->cpu = -1;
	ev->victim = agent_task_new(f->pid, f->pid, f->comm, "victim");
	if (!ev->kind || !ev->detail || !ev->victim) {
		spikehound__spike_event__free_unpacked(ev, NULL);
		return;
	}
	agent_event_attr(ev, "stat_cpu_s", "%.3f", stat_s);
	agent_event_attr(ev, "sched_cpu_s", "%.3f", sched_s);
	if (f->sched_ns > 0)
		agent_event_attr(ev, "ratio", "%.3f", stat_s / sched_s);
	else
		agent_event_attr(ev, "ratio", "inf");
	agent_event_attr(ev, "checks", "%u", f->checks);
	agent_event_attr(ev, "interval_s", "%.1f", (double)d->opts.interval_ns / 1e9);
	agent_event_attr(ev, "threads", "%u", f->threads);
	agent_event_attr(ev, "kernel_release", "%s", d->release);
	sh_info("acct: %s[%d] %s: utime+stime grew %.2f s while the scheduler ran it %.2f s "
		"over %.0f s (kernel %s)",
		f->comm, (int)f->pid, agent_acct_pattern_name(f->pattern), stat_s, sched_s,
		(double)(f->to_ns - f->from_ns) / 1e9, d->release);
	if (agent_events_emit(d->ctx.events, ev, NULL, 0) == 0)
		d->emitted++;
}

static int acct_start(const struct agent_det_ctx *ctx, void **state)
{
	struct agent_acct_sample s;
	struct det_acct *d;
	int rv;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->ctx = *ctx;
	d->clk_tck = sysconf(_SC_CLK_TCK);
	if (d->clk_tck <= 0)
		d->clk_tck = 100;
	/* the agent's own entry tells whether this kernel has schedstat; a
	 * fake /proc (tests) has no entry for us: any process will do */
	rv = agent_acct_read_cheap(ctx->cfg->proc_root, (int32_t)getpid(), d->clk_tck, &s);
	if (rv == -ENOENT) {
		struct agent_acct_sample *all = NULL;
		size_t n = 0;

		rv = agent_acct_scan(ctx->cfg->proc_root, d->clk_tck, &all, &n);
		if (rv == 0 && n == 0)
			rv = -ENOENT;
		free(all);
	}
	if (rv != 0) {
		sh_warn("detector \"acct\": cannot read %s/PID/stat and schedstat "
			"(kernel without CONFIG_SCHED_INFO?): %s",
			ctx->cfg->proc_root, strerror(-rv));
		free(d);
		return rv;
	}
	read_release(ctx->cfg->proc_root, d->release, sizeof(d->release));
	if ((rv = agent_acct_new(NULL, &d->acct)) != 0) {
		free(d);
		return rv;
	}
	d->opts.interval_ns = 5 * SH_NS_PER_SEC;
	*state = d;
	return 0;
}

static void acct_tick(void *state, int64_t wall_ns)
{
	struct det_acct *d = state;
	struct agent_acct_sample *all = NULL, *full = NULL;
	int32_t pids[50 + EXTRA_PIDS];
	int64_t now = sh_now_mono_ns();
	size_t n = 0, np, nf = 0;
	int rv;

	(void)wall_ns;
	if (!agent_acct_due(d->acct, now))
		return;
	rv = agent_acct_scan(d->ctx.cfg->proc_root, d->clk_tck, &all, &n);
	if (rv != 0) {
		if (!d->scan_errno_logged++)
			sh_warn("acct: could not list processes in %s: %s", d->ctx.cfg->proc_root,
				strerror(-rv));
		return;
	}
	np = agent_acct_rank(d->acct, all, n, pids, sizeof(pids) / sizeof(pids[0]));
	full = calloc(np + 1, sizeof(*full));
	for (size_t i = 0; full && i < np; i++) {
		if (agent_acct_read_full(d->ctx.cfg->proc_root, pids[i], d->clk_tck, &full[nf]) == 0)
			nf++;
		else
			d->read_errors++; /* exited since the scan */
	}
	if (full)
		agent_acct_check(d->acct, now, full, nf, found_cb, d);
	d->checks++;
	sh_debug("acct: check %llu: %zu processes, %zu examined, %.2f ms",
		 (unsigned long long)d->checks, n, nf, (double)(sh_now_mono_ns() - now) / 1e6);
	free(full);
	free(all);
}

static void acct_stop(void *state)
{
	struct det_acct *d = state;

	if (!d)
		return;
	if (d->findings)
		sh_info("acct: %llu checks, %llu findings, %llu events",
			(unsigned long long)d->checks, (unsigned long long)d->findings,
			(unsigned long long)d->emitted);
	agent_acct_free(d->acct);
	free(d);
}

const struct agent_detector_ops det_acct_ops = {
	.name = "acct",
	.start = acct_start,
	.tick = acct_tick,
	.stop = acct_stop,
};
