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

/* agg_capture_opts; zero fields take the defaults in brackets; a negative
 * count or interval means none (no healthy hosts, no automatic captures,
 * no per-host limit). */
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
 * chunk message); AGG_CAPTURE_COPY_SQL is its COPY statement;
 * AGG_CAPTURE_FINAL_SQL, run in ingest's transaction after st_new holds the
 * batch's new (host, boot, seq), moves the new chunks into the capture
 * tables, records failures, and assembles and checks completed payloads. */
#define AGG_CAPTURE_STAGING_SQL                                                              \
	"CREATE TEMP TABLE IF NOT EXISTS st_chunk (host_id uuid, boot_id uuid, seq bigint,"  \
	" capture_id uuid, idx int, total int, data bytea, sha256 text, error text,"         \
	" compressed_bytes bigint, raw_bytes bigint, from_ns bigint, to_ns bigint,"         \
	" trigger text) ON COMMIT DELETE ROWS;"
#define AGG_CAPTURE_COPY_SQL "COPY st_chunk FROM STDIN"
#define AGG_CAPTURE_FINAL_SQL                                                                \
	/* only chunks of new messages (duplicates were stored before) */                    \
	"DELETE FROM st_chunk c WHERE NOT EXISTS (SELECT 1 FROM st_new n"                    \
	" WHERE n.host_id = c.host_id AND n.boot_id = c.boot_id AND n.seq = c.seq);"       \
	/* captures an agent took by itself */                                               \
	"INSERT INTO captures (capture_id, trigger, from_ts, to_ts, expires_at)"             \
	" SELECT DISTINCT ON (capture_id) capture_id, coalesce(nullif(trigger, ''), 'local')," \
	" timestamptz 'epoch' + from_ns / 1000 * interval '1 microsecond',"                  \
	" timestamptz 'epoch' + to_ns / 1000 * interval '1 microsecond', now()"              \
	" FROM st_chunk ORDER BY capture_id ON CONFLICT DO NOTHING;"                         \
	"INSERT INTO capture_hosts (capture_id, host_id, role, status)"                      \
	" SELECT DISTINCT capture_id, host_id, 'local', 'receiving' FROM st_chunk"           \
	" ON CONFLICT DO NOTHING;"                                                           \
	/* failures the agent reports */                                                     \
	"UPDATE capture_hosts h SET status = 'failed', reason = s.error, updated_at = now()"  \
	" FROM st_chunk s WHERE s.error <> '' AND h.capture_id = s.capture_id"              \
	" AND h.host_id = s.host_id AND h.status <> 'complete';"                             \
	/* (not for a host whose capture is over: late or stray chunks are dropped) */       \
	"INSERT INTO capture_chunks (capture_id, host_id, idx, data)"                        \
	" SELECT s.capture_id, s.host_id, s.idx, s.data FROM st_chunk s"                     \
	" JOIN capture_hosts h USING (capture_id, host_id)"                                  \
	" WHERE s.error = '' AND s.total > 0 AND h.status NOT IN ('complete', 'failed')"     \
	" ORDER BY 1, 2, 3 ON CONFLICT DO NOTHING;"                                          \
	"UPDATE capture_hosts h SET status = 'receiving', updated_at = now(),"               \
	" total_chunks = s.total, sha256 = s.sha256, compressed_bytes = s.compressed_bytes,"  \
	" raw_bytes = s.raw_bytes,"                                                          \
	" held_from = timestamptz 'epoch' + s.from_ns / 1000 * interval '1 microsecond',"    \
	" held_to = timestamptz 'epoch' + s.to_ns / 1000 * interval '1 microsecond'"         \
	" FROM (SELECT DISTINCT ON (capture_id, host_id) * FROM st_chunk WHERE error = ''"   \
	" ORDER BY capture_id, host_id, idx) s"                                              \
	" WHERE h.capture_id = s.capture_id AND h.host_id = s.host_id"                       \
	" AND h.status IN ('requested', 'sent', 'accepted', 'receiving', 'expired');"        \
	/* assemble what is complete, check it, drop its chunks */                           \
	"WITH t AS (SELECT DISTINCT capture_id, host_id FROM st_chunk WHERE error = ''),"    \
	" full_ AS (SELECT h.capture_id, h.host_id FROM capture_hosts h"                     \
	" JOIN t USING (capture_id, host_id) WHERE h.status = 'receiving'"                   \
	" AND h.total_chunks = (SELECT count(*) FROM capture_chunks k"                       \
	" WHERE k.capture_id = h.capture_id AND k.host_id = h.host_id)),"                    \
	" a AS (SELECT k.capture_id, k.host_id, string_agg(k.data, ''::bytea ORDER BY k.idx) AS data" \
	" FROM capture_chunks k JOIN full_ USING (capture_id, host_id) GROUP BY 1, 2),"      \
	" u AS (UPDATE capture_hosts h SET payload = a.data, completed_at = now(),"          \
	" updated_at = now(),"                                                               \
	" status = CASE WHEN encode(sha256(a.data), 'hex') = h.sha256"                       \
	" AND length(a.data) = h.compressed_bytes THEN 'complete' ELSE 'failed' END,"        \
	" reason = CASE WHEN encode(sha256(a.data), 'hex') = h.sha256"                       \
	" AND length(a.data) = h.compressed_bytes THEN ''"                                   \
	" ELSE 'checksum mismatch: the assembled capture is corrupt' END"                    \
	" FROM a WHERE h.capture_id = a.capture_id AND h.host_id = a.host_id"                \
	" RETURNING h.capture_id, h.host_id)"                                                \
	" DELETE FROM capture_chunks k USING u WHERE k.capture_id = u.capture_id"            \
	" AND k.host_id = u.host_id;"

/* agg_capture_stage_chunk appends the COPY row of chunk message m (its
 * chunk passed agg_capture_check_chunk()) to b. */
void agg_capture_stage_chunk(struct agg_copybuf *b, const Spikehound__AgentMessage *m);

/* agg_capture_check_chunk validates a chunk; returns NULL or the reason it
 * is rejected ("bad_capture_id", "bad_chunk_index", "chunk_too_large", ...). */
const char *agg_capture_check_chunk(const Spikehound__CaptureChunk *ch);

#endif
