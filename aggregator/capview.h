/* capview.h: viewing a capture — the payload an agent sends as
 * CaptureChunks (reassembled) or `spikehound-agent record --capture FILE`
 * writes: one serialized spikehound.Capture compressed with zstd as a
 * whole. agg_capview_load() checks and unpacks it (hostile input gives an
 * error, never a crash; the decompressed size has a hard limit), then the
 * writers turn it into what a performance engineer reads:
 *
 *   - folded stacks, "comm;outer;...;inner count" (flamegraph.pl,
 *     speedscope, inferno): user frames outermost first, then the kernel
 *     frames (the order perf-based flame graphs use), kernel frames
 *     unmarked or, with AGG_CAPVIEW_KSUFFIX, suffixed "_[k]";
 *   - folded diffs, "stack countA countB" (flamegraph.pl's difffolded.pl);
 *   - pprof: a gzipped perftools.profiles.Profile (proto/pprof);
 *   - SVG flame graphs (plain, or differential: set B's layout coloured by
 *     the change of each frame's share from set A to set B);
 *   - an SVG sub-second heat map (FlameScope style) to pick a range;
 *   - a text timeline of per-second metrics, samples and spike events.
 *
 * Frame names come from agents and are untrusted: at load every name is
 * made valid UTF-8 without control characters, C1 controls or bidi
 * overrides (replaced by '?'), ';' becomes '_' (and ' ' in comms), names
 * are cut at AGG_CAPVIEW_MAX_NAME bytes and stacks at AGG_CAPVIEW_MAX_FRAMES
 * kernel and user frames each (the innermost are kept). What the writers
 * print is therefore safe on a terminal and, escaped, in XML.
 *
 * Writers to a FILE return 0, or -EIO when the stream reports an error,
 * -ENOMEM, or another negative errno said below. Nothing here is
 * thread-safe; the CLI and tests use it from one thread.
 */
#ifndef AGG_CAPVIEW_H
#define AGG_CAPVIEW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "spikehound.pb-c.h"

/* AGG_CAPVIEW_MAX_RAW is the default limit of a capture's decompressed
 * size (agents cap the compressed size at 64 MiB by default). */
#define AGG_CAPVIEW_MAX_RAW (1024u << 20)
/* AGG_CAPVIEW_ERRLEN is a good size for agg_capview_load's err buffer. */
#define AGG_CAPVIEW_ERRLEN 200
/* AGG_CAPVIEW_MAX_NAME and AGG_CAPVIEW_MAX_FRAMES bound a frame name (bytes)
 * and the kernel and the user frames of a stack (each). */
#define AGG_CAPVIEW_MAX_NAME 1024
#define AGG_CAPVIEW_MAX_FRAMES 256
/* AGG_CAPVIEW_MAX_SECONDS is the longest range a heat map draws. */
#define AGG_CAPVIEW_MAX_SECONDS 3600
/* AGG_CAPVIEW_DEFAULT_HZ is assumed when a capture has no sample_hz. */
#define AGG_CAPVIEW_DEFAULT_HZ 99

/* AGG_CAPVIEW_KSUFFIX (folded output): append "_[k]" to kernel frames. */
#define AGG_CAPVIEW_KSUFFIX 1u

/* struct agg_capview: one loaded capture (opaque). */
struct agg_capview;
/* struct agg_capview_set: samples counted per stack, from one or more
 * captures (opaque; see "stack sets" below). */
struct agg_capview_set;

/* struct agg_capview_filter selects samples; zero-initialized it selects
 * all of them. */
struct agg_capview_filter {
	int64_t from_ns; /* samples at or after (wall clock); 0: no bound */
	int64_t to_ns;	 /* samples before; 0: no bound */
	bool has_cpu;
	uint32_t cpu; /* only this CPU when has_cpu */
	bool has_pid;
	int32_t pid; /* only this process when has_pid */
};

/* agg_capview_load decompresses (at most max_raw bytes; 0: AGG_CAPVIEW_MAX_RAW)
 * and unpacks the capture payload data (borrowed) and indexes it. Returns 0
 * and *out (caller frees with agg_capview_free), or a negative errno with
 * a lowercase message in err: -EBADMSG (not zstd, corrupt, truncated, not
 * a Capture), -EFBIG (expands past max_raw), -ENOMEM. */
int agg_capview_load(const void *data, size_t len, size_t max_raw, struct agg_capview **out,
		     char *err, size_t errlen);

/* agg_capview_free frees cv; NULL is a no-op. */
void agg_capview_free(struct agg_capview *cv);

/* agg_capview_capture returns the unpacked Capture (borrowed from cv; its
 * strings are raw agent data, not cleaned). */
const Spikehound__Capture *agg_capview_capture(const struct agg_capview *cv);

/* agg_capview_origin returns the time "+0" stands for in relative times
 * (the heat map, the timeline, the CLI's "--from +2.5s"): the window the
 * capture asked for starts there, else what it held, else its first
 * sample; 0 for an empty capture. */
int64_t agg_capview_origin(const struct agg_capview *cv);

/* agg_capview_span stores the times of the first and last sample (0 when
 * there are none). */
void agg_capview_span(const struct agg_capview *cv, int64_t *first_ns, int64_t *last_ns);

/* agg_capview_count returns how many samples f (NULL: all) selects. */
uint64_t agg_capview_count(const struct agg_capview *cv, const struct agg_capview_filter *f);

/* agg_capview_spike_window stores the window of the capture's longest
 * spike event in [*from_ns, *to_ns). Returns 0, or -ENOENT when the
 * capture holds no event with a duration. */
int agg_capview_spike_window(const struct agg_capview *cv, int64_t *from_ns, int64_t *to_ns);

/* agg_capview_write_header prints what the capture is (id, host, trigger,
 * windows, counts) as a few lines of text. */
int agg_capview_write_header(FILE *out, const struct agg_capview *cv);

/* agg_capview_write_timeline prints, for the seconds f selects, one line
 * per second (samples, CPU user/sys, run queue, PSI, pgscan, events and
 * process events starting in it) and then the spike events (kind,
 * duration, CPU, victim, culprits, detail). f's CPU / pid filter applies
 * to the samples only. */
int agg_capview_write_timeline(FILE *out, const struct agg_capview *cv,
			       const struct agg_capview_filter *f);

/* agg_capview_meta_json returns the capture's metadata, its spike events,
 * per-second samples of f and f's sample count as a JSON object (caller
 * decrefs), or NULL on allocation failure. */
json_t *agg_capview_meta_json(const struct agg_capview *cv, const struct agg_capview_filter *f);

/* struct agg_capview_heatmap_opts; zero fields take the defaults in brackets. */
struct agg_capview_heatmap_opts {
	unsigned rows;	      /* rows per second [50, i.e. 20 ms] (at most 1000) */
	const char *title;    /* borrowed [capture id and host] */
	const char *cmd_hint; /* borrowed: shown before a clicked range, e.g.
				 "spikehound capture show ID" */
};

/* agg_capview_write_heatmap draws a sub-second heat map of the samples f
 * selects as a self-contained SVG: one column per second from the origin
 * (see agg_capview_origin), rows = offset within that second (top: +0),
 * colour = samples in the cell, spike events marked under the time axis;
 * clicking two cells shows the range as "--from +A --to +B". Returns
 * -ENODATA when f selects no samples and no range, -E2BIG when the range
 * is longer than AGG_CAPVIEW_MAX_SECONDS. */
int agg_capview_write_heatmap(FILE *out, const struct agg_capview *cv,
			      const struct agg_capview_filter *f,
			      const struct agg_capview_heatmap_opts *o);

/* agg_capview_pprof makes a gzipped pprof profile of the samples f
 * selects: sample types samples/count and cpu/nanoseconds (period
 * 1e9/sample_hz), one Sample per (stack, thread, CPU) with string labels
 * pid, tid, cpu and comm; user frames are Locations in a Mapping per build id
 * (address = the file offset, the mapping starting at offset 0) with a
 * Function when the agent resolved them (unresolved ones are left for the
 * viewer to symbolize by build id); kernel frames are Functions in a
 * "[kernel.kallsyms]" mapping. Returns 0 and *out (malloc'd, caller
 * frees) with *len, or a negative errno. */
int agg_capview_pprof(const struct agg_capview *cv, const struct agg_capview_filter *f,
		      uint8_t **out, size_t *len);

/* --- stack sets: samples counted per folded stack, in two columns --- */

/* agg_capview_set_new returns an empty set (caller frees with
 * agg_capview_set_free), or NULL on allocation failure. Column 0 is set A
 * (the baseline of a diff), column 1 set B. */
struct agg_capview_set *agg_capview_set_new(void);

/* agg_capview_set_free frees s; NULL is a no-op. */
void agg_capview_set_free(struct agg_capview_set *s);

/* agg_capview_set_add counts the samples of cv (borrowed; the set copies
 * what it keeps) that f selects into column col (0 or 1); *added (may be
 * NULL) gets how many. Returns 0 or -ENOMEM / -EINVAL. */
int agg_capview_set_add(struct agg_capview_set *s, int col, const struct agg_capview *cv,
			const struct agg_capview_filter *f, uint64_t *added);

/* agg_capview_set_total returns the samples counted in column col. */
uint64_t agg_capview_set_total(const struct agg_capview_set *s, int col);

/* agg_capview_set_stacks returns how many distinct stacks s holds. */
size_t agg_capview_set_stacks(const struct agg_capview_set *s);

/* agg_capview_write_folded prints column col as folded stacks, sorted by
 * stack; flags: AGG_CAPVIEW_KSUFFIX. */
int agg_capview_write_folded(FILE *out, const struct agg_capview_set *s, int col, unsigned flags);

/* agg_capview_write_folded_diff prints "stack countA countB" for every
 * stack of either column, sorted by stack (difffolded.pl's format). */
int agg_capview_write_folded_diff(FILE *out, const struct agg_capview_set *s, unsigned flags);

/* agg_capview_write_top prints the n most frequent stacks of column col
 * as "SAMPLES % STACK" lines (long stacks keep their innermost frames). */
int agg_capview_write_top(FILE *out, const struct agg_capview_set *s, int col, size_t n);

/* agg_capview_write_diff_top prints the n stacks whose share changed the
 * most from column 0 to column 1. */
int agg_capview_write_diff_top(FILE *out, const struct agg_capview_set *s, size_t n);

/* struct agg_capview_svg_opts; zero fields take the defaults in brackets. */
struct agg_capview_svg_opts {
	const char *title;    /* borrowed ["Flame Graph" / "Differential Flame Graph"] */
	const char *subtitle; /* borrowed [none] */
	unsigned width;	      /* px [1200] */
	bool diff;	      /* differential: column 1's layout, coloured by share change */
	const char *label_a;  /* diff: what column 0 is ["A"] */
	const char *label_b;  /* diff: what column 1 is ["B"] */
};

/* agg_capview_write_flamegraph draws column 0 of s (or, with o->diff,
 * column 1 coloured against column 0) as a self-contained SVG flame graph:
 * the root at the bottom, children sorted by name, widths proportional to
 * samples, frames narrower than 0.1 px left out, a <title> tooltip on
 * every frame; colours by frame type (user warm, kernel blue, unresolved
 * grey, process purple) or, for a diff, red for a larger share in B and
 * blue for a smaller one (white: unchanged). Returns -ENODATA when the
 * drawn column is empty. */
int agg_capview_write_flamegraph(FILE *out, const struct agg_capview_set *s,
				 const struct agg_capview_svg_opts *o);

#endif
