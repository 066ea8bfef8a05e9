/* capture.h: taking a capture on a simulated host, as the real agent does
 * from its flight recorder (node-agent/capture.c): a serialized Capture
 * (proto/spikehound.proto) of a wall-clock window on the host's clock,
 * compressed with zstd, with the SHA-256 of the compressed bytes. What it
 * holds:
 *
 *   - stack samples at sample_hz on every busy CPU over the window (a CPU
 *     is busy in a second with the share its MetricSecond says), drawn
 *     from the host's usual stacks (gen.c, the same its summaries report)
 *     and, on the CPU and during the time of each spike event in the
 *     window, the stack of the event's culprit; stacks interned as
 *     CaptureStacks (frames innermost first, user frames with a build id
 *     and a file offset);
 *   - the spike events, metric seconds and process starts and exits the
 *     host generated in the window (its recorder, recorder.h);
 *   - the process inventory when the capture is taken.
 *
 * The simulated recorder holds only the last span seconds (and nothing
 * from before the live run began): a window it does not hold fails with
 * "window_gone: ...", as the real agent's does. Sample draws come from a
 * stream of their own (seeded from the run seed, the host and the capture
 * id), so taking a capture changes nothing else the host does.
 *
 * The request's checks, the compression, the hash and the cutting into
 * CaptureChunks (run.c) are the agent's own (common/capwire.h). */
#ifndef FSIM_CAPTURE_H
#define FSIM_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fleet.h"
#include "gen.h"
#include "spikehound.pb-c.h"

/* struct fsim_capture_src says where a capture is taken; all borrowed. */
struct fsim_capture_src {
	const struct fsim_fleet *f;
	const struct fsim_gen *g;
	struct fsim_host *h;
	int64_t now_ns;		    /* the host's clock when it is taken */
	int64_t held_since_ns;	    /* the host's clock: the recorder holds nothing older */
	uint32_t sample_hz;	    /* [99] */
	uint64_t default_max_bytes; /* when the request has none [64 MiB] */
};

/* struct fsim_capture_result is what was taken. */
struct fsim_capture_result {
	uint8_t *data; /* the compressed Capture (free with fsim_capture_result_fini) */
	size_t len;
	size_t raw_bytes;		  /* the serialized Capture */
	char sha256[65];		  /* hex SHA-256 of data */
	int64_t held_from_ns, held_to_ns; /* first and last record included (0: none) */
	size_t samples, stacks, events, metrics, procs, processes;
	bool truncated;	 /* max_bytes was reached: the newest samples are left out */
	char error[200]; /* set when it could not be taken */
};

/* fsim_capture_take takes the capture req asks for. Returns 0 with
 * res->data set, or a negative errno with res->error saying why: -ENODATA
 * (window_gone: the recorder does not hold the window), -EINVAL (a bad
 * window: see sh_capwire_check_window), -EFBIG (over max_bytes even truncated), -ENOMEM, -EIO. */
int fsim_capture_take(const struct fsim_capture_src *src, const Spikehound__CaptureRequest *req,
		      struct fsim_capture_result *res);

/* fsim_capture_result_fini frees what res holds. */
void fsim_capture_result_fini(struct fsim_capture_result *res);

#endif
