/* ingest.h: the data plane. Agents' AgentRequests arrive on an nng rep0
 * socket (raw mode, so many requests are in flight at once) whose pollable
 * descriptor joins the libuv loop; each is decoded, validated, staged as
 * COPY rows into the current batch, written in one transaction by one of
 * the writer connections, and acknowledged only after COMMIT. Delivery is
 * idempotent on (host, boot, seq) (see sql/001_init.sql). */
#ifndef AGG_INGEST_H
#define AGG_INGEST_H

#include <stddef.h>
#include <uv.h>

#include "nngtls.h"
#include "validate.h"

/* struct agg_ingest_opts configures agg_ingest_start; strings borrowed
 * for the call. */
struct agg_ingest_opts {
	const char *listen_url;   /* e.g. "tcp://127.0.0.1:7470" or "tls+tcp://..." */
	const struct sh_tls *tls; /* TLS files for a tls+tcp:// listen_url (NULL: none) */
	const char *dsn;          /* PostgreSQL connection string */
	int writers;              /* database connections writing batches (>= 1) */
	size_t max_request_bytes; /* larger requests are rejected as "oversized" */
	size_t max_batch_requests;
	size_t max_batch_bytes;
	struct agg_limits limits;
};

struct agg_ingest;

/* agg_ingest_opts_default fills o with defaults (writers 2, 8 MiB requests,
 * 2,000 requests or 32 MiB per batch). listen_url and dsn stay NULL. */
void agg_ingest_opts_default(struct agg_ingest_opts *o);

/* agg_ingest_start listens and starts serving on loop. Returns 0 and
 * *out, or a negative errno with the reason logged. */
int agg_ingest_start(uv_loop_t *loop, const struct agg_ingest_opts *o, struct agg_ingest **out);

/* agg_ingest_stop stops receiving, commits and acknowledges what was
 * received, closes everything and then calls done_cb(arg) on the loop;
 * ing is freed before done_cb runs. */
void agg_ingest_stop(struct agg_ingest *ing, void (*done_cb)(void *arg), void *arg);

/* agg_ingest_stats_json returns the self-metrics as a JSON object string
 * (caller frees), or NULL on allocation failure. */
char *agg_ingest_stats_json(struct agg_ingest *ing);

/* agg_ingest_log_stats logs a one-line summary of the self-metrics. */
void agg_ingest_log_stats(struct agg_ingest *ing);

#endif
