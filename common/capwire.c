/* capwire.c: a capture on its way to the aggregator (see capwire.h). */
#include "capwire.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "timeutil.h"

#define DEFAULT_MAX_BYTES (64u << 20)
#define ZSTD_LEVEL 3

int sh_capwire_check_window(const Spikehound__CaptureRequest *req, char *err, size_t errlen)
{
	if (req->to_ns <= req->from_ns || req->to_ns - req->from_ns > SH_CAPWIRE_MAX_WINDOW_NS) {
		snprintf(err, errlen,
			 "bad window: it must end after it starts and span at most %lld s",
			 SH_CAPWIRE_MAX_WINDOW_NS / SH_NS_PER_SEC);
		return -EINVAL;
	}
	return 0;
}

uint64_t sh_capwire_max_bytes(const Spikehound__CaptureRequest *req, uint64_t dflt)
{
	return req->max_bytes ? req->max_bytes : dflt ? dflt : DEFAULT_MAX_BYTES;
}

bool sh_capwire_wants(const Spikehound__CaptureRequest *req, const char *what)
{
	if (req->n_include == 0)
		return true;
	for (size_t i = 0; i < req->n_include; i++)
		if (req->include[i] && strcmp(req->include[i], what) == 0)
			return true;
	return false;
}

int sh_capwire_compress(const Spikehound__Capture *cap, uint64_t max_bytes, uint8_t **out,
			size_t *len, size_t *raw_len, char *err, size_t errlen)
{
	size_t rlen = spikehound__capture__get_packed_size(cap), zcap, zlen;
	uint8_t *raw = malloc(rlen ? rlen : 1), *z = NULL;
	int rv = 0;

	*out = NULL;
	*len = 0;
	*raw_len = 0;
	if (!raw) {
		snprintf(err, errlen, "out of memory (%zu bytes)", rlen);
		return -ENOMEM;
	}
	spikehound__capture__pack(cap, raw);
	zcap = ZSTD_compressBound(rlen);
	if (!(z = malloc(zcap))) {
		snprintf(err, errlen, "out of memory (%zu bytes)", zcap);
		rv = -ENOMEM;
		goto cleanup;
	}
	zlen = ZSTD_compress(z, zcap, raw, rlen, ZSTD_LEVEL);
	if (ZSTD_isError(zlen)) {
		snprintf(err, errlen, "compression failed: %s", ZSTD_getErrorName(zlen));
		rv = -EIO;
		goto cleanup;
	}
	if (zlen > max_bytes) {
		snprintf(err, errlen, "too_large: %zu bytes compressed, over the cap of %" PRIu64,
			 zlen, max_bytes);
		rv = -EFBIG;
		goto cleanup;
	}
	*out = z;
	*len = zlen;
	*raw_len = rlen;
	z = NULL;
cleanup:
	free(raw);
	free(z);
	return rv;
}

void sh_capwire_hex(const uint8_t *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = '\0';
}

int sh_capwire_sha256_hex(const void *data, size_t len, char out[65])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
		out[0] = '\0';
		return -EIO;
	}
	sh_capwire_hex(md, 32, out);
	return 0;
}

void sh_capwire_chunk_init(Spikehound__CaptureChunk *ch, const Spikehound__CaptureRequest *req)
{
	spikehound__capture_chunk__init(ch);
	ch->capture_id = req->capture_id ? req->capture_id : "";
	ch->trigger = req->trigger ? req->trigger : "";
	ch->from_ns = req->from_ns;
	ch->to_ns = req->to_ns;
}

uint32_t sh_capwire_chunk_count(size_t len, size_t chunk_bytes)
{
	return (uint32_t)((len + chunk_bytes - 1) / chunk_bytes);
}

void sh_capwire_chunk_slice(Spikehound__CaptureChunk *ch, const uint8_t *data, size_t len,
			    size_t chunk_bytes, uint32_t i)
{
	size_t off = (size_t)i * chunk_bytes;

	ch->index = i;
	ch->total = sh_capwire_chunk_count(len, chunk_bytes);
	ch->data.data = (uint8_t *)data + off;
	ch->data.len = len - off < chunk_bytes ? len - off : chunk_bytes;
}
