/* capwire.h: a capture on its way to the aggregator, as the agent and
 * fleet-sim both send it: the request's checks and defaults, the
 * serialized Capture (proto/spikehound.proto) compressed with zstd under
 * the size cap, the SHA-256 of the compressed bytes, and those bytes cut
 * into CaptureChunks. What a capture holds, and where it comes from, is
 * the caller's business. */
#ifndef SH_CAPWIRE_H
#define SH_CAPWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spikehound.pb-c.h"

/* SH_CAPWIRE_MAX_WINDOW_NS is the longest window a capture may span. */
#define SH_CAPWIRE_MAX_WINDOW_NS (600LL * 1000000000LL)

/* SH_CAPWIRE_RAW_PER_COMPRESSED is how many serialized bytes are allowed
 * per compressed byte of the cap before a capture is truncated (these
 * records compress 5-10x). */
#define SH_CAPWIRE_RAW_PER_COMPRESSED 4

/* sh_capwire_check_window returns 0 when req's window ends after it starts
 * and spans at most SH_CAPWIRE_MAX_WINDOW_NS, else -EINVAL with err
 * (errlen bytes) saying so. */
int sh_capwire_check_window(const Spikehound__CaptureRequest *req, char *err, size_t errlen);

/* sh_capwire_max_bytes returns the compressed size cap for req: its own,
 * else dflt, else 64 MiB. */
uint64_t sh_capwire_max_bytes(const Spikehound__CaptureRequest *req, uint64_t dflt);

/* sh_capwire_wants tells whether req asks for the part what ("samples",
 * "events", "metrics", "procs"); an empty include list asks for all. */
bool sh_capwire_wants(const Spikehound__CaptureRequest *req, const char *what);

/* sh_capwire_compress packs cap (borrowed), compresses it with zstd and
 * returns the result in *out (malloc'd, caller frees) with its length in
 * *len and the serialized length in *raw_len. Returns 0, or a negative
 * errno with err (errlen bytes) saying why: -ENOMEM, -EIO (compression
 * failed), -EFBIG ("too_large: ...", over max_bytes compressed). */
int sh_capwire_compress(const Spikehound__Capture *cap, uint64_t max_bytes, uint8_t **out,
			size_t *len, size_t *raw_len, char *err, size_t errlen);

/* sh_capwire_hex writes the n bytes at b as lowercase hex and a NUL into
 * out (2 * n + 1 bytes). */
void sh_capwire_hex(const uint8_t *b, size_t n, char *out);

/* sh_capwire_sha256_hex writes the hex SHA-256 of data into out (65
 * bytes). Returns 0, or -EIO when it could not be computed (out is then
 * ""). */
int sh_capwire_sha256_hex(const void *data, size_t len, char out[65]);

/* sh_capwire_chunk_init fills ch with what every chunk of the capture req
 * asks for starts from: its id and trigger (borrowed from req, "" when
 * unset) and the window asked for. The caller adds the outcome: the held
 * window, sizes and sha256, or the error. */
void sh_capwire_chunk_init(Spikehound__CaptureChunk *ch, const Spikehound__CaptureRequest *req);

/* sh_capwire_chunk_count returns how many chunks of at most chunk_bytes
 * (> 0) the len compressed bytes are cut into. */
uint32_t sh_capwire_chunk_count(size_t len, size_t chunk_bytes);

/* sh_capwire_chunk_slice makes ch chunk i of the len bytes at data cut
 * into chunk_bytes pieces: its index, total and data (borrowed from data,
 * which must outlive ch's use). */
void sh_capwire_chunk_slice(Spikehound__CaptureChunk *ch, const uint8_t *data, size_t len,
			    size_t chunk_bytes, uint32_t i);

#endif
