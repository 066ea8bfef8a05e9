/* capjobs.h: the daemon's capture jobs. Capture commands arrive on the
 * control thread and are queued (thread-safe, an eventfd wakes the
 * daemon); local triggers come from the agent's own spike events. Each
 * job runs on the daemon's collector thread once its window has ended
 * (plus a short margin so the last samples are in the recorder), spools
 * the capture's chunks and reports the command's status.
 *
 * Local trigger: a spike event at least local_min long makes the agent
 * capture [start - before, start + after] by itself, at most once per
 * local_interval; the aggregator learns of it from the chunks (trigger
 * "local:<kind>"). */
#ifndef AGENT_CAPJOBS_H
#define AGENT_CAPJOBS_H

#include <stdint.h>

#include "capture.h"
#include "ctlclient.h"

struct agent_capjobs;

/* agent_capjobs_fill_procs_fn fills the process inventory for a capture
 * (on the daemon thread): *out and its elements malloc'd, freed by the
 * caller with spikehound__process__free_unpacked per element + free. */
typedef void (*agent_capjobs_fill_procs_fn)(void *arg, Spikehound__Process ***out, size_t *n);

/* agent_capjobs_opts; pointers borrowed, they must outlive the jobs. */
struct agent_capjobs_opts {
	struct agent_capture_src src; /* processes are filled per job (fill_procs) */
	agent_capjobs_fill_procs_fn fill_procs;
	void *procs_arg;
	struct agent_spool *spool;
	const char *host_id, *boot_id;
	size_t chunk_bytes;
	int64_t local_min_ns;      /* 0: no local captures */
	int64_t local_interval_ns;
	int64_t before_ns, after_ns;
};

/* agent_capjobs_stats: counters. */
struct agent_capjobs_stats {
	uint64_t commands, local, done, failed, bytes;
	int64_t last_ms; /* how long the last capture took to take and spool */
};

/* agent_capjobs_new returns 0 and *out, or a negative errno. */
int agent_capjobs_new(const struct agent_capjobs_opts *o, struct agent_capjobs **out);

/* agent_capjobs_set_control sets where statuses are reported (may be NULL). */
void agent_capjobs_set_control(struct agent_capjobs *j, struct agent_control *ctl);

/* agent_capjobs_command_cb is the control client's command callback (arg:
 * the jobs); thread-safe. */
void agent_capjobs_command_cb(void *arg, const Spikehound__Command *cmd);

/* agent_capjobs_spike_cb is the events' hook for local triggers (arg: the
 * jobs); call on the daemon thread. */
void agent_capjobs_spike_cb(void *arg, const Spikehound__SpikeEvent *ev);

/* agent_capjobs_fd is an eventfd that becomes readable when a command is
 * queued (poll it for POLLIN). */
int agent_capjobs_fd(struct agent_capjobs *j);

/* agent_capjobs_run takes the due captures (daemon thread). Returns the
 * wall-clock time of the next due job, or INT64_MAX. */
int64_t agent_capjobs_run(struct agent_capjobs *j);

/* agent_capjobs_get_stats copies the counters. */
void agent_capjobs_get_stats(struct agent_capjobs *j, struct agent_capjobs_stats *st);

/* agent_capjobs_free frees j and its pending jobs (NULL: no-op). */
void agent_capjobs_free(struct agent_capjobs *j);

#endif
