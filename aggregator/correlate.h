/* correlate.h: the correlator. On the aggregator's loop, with a database
 * connection of its own (db.h), it turns new spike events into fleet
 * incidents (sql/005_incidents.sql) and ranks each incident's suspects.
 *
 * Every cycle (a timer, at once again while work is queued) reads at most
 * `batch` events from correlate_queue, which a trigger fills as events are
 * inserted, so it never scans spike_events; it then reads only the events
 * near the new ones (the same kind close in time, the same host and kind
 * within the lookback) and stores its decisions in one transaction that
 * also removes the queue rows it handled. Clustering works on the events'
 * own times (the host clock minus the host's estimated skew), never on
 * arrival times, so a backfill of old events or a spool delivered after an
 * outage clusters as if it had arrived live. Incidents whose membership
 * changed get their suspects re-ranked (at most every suspects_interval).
 * Algorithm and score: aggregator/README.md.
 *
 * Only one aggregator correlates a database at a time (a PostgreSQL
 * advisory lock); the others' correlators stay idle.
 */
#ifndef AGG_CORRELATE_H
#define AGG_CORRELATE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct agg_correlate;

/* struct agg_correlate_cycle describes a finished cycle (for cycle_cb). */
struct agg_correlate_cycle {
	int status;	     /* 0, or the negative errno of a failed step */
	int64_t claimed;     /* queued events handled */
	bool more;	     /* the queue held more: the next cycle runs at once */
	int suspects_ranked; /* incidents whose suspects were (re)ranked */
	bool suspects_more;  /* more incidents were waiting for it */
};

/* struct agg_correlate_opts: see agg_correlate_opts_default for defaults. */
struct agg_correlate_opts {
	const char *dsn;	      /* copied */
	int64_t interval_ns;	      /* between cycles: 5 s */
	int64_t gap_ns;		      /* burst: events chain within 2 s */
	int min_hosts;		      /* burst: at least 3 hosts */
	int64_t lookback_ns;	      /* rates and periods: 6 h */
	double burst_p;		      /* burst: false bursts per hour and kind, 1e-4 */
	double recurring_p;	      /* recurring: per-host chance below 1e-6 */
	double periodic_p;	      /* periodic: expected chance trains below 1e-3 */
	int min_events;		      /* recurring events, periodic occurrences: 4 */
	int batch;		      /* queued events per cycle: 20000 */
	int64_t suspects_interval_ns; /* re-rank a changing incident at most every 30 s */
	int others_max;		      /* non-spiking hosts sampled for suspects: 1000 */
	/* cycle_cb, when set, is called on the loop after every cycle */
	void (*cycle_cb)(void *arg, const struct agg_correlate_cycle *cycle);
	void *cycle_arg;
};

/* agg_correlate_opts_default fills o with the defaults (dsn NULL). */
void agg_correlate_opts_default(struct agg_correlate_opts *o);

/* agg_correlate_start creates the correlator on loop: connects (in the
 * background) and starts the timer; the first cycle runs after one
 * interval. o is copied. Returns 0 with *out set, or -ENOMEM / -EINVAL. */
int agg_correlate_start(uv_loop_t *loop, const struct agg_correlate_opts *o,
			struct agg_correlate **out);

/* agg_correlate_kick runs a cycle as soon as the running one (if any) ends. */
void agg_correlate_kick(struct agg_correlate *c);

/* agg_correlate_stop stops the timer, lets a running cycle's current
 * database step finish (its transaction commits or is rolled back as a
 * whole), closes the connection and frees c; done_cb(arg) then runs on the
 * loop (may be NULL). c must not be used after this call. */
void agg_correlate_stop(struct agg_correlate *c, void (*done_cb)(void *arg), void *arg);

/* agg_correlate_stats_json returns the correlator's counters as the text
 * of a JSON object (caller frees), or NULL on allocation failure:
 * cycles, events_correlated, incidents_created, incidents_open (last lookback
 * of event time), suspects_ranked, errors, last_cycle_ms, queue_behind. */
char *agg_correlate_stats_json(const struct agg_correlate *c);

#endif
