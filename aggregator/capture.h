/* capture.h: captures — asking agents for the full flight-recorder content
 * of a time window, and the store of what they send (sql/007_captures.sql).
 *
 * Triggers: manual (GET /api/capture/new, the CLI's `spikehound capture`),
 * automatic on a spike event at least auto_min_duration long (the spiking
 * host, plus up to auto_healthy healthy hosts of its cohort — same kernel
 * release and labels — for contrast) and on a new incident (its hosts plus
 * healthy ones), rate-limited per host and per hour and skipped when the
 * window is older than agents' recorders hold; and local: an agent captures
 * itself and its chunks create the capture (trigger "local:<kind>").
 *
 * A request becomes one Command per host pushed through the control plane
 * (control.h); statuses the agents report update capture_hosts. Chunks
 * arrive on the data plane: ingest.c stages them with
 * agg_capture_stage_chunk() into st_chunk and runs AGG_CAPTURE_FINAL_SQL in
 * the batch's transaction (the payload is assembled and its SHA-256
 * checked there, before the ack). Everything runs on the loop with its own
 * async db connection.
 *
 * Routes (JSON unless said):
 *   GET /api/captures     [since=D] [limit=N]
 *   GET /api/capture      id=UUID
 *   GET /api/capture/data id=UUID [host=H]   the compressed payload (application/zstd)
 *   GET /api/capture/new  host=H | label=k=v | kernel=R | all=1  [at=T] [before=D] [after=D]
 *                         [max_bytes=N]  -> {"capture_id": .., "hosts": N}
 */
#ifndef AGG_CAPTURE_H
#define AGG_CAPTURE_H

#include <stdint.h>
#include <uv.h>

#include "control.h"
#include "copybuf.h"
#include "http.h"
#include "spikehound.pb-c.h"

struct agg_capture;

/* agg_capture_opts; zero fields take the defaults in brackets. */
struct agg_capture_opts {
	const char *dsn;           /* borrowed for the call */
	int64_t before_ns;         /* window before the trigger time [30 s] */
	int64_t after_ns;          /* window after it [5 s] */
	int64_t expiry_ns;         /* a request not answered by then expires [5 min] */
	uint64_t max_bytes;        /* compressed size cap per host [64 MiB] */
	int64_t auto_min_duration_ns; /* spikes at least this long trigger [100 ms]; < 0: off */
	int auto_healthy;          /* healthy hosts asked with an automatic capture [3] */
	int64_t auto_host_interval_ns; /* at most one automatic capture per host per [10 min] */
	int auto_max_per_hour;     /* automatic captures per hour, fleet-wide [30] */
	int64_t recorder_span_ns;  /* windows older than this are not asked for [110 s] */
	int retention_days;        /* captures kept [14] */
};

/* agg_capture_start connects to the database, re-sends the commands still
 * pending from before a restart through ctl (borrowed; it must outlive the
 * capture store) and starts the trigger timer. Returns 0 and *out or a
 * negative errno. */
int agg_capture_start(uv_loop_t *loop, const struct agg_capture_opts *o, struct agg_control *ctl,
		      struct agg_capture **out);

/* agg_capture_register adds the routes above to http. */
int agg_capture_register(struct agg_capture *cap, struct agg_http *http);

/* agg_capture_status_cb is the control plane's status callback (arg: the
 * struct agg_capture). */
void agg_capture_status_cb(void *arg, const char *host_id, const Spikehound__CommandStatus *st);

/* agg_capture_stop closes the store's connection and timers; done_cb(arg)
 * runs on the loop once everything is closed and freed. */
void agg_capture_stop(struct agg_capture *cap, void (*done_cb)(void *arg), void *arg);

/* agg_capture_stats_json returns the counters as a JSON object (caller frees). */
char *agg_capture_stats_json(struct agg_capture *cap);

/* AGG_CAPTURE_STAGING_SQL creates ingest's temp table st_chunk (one row per
 * chunk); AGG_CAPTURE_COPY_SQL is its COPY statement; AGG_CAPTURE_FINAL_SQL
 * moves staged chunks into the capture tables and assembles completed
 * payloads, inside ingest's transaction. */
#define AGG_CAPTURE_STAGING_SQL                                                              \
	"CREATE TEMP TABLE st_chunk (host_id uuid, capture_id uuid, idx int, total int,"   \
	" data bytea, sha256 text, error text, compressed_bytes bigint, raw_bytes bigint,"   \
	" from_ns bigint, to_ns bigint, trigger text) ON COMMIT DELETE ROWS;"
#define AGG_CAPTURE_COPY_SQL "COPY st_chunk FROM STDIN"
extern const char agg_capture_final_sql[];

/* agg_capture_stage_chunk appends the COPY row of one CaptureChunk of
 * host_id to b. The chunk must have passed agg_capture_check_chunk(). */
void agg_capture_stage_chunk(struct agg_copybuf *b, const char *host_id,
			     const Spikehound__CaptureChunk *ch);

/* agg_capture_check_chunk validates a chunk; returns NULL or the reason it
 * is rejected ("bad_capture_id", "bad_chunk_index", "chunk_too_large", ...). */
const char *agg_capture_check_chunk(const Spikehound__CaptureChunk *ch);

#endif
