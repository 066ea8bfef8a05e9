/* capjobs.c: queued and local capture jobs of the daemon (see capjobs.h). */
#include "capjobs.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "timeutil.h"
#include "uuid.h"

#define MAX_JOBS 64
#define DUE_MARGIN_NS (300 * SH_NS_PER_MS) /* samples reach the recorder within ~50 ms */

struct job {
	char id[72];       /* command id ("" for local captures) */
	char capture_id[40];
	char trigger[72];
	int64_t from_ns, to_ns, expires_ns;
	uint64_t max_bytes;
	int64_t due_ns;
};

struct agent_capjobs {
	struct agent_capjobs_opts o;
	struct agent_control *ctl;
	int efd;
	pthread_mutex_t mu;
	struct job jobs[MAX_JOBS]; /* under mu */
	int njobs;
	int64_t last_local_ns;
	struct agent_capjobs_stats stats; /* under mu */
};

static int add_job(struct agent_capjobs *j, const struct job *nj)
{
	int rv = 0;

	pthread_mutex_lock(&j->mu);
	if (j->njobs == MAX_JOBS)
		rv = -EBUSY;
	else
		j->jobs[j->njobs++] = *nj;
	pthread_mutex_unlock(&j->mu);
	return rv;
}

void agent_capjobs_command_cb(void *arg, const Spikehound__Command *cmd)
{
	struct agent_capjobs *j = arg;
	const Spikehound__CaptureRequest *r = cmd->capture;
	struct job nj = { 0 };
	uint64_t one = 1;

	if (!r) {
		if (j->ctl)
			agent_control_report(j->ctl, cmd->command_id, "failed",
					     "unknown command: this agent only takes captures");
		return;
	}
	if (r->to_ns > sh_now_wall_ns() + 600 * SH_NS_PER_SEC) {
		if (j->ctl)
			agent_control_report(j->ctl, cmd->command_id, "failed",
					     "bad window: it ends more than 10 minutes from now");
		return;
	}
	snprintf(nj.id, sizeof(nj.id), "%s", cmd->command_id);
	snprintf(nj.capture_id, sizeof(nj.capture_id), "%s", r->capture_id ? r->capture_id : "");
	snprintf(nj.trigger, sizeof(nj.trigger), "%s", r->trigger ? r->trigger : "");
	nj.from_ns = r->from_ns;
	nj.to_ns = r->to_ns;
	nj.expires_ns = r->expires_ns;
	nj.max_bytes = r->max_bytes;
	nj.due_ns = r->to_ns + DUE_MARGIN_NS;
	pthread_mutex_lock(&j->mu);
	j->stats.commands++;
	pthread_mutex_unlock(&j->mu);
	if (add_job(j, &nj) != 0) {
		if (j->ctl)
			agent_control_report(j->ctl, nj.id, "failed",
					     "busy: too many captures pending on this agent");
		return;
	}
	if (write(j->efd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: the daemon is awake anyway */
	}
}

void agent_capjobs_spike_cb(void *arg, const Spikehound__SpikeEvent *ev)
{
	struct agent_capjobs *j = arg;
	struct job nj = { 0 };
	int64_t now = sh_now_wall_ns();

	if (j->o.local_min_ns <= 0 || ev->duration_ns < j->o.local_min_ns)
		return;
	if (j->last_local_ns && now - j->last_local_ns < j->o.local_interval_ns)
		return;
	j->last_local_ns = now;
	sh_uuid_v4(nj.capture_id);
	snprintf(nj.trigger, sizeof(nj.trigger), "local:%.60s", ev->kind ? ev->kind : "spike");
	nj.from_ns = ev->start_ns - j->o.before_ns;
	nj.to_ns = ev->start_ns + ev->duration_ns + j->o.after_ns;
	nj.due_ns = nj.to_ns + DUE_MARGIN_NS;
	if (add_job(j, &nj) == 0) {
		pthread_mutex_lock(&j->mu);
		j->stats.local++;
		pthread_mutex_unlock(&j->mu);
		sh_info("capture %s: a %.0f ms %s spike, capturing %.0f s around it", nj.capture_id,
			(double)ev->duration_ns / 1e6, ev->kind ? ev->kind : "",
			(double)(nj.to_ns - nj.from_ns) / 1e9);
	}
}

static void run_job(struct agent_capjobs *j, const struct job *jb)
{
	Spikehound__CaptureRequest req = SPIKEHOUND__CAPTURE_REQUEST__INIT;
	struct agent_capture_src src = j->o.src;
	struct agent_capture_result res;
	Spikehound__Process **procs = NULL;
	size_t nprocs = 0;
	int64_t t0 = sh_now_mono_ns();
	char reason[256];
	int rv;

	req.capture_id = (char *)jb->capture_id;
	req.trigger = (char *)jb->trigger;
	req.from_ns = jb->from_ns;
	req.to_ns = jb->to_ns;
	req.max_bytes = jb->max_bytes;
	if (j->o.fill_procs)
		j->o.fill_procs(j->o.procs_arg, &procs, &nprocs);
	src.processes = procs;
	src.n_processes = nprocs;
	src.wall_minus_mono_ns = sh_now_wall_ns() - sh_now_mono_ns();
	rv = agent_capture_spool(&src, &req, j->o.spool, j->o.host_id, j->o.boot_id,
				 j->o.chunk_bytes, &res);
	for (size_t i = 0; i < nprocs; i++)
		spikehound__process__free_unpacked(procs[i], NULL);
	free(procs);
	pthread_mutex_lock(&j->mu);
	j->stats.last_ms = (sh_now_mono_ns() - t0) / SH_NS_PER_MS;
	if (rv == 0 && !res.error[0]) {
		j->stats.done++;
		j->stats.bytes += res.compressed_bytes;
	} else {
		j->stats.failed++;
	}
	pthread_mutex_unlock(&j->mu);
	if (rv == 0 && !res.error[0]) {
		snprintf(reason, sizeof(reason),
			 "%zu samples, %zu events, %zu metric seconds; %zu bytes in %u chunks%s",
			 res.samples, res.events, res.metrics, res.compressed_bytes, res.chunks,
			 res.truncated ? " (truncated at the size cap)" : "");
		sh_info("capture %s: %s", jb->capture_id, reason);
	} else {
		snprintf(reason, sizeof(reason), "%s",
			 res.error[0] ? res.error : "could not spool the capture");
		if (rv < 0)
			snprintf(reason, sizeof(reason), "could not spool the capture: %s",
				 strerror(-rv));
		sh_warn("capture %s failed: %s", jb->capture_id, reason);
	}
	if (j->ctl && jb->id[0])
		agent_control_report(j->ctl, jb->id, rv == 0 && !res.error[0] ? "done" : "failed",
				     reason);
}

int64_t agent_capjobs_run(struct agent_capjobs *j)
{
	int64_t now = sh_now_wall_ns(), next = INT64_MAX;
	uint64_t drain;

	if (read(j->efd, &drain, sizeof(drain)) < 0) {
		/* EAGAIN: nothing new was queued */
	}
	for (;;) {
		struct job jb;
		int pick = -1;

		pthread_mutex_lock(&j->mu);
		for (int i = 0; i < j->njobs; i++) {
			if (j->jobs[i].due_ns <= now) {
				pick = i;
				break;
			}
		}
		if (pick >= 0) {
			jb = j->jobs[pick];
			j->jobs[pick] = j->jobs[--j->njobs];
		} else {
			for (int i = 0; i < j->njobs; i++)
				if (j->jobs[i].due_ns < next)
					next = j->jobs[i].due_ns;
		}
		pthread_mutex_unlock(&j->mu);
		if (pick < 0)
			break;
		run_job(j, &jb);
		now = sh_now_wall_ns();
	}
	return next;
}

int agent_capjobs_fd(struct agent_capjobs *j)
{
	return j->efd;
}

void agent_capjobs_set_control(struct agent_capjobs *j, struct agent_control *ctl)
{
	j->ctl = ctl;
}

void agent_capjobs_get_stats(struct agent_capjobs *j, struct agent_capjobs_stats *st)
{
	pthread_mutex_lock(&j->mu);
	*st = j->stats;
	pthread_mutex_unlock(&j->mu);
}

int agent_capjobs_new(const struct agent_capjobs_opts *o, struct agent_capjobs **out)
{
	struct agent_capjobs *j = calloc(1, sizeof(*j));

	if (!j)
		return -ENOMEM;
	j->o = *o;
	j->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (j->efd < 0) {
		int err = -errno;

		free(j);
		return err;
	}
	pthread_mutex_init(&j->mu, NULL);
	*out = j;
	return 0;
}

void agent_capjobs_free(struct agent_capjobs *j)
{
	if (!j)
		return;
	close(j->efd);
	pthread_mutex_destroy(&j->mu);
	free(j);
}
