/* capture.h: taking a capture — what the flight recorder holds for a
 * wall-clock window (stack samples with symbolized, build-id-keyed stacks,
 * spike events, per-second metrics, process lifecycle, the process
 * inventory) as a serialized Capture (proto/spikehound.proto), compressed
 * with zstd and, for the aggregator, cut into CaptureChunks that are
 * spooled like any other data-plane message (acknowledged one by one, so
 * a transfer resumes where it stopped and a capture taken while the
 * aggregator is unreachable waits on disk within the spool cap).
 *
 * The window is read and serialized in one pass while the recorder is
 * locked, so nothing of it can be overwritten while it is being taken;
 * the memory this needs is the serialized capture itself (bounded by the
 * size cap). Runs on the thread that feeds the symbolizer. Compressing,
 * hashing and cutting into chunks are shared with fleet-sim
 * (common/capwire.h). */
#ifndef AGENT_CAPTURE_H
#define AGENT_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

#include "recorder.h"
#include "spikehound.pb-c.h"
#include "spool.h"
#include "symbolize.h"

/* agent_capture_src: where a capture is taken from; all borrowed. */
struct agent_capture_src {
	struct agent_recorder *rec;
	struct agent_symbolizer *sym;    /* may be NULL: frames stay unresolved */
	const Spikehound__Hello *hello;  /* host identity copied into the capture */
	Spikehound__Process **processes; /* inventory, may be NULL */
	size_t n_processes;
	int64_t wall_minus_mono_ns;      /* converts recorder times to wall clock */
	uint32_t sample_hz;
	uint64_t default_max_bytes;      /* when the request has none [64 MiB] */
};

/* agent_capture_result: what was taken. */
struct agent_capture_result {
	size_t samples, stacks, events, metrics, procs;
	size_t raw_bytes, compressed_bytes;
	unsigned chunks;
	int64_t held_from_ns, held_to_ns; /* wall clock; 0 when nothing was held */
	bool truncated;
	char error[160]; /* set when the capture could not be taken */
};

/* agent_capture_build takes the capture req asks for and returns it
 * compressed in *out (malloc'd, caller frees) with its length in *len.
 * Returns 0, or a negative errno with res->error saying why: -ENODATA (the
 * window is no longer, or not yet, in the recorder), -EINVAL (a bad
 * window: see sh_capwire_check_window), -EFBIG (larger than the cap even
 * truncated), -ENOMEM, -EIO (compression failed). */
int agent_capture_build(const struct agent_capture_src *src, const Spikehound__CaptureRequest *req,
			uint8_t **out, size_t *len, struct agent_capture_result *res);

/* agent_capture_spool takes the capture and appends it to spool as
 * CaptureChunks of at most chunk_bytes (default 256 KiB) from host_id /
 * boot_id, each with the next sequence number; when it cannot be taken,
 * one chunk carrying the error is spooled instead (so the aggregator
 * learns why). Returns 0 when chunks (or the error chunk) were spooled,
 * else a negative errno (spool failure). */
int agent_capture_spool(const struct agent_capture_src *src, const Spikehound__CaptureRequest *req,
			struct agent_spool *spool, const char *host_id, const char *boot_id,
			size_t chunk_bytes, struct agent_capture_result *res);

/* agent_capture_sha256_hex writes the hex SHA-256 of data into out (65 bytes). */
void agent_capture_sha256_hex(const void *data, size_t len, char out[65]);

#endif
