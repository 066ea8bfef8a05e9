/* run.h: one fleet-sim run: builds the fleet, generates its history
 * (backfill) and/or present (live), delivers everything to the aggregator
 * until it is acknowledged, takes the captures the control plane asks for,
 * reports progress and totals, writes the truth. */
#ifndef FSIM_RUN_H
#define FSIM_RUN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "scenario.h"

struct fsim_run_opts {
	const char *url;		/* aggregator ingest address */
	const struct fsim_scenario *sc; /* borrowed */
	uint32_t hosts;
	uint64_t seed;
	int64_t interval_ns; /* live summary interval */
	int64_t backfill_ns; /* history to generate, 0: none */
	int64_t duration_ns; /* live for this long from the start; -1: until stopped */
	int64_t backfill_interval_ns;
	int64_t backfill_step_ns;
	int concurrency; /* requests in flight */
	int batch;	 /* messages per request at most */
	int sockets;
	int timeout_ms; /* reply timeout */
	size_t max_request_bytes;
	int64_t progress_ns;	 /* progress line every this (0: never) */
	int64_t drain_ns;	 /* after a stop signal, wait this long for acks */
	const char *truth_path;	 /* NULL: no truth file */
	const char *control_url; /* control plane address; NULL: off */
	int control_wait_ms;	 /* ControlPoll.wait_ms */
	size_t capture_chunk_bytes;
	int64_t recorder_span_ns; /* a host's recorder holds this much */
};

/* fsim_run runs the simulation until everything generated is acknowledged
 * (or, after *stop becomes non-zero, until the drain time is over; a second
 * signal, *stop >= 2, ends it at once). Prints the totals to stdout.
 * Returns 0 when every message was acknowledged, 1 when some were rejected
 * or never acknowledged, or a negative errno when it could not run. */
int fsim_run(const struct fsim_run_opts *o, volatile sig_atomic_t *stop);

#endif
