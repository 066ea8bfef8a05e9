/* control.h: the simulated hosts' control plane, as the real agent's
 * (node-agent/ctlclient.c, capjobs.c): every host long-polls the
 * aggregator's control address (ControlPoll with its Hello, wait_ms), all
 * hosts at once, one nng REQ context each over a few connections. A
 * command is run once per id: a capture command is answered "accepted"
 * at once and becomes a job due when the window has passed on the host's
 * clock (plus the agent's 300 ms margin); the caller takes due jobs with
 * fsim_ctl_next_job and reports "done" or "failed" with fsim_ctl_report.
 * Statuses ride on the host's next poll (a held poll is cut short for
 * them); a command the aggregator repeats gets the last status again.
 *
 * nng completes on its own threads; completions are queued and handled in
 * fsim_ctl_step on the caller's thread, so all state stays there. */
#ifndef FSIM_CONTROL_H
#define FSIM_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

#include "fleet.h"
#include "spikehound.pb-c.h"

struct fsim_ctl;

struct fsim_ctl_opts {
	const char *url; /* the aggregator's control address (borrowed) */
	int wait_ms;	 /* ControlPoll.wait_ms [20000] */
	int sockets;	 /* connections [2] */
	/* wake is called (from nng threads) when a completion is queued, so
	 * that the caller's wait ends; may be NULL */
	void (*wake)(void *arg);
	void *wake_arg;
};

/* struct fsim_ctl_job is a capture to take. */
struct fsim_ctl_job {
	uint32_t host; /* index in the fleet */
	char command_id[72];
	Spikehound__CaptureRequest *req; /* owned: free with fsim_ctl_job_fini */
	int64_t due_ns;			 /* true time */
};

/* struct fsim_ctl_stats are the control plane's counters. */
struct fsim_ctl_stats {
	uint64_t polls;	     /* polls answered */
	uint64_t commands;   /* distinct commands received */
	uint64_t duplicates; /* commands repeated by the aggregator */
	uint64_t captures;   /* capture commands accepted */
	uint64_t rejected;   /* commands answered "failed" or "expired" at once */
	uint64_t statuses;   /* statuses delivered */
	uint64_t failures;   /* polls that failed (timeouts, no connection) */
	uint64_t refused;    /* polls the aggregator refused */
};

/* fsim_ctl_new starts the control plane of fleet f (borrowed; it must
 * outlive c). The polls start in fsim_ctl_step. Returns 0 and *out or a
 * negative errno (logged). */
int fsim_ctl_new(struct fsim_ctl **out, const struct fsim_ctl_opts *o, struct fsim_fleet *f);

/* fsim_ctl_stop cuts every poll off and waits until no callback runs
 * (so wake is not called any more); the counters stay readable. */
void fsim_ctl_stop(struct fsim_ctl *c);

/* fsim_ctl_free cancels every poll and frees c (NULL is fine). Jobs not
 * taken are dropped. */
void fsim_ctl_free(struct fsim_ctl *c);

/* fsim_ctl_step handles the completed polls (commands, statuses) and
 * starts the polls due at true time now_ns. */
void fsim_ctl_step(struct fsim_ctl *c, int64_t now_ns);

/* fsim_ctl_next_job moves the next job due at true time now_ns into *job
 * and returns true, or returns false when none is due. */
bool fsim_ctl_next_job(struct fsim_ctl *c, int64_t now_ns, struct fsim_ctl_job *job);

/* fsim_ctl_next_due returns the true time the next job is due
 * (INT64_MAX: none). */
int64_t fsim_ctl_next_due(const struct fsim_ctl *c);

/* fsim_ctl_job_fini frees what job owns. */
void fsim_ctl_job_fini(struct fsim_ctl_job *job);

/* fsim_ctl_report queues status ("done", "failed", ...) with reason for
 * host's command command_id, to be sent at once. */
void fsim_ctl_report(struct fsim_ctl *c, uint32_t host, const char *command_id, const char *status,
		     const char *reason);

/* fsim_ctl_stats returns the counters so far. */
const struct fsim_ctl_stats *fsim_ctl_stats(const struct fsim_ctl *c);

#endif
