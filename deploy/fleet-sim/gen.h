/* gen.h: advances a simulated host through time, one summary interval at
 * a time: the spikes of the interval (baseline noise and the scenario's
 * causes) become SpikeEvent messages, the interval itself a Summary
 * (metrics, process changes, stacks, histograms, health), all packed as
 * AgentMessages into the host's outbox with the next sequence numbers, and
 * every spike is written to the ground truth. */
#ifndef FSIM_GEN_H
#define FSIM_GEN_H

#include <stdbool.h>
#include <stdint.h>

#include "fleet.h"
#include "truth.h"

struct fsim_gen_opts {
	int64_t backfill_end_ns;      /* true time where backfill ends and live begins */
	int64_t end_ns;		      /* true time where generation stops (INT64_MAX: never) */
	int64_t interval_ns;	      /* live summary interval */
	int64_t backfill_interval_ns; /* summary interval before backfill_end_ns */
	int64_t backfill_step_ns;     /* backfill summaries carry a MetricSecond every this */
	bool record;		      /* keep live records in each host's recorder (captures) */
	int64_t record_keep_ns;	      /* for this long */
};

struct fsim_gen_stats {
	uint64_t summaries, events;
	uint64_t spikes; /* injected by causes */
	uint64_t noise;	 /* baseline */
	uint64_t bytes;	 /* packed messages */
};

struct fsim_gen;

/* fsim_gen_new makes a generator for fleet f (borrowed) writing spikes to
 * truth (borrowed, may be NULL). Returns 0 and *out or -ENOMEM. */
int fsim_gen_new(struct fsim_gen **out, struct fsim_fleet *f, const struct fsim_gen_opts *o,
		 struct fsim_truth *truth);

/* fsim_gen_free frees g. */
void fsim_gen_free(struct fsim_gen *g);

/* fsim_gen_due tells whether host h has an interval to generate at true
 * time now_ns (its next interval has begun and is before the end). */
bool fsim_gen_due(const struct fsim_gen *g, const struct fsim_host *h, int64_t now_ns);

/* fsim_gen_done tells whether h has generated everything up to the end. */
bool fsim_gen_done(const struct fsim_gen *g, const struct fsim_host *h);

/* fsim_gen_step generates h's next interval into its outbox. Messages of a
 * live interval are released (may be sent) at the true time the agent
 * would send them; backfill messages at once. Returns 0 or -ENOMEM. */
int fsim_gen_step(struct fsim_gen *g, struct fsim_host *h);

/* fsim_gen_set_end moves the end of generation earlier (on a signal). */
void fsim_gen_set_end(struct fsim_gen *g, int64_t end_ns);

/* fsim_gen_end returns the true time generation stops at. */
int64_t fsim_gen_end(const struct fsim_gen *g);

/* FSIM_GEN_MAX_STACKS is the most stacks fsim_gen_stacks gives. */
#define FSIM_GEN_MAX_STACKS 8

/* struct fsim_stack_share is one of a host's usual on-CPU stacks. */
struct fsim_stack_share {
	char folded[640]; /* "comm;outer;...;inner" */
	double share;	  /* of the host's busy samples; the shares add up to 1 */
};

/* fsim_gen_stacks fills out (room for FSIM_GEN_MAX_STACKS) with the stacks
 * host h's CPU samples show, as its summaries report them (its role's, the
 * node exporter's, the agent's), and returns how many. Draws nothing from
 * the host's random stream. */
size_t fsim_gen_stacks(const struct fsim_gen *g, struct fsim_host *h, struct fsim_stack_share *out);

/* fsim_gen_stats returns the counters so far. */
const struct fsim_gen_stats *fsim_gen_stats(const struct fsim_gen *g);

#endif
