/* det_runq.h: what the run-queue latency detector (det_runq.c) offers
 * beyond its struct agent_detector_ops: the histogram of every wait it
 * measured, for the summaries.
 *
 * Threads: the collector thread (like every detector callback). */
#ifndef AGENT_DET_RUNQ_H
#define AGENT_DET_RUNQ_H

#include "spikehound.pb-c.h"

/* agent_det_runq_histogram returns the run-queue latencies measured since
 * the previous call (the first call: since the detector started) as a
 * heap Histogram of kind "runq": buckets[i] counts waits of v microseconds
 * with floor(log2(v)) == i (0 and 1 us both in bucket 0; bucket 31 takes
 * everything from 2^31 us on), trimmed after the last non-zero bucket;
 * count and sum_ns cover every wait. state is the detector's (the one its
 * start returned). Returns 0 and *out (the caller frees it with
 * spikehound__histogram__free_unpacked(*out, NULL)), -EINVAL when state is
 * NULL, or -ENOMEM / the negative errno of a failed map read. */
int agent_det_runq_histogram(void *state, Spikehound__Histogram **out);

#endif
