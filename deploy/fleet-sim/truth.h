/* truth.h: the ground-truth file of a fleet-sim run (--truth FILE), JSON
 * lines as /work/fleet-spec.md defines them: one "run" line, one "host"
 * line per host, one "cause" line per scenario section, then one "spike"
 * line per injected spike and one "noise" line per baseline spike. Spikes
 * are collected in an anonymous temporary file while the run goes on; the
 * file itself is written (to FILE.tmp, then renamed) when the run ends and
 * the run line's figures are known. */
#ifndef FSIM_TRUTH_H
#define FSIM_TRUTH_H

#include <stdint.h>

#include "fleet.h"

struct fsim_truth;

/* fsim_truth_open prepares the truth file path (borrowed: must outlive
 * the writer). Returns 0 and *out, or a negative errno (logged). */
int fsim_truth_open(struct fsim_truth **out, const char *path);

/* fsim_truth_spike records an injected spike. */
void fsim_truth_spike(struct fsim_truth *t, const char *incident, const char *cause,
		      const char *host_id, const char *kind, int64_t ts_ns, int64_t host_ts_ns,
		      int64_t duration_ns);

/* fsim_truth_noise records a baseline spike (true time ts_ns). */
void fsim_truth_noise(struct fsim_truth *t, const char *host_id, const char *kind, int64_t ts_ns);

/* struct fsim_truth_run is what the run line says. */
struct fsim_truth_run {
	uint64_t seed;
	int64_t from_ns, to_ns;
	int64_t interval_ns;
	const char *scenario; /* NULL: built-in defaults */
};

/* fsim_truth_close writes the file (run, host and cause lines from the
 * fleet, then the spikes) and frees t. Returns 0 or a negative errno
 * (logged). t may be NULL. */
int fsim_truth_close(struct fsim_truth *t, const struct fsim_fleet *f,
		     const struct fsim_truth_run *run);

/* fsim_truth_discard frees t without writing the file. t may be NULL. */
void fsim_truth_discard(struct fsim_truth *t);

#endif
