/* record.h: `spikehound-agent record`, local use without an aggregator
 * (sample for N seconds, print folded stacks or JSON), plus the glue and
 * summary helpers the daemon shares with it: sampler callbacks that feed
 * the flight recorder and the symbolizer, folding of interned stacks, and
 * top-K folded stacks / per-process sample counts over a time range as
 * protobuf-c messages.
 *
 * Threads: the symbolizer is single-threaded, so the helpers taking one
 * must run on the thread that feeds it (the collector). */
#ifndef AGENT_RECORD_H
#define AGENT_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "recorder.h"
#include "sampler.h"
#include "spikehound.pb-c.h"
#include "symbolize.h"

/* agent_record_main runs `spikehound-agent record`. argv[0] is the
 * subcommand name (ignored); options:
 *   --seconds N   record for N seconds (default 10; Ctrl-C stops early)
 *   --folded      folded stacks, one "frames count" line each (default)
 *   --json        one JSON document: samples with stacks, lifecycle events
 *   --hz F        sampling frequency (default 99)
 *   --cpu C       sample only CPU C
 *   --pid P       sample only process P
 *   --memory MIB  flight recorder cap (default 32)
 *   --stats-every SECONDS  while recording, print one "record: stats ..."
 *                 line every SECONDS to stderr (and one at start and end):
 *                 recorder bytes used vs cap, interned stacks, records,
 *                 seconds held, samples, VmRSS, symbolizer cache sizes
 * Output goes to stdout, statistics to stderr. Returns the exit status
 * (0 ok, 1 failure, 2 usage). */
int agent_record_main(int argc, char **argv);

/* agent_record_feed: the context of the feed callbacks below (borrowed
 * pointers; sym may be NULL). */
struct agent_record_feed {
	struct agent_recorder *rec;
	struct agent_symbolizer *sym;
	uint64_t rejected; /* records the recorder refused */
};

/* agent_record_feed_sample_cb stores a sample in feed->rec and gives the
 * symbolizer its frames (build id + offset, or addresses) while the process
 * lives. An agent_sample_cb; ctx is a struct agent_record_feed. Returns 0,
 * or AGENT_SAMPLER_PID_MAPPED once the process's maps are cached (the
 * sampler then stops taking build-id stacks for it). */
int agent_record_feed_sample_cb(void *ctx, const struct sh_sample_event *ev);

/* agent_record_feed_proc_cb stores a lifecycle event and tells the
 * symbolizer about exec/exit. An agent_proc_cb; returns 0 or
 * AGENT_SAMPLER_PID_MAPPED as above. */
int agent_record_feed_proc_cb(void *ctx, const struct sh_proc_event *ev);

/* agent_fold_stack writes stack as a folded line without the count into
 * buf: "comm;user outermost;...;user innermost;kernel outermost;...;kernel
 * innermost". ts_ns picks the process's maps generation. Returns the
 * length (truncated to len - 1). */
size_t agent_fold_stack(struct agent_symbolizer *sym, const struct agent_stack *stack,
			int64_t ts_ns, char *buf, size_t len);

/* agent_record_top_stacks folds every sample with from_ns <= ts < to_ns
 * (monotonic ns) and returns the k most frequent folded stacks (k = 0:
 * all), most frequent first, in *out (n in *n_out). The caller owns the
 * array, each element and its string (all malloc'd, elements initialized
 * with SPIKEHOUND__FOLDED_STACK__INIT): free with agent_record_free_stacks,
 * or hand them to a Spikehound__Summary (stacks / n_stacks) and free that
 * with spikehound__summary__free_unpacked(summary, NULL). Returns 0 (with
 * *out NULL when there were no samples) or -ENOMEM. */
int agent_record_top_stacks(struct agent_recorder *r, struct agent_symbolizer *sym, int64_t from_ns,
			    int64_t to_ns, size_t k, Spikehound__FoldedStack ***out, size_t *n_out);

/* agent_record_proc_samples counts samples per process (pid; comm as last
 * seen) in the range, most samples first; ownership as for
 * agent_record_top_stacks (free with agent_record_free_proc_samples, or
 * via Spikehound__Summary proc_samples / n_proc_samples). Returns 0 or
 * -ENOMEM. */
int agent_record_proc_samples(struct agent_recorder *r, int64_t from_ns, int64_t to_ns,
			      Spikehound__ProcessSamples ***out, size_t *n_out);

/* agent_record_free_stacks frees an array from agent_record_top_stacks
 * (NULL is a no-op). */
void agent_record_free_stacks(Spikehound__FoldedStack **v, size_t n);

/* agent_record_free_proc_samples frees an array from
 * agent_record_proc_samples (NULL is a no-op). */
void agent_record_free_proc_samples(Spikehound__ProcessSamples **v, size_t n);

#endif
