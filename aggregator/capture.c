/* capture.c: capture requests, triggers and the capture store (see
 * capture.h). */
#include "capture.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "db.h"
#include "log.h"
#include "query.h"
#include "timeutil.h"
#include "uuid.h"
#include "validate.h"

#define TICK_MS 500
#define MAINT_EVERY 10 /* ticks */
#define MAX_CHUNK_BYTES (4u << 20)
#define MAX_CHUNKS 100000

/* TS turns a text parameter holding Unix ns into a timestamptz; NS turns a
 * timestamptz column into Unix ns. */
#define TS(p) "(timestamptz 'epoch' + (" p "::bigint / 1000) * interval '1 microsecond')"
#define NS(c) "(extract(epoch FROM " c ") * 1000000000)::bigint"

/* struct host_seen remembers a host's last automatic capture. */
struct host_seen {
	char key[40];
	int64_t last_ns; /* time of the spike of the host's last automatic capture */
	UT_hash_handle hh;
};

struct agg_capture {
	uv_loop_t *loop;
	struct agg_capture_opts opts;
	struct agg_control *ctl;
	struct agg_db *db;
	uv_timer_t tick;
	unsigned ticks;
	bool loaded;          /* pending commands re-sent after a start */
	bool scanning;        /* a trigger scan is running */
	int64_t scan_started_ns;
	int64_t event_cursor_ns; /* received_at of the last spike event looked at */
	int64_t incident_cursor; /* last incident id looked at */
	bool have_incidents;  /* the incidents table exists */
	struct host_seen *seen;
	int64_t hour_start_ns;
	int hour_count;
	void (*done_cb)(void *);
	void *done_arg;
	/* counters */
	uint64_t requested, auto_spike, auto_incident, auto_skipped_rate, statuses, expired,
		db_errors, commands_pushed, chunks_dropped;
	/* stored per-host captures by outcome, as of the last housekeeping */
	uint64_t hosts_complete, hosts_failed, hosts_corrupt;
};

/* --- commands --- */

static void push_command(struct agg_capture *cap, const char *host_id, const char *capture_id,
			 int64_t from_ns, int64_t to_ns, int64_t max_bytes, int64_t expires_ns,
			 const char *trigger)
{
	Spikehound__Command cmd = SPIKEHOUND__COMMAND__INIT;
	Spikehound__CaptureRequest req = SPIKEHOUND__CAPTURE_REQUEST__INIT;
	int rv;

	req.capture_id = (char *)capture_id;
	req.from_ns = from_ns;
	req.to_ns = to_ns;
	req.max_bytes = (uint64_t)max_bytes;
	req.expires_ns = expires_ns;
	req.trigger = (char *)trigger;
	cmd.command_id = (char *)capture_id; /* one capture command per host: its id is the capture's */
	cmd.expires_ns = expires_ns;
	cmd.capture = &req;
	if ((rv = agg_control_push(cap->ctl, host_id, &cmd)) < 0)
		sh_warn("capture: could not queue the command for host %s: %s", host_id,
			strerror(-rv));
	else
		cap->commands_pushed++;
}

/* push_rows pushes one command per row of (host_id, capture_id, from_ns,
 * to_ns, max_bytes, expires_ns, trigger). */
static void push_rows(struct agg_capture *cap, PGresult *res)
{
	for (int i = 0; i < PQntuples(res); i++)
		push_command(cap, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
			     strtoll(PQgetvalue(res, i, 2), NULL, 10),
			     strtoll(PQgetvalue(res, i, 3), NULL, 10),
			     strtoll(PQgetvalue(res, i, 4), NULL, 10),
			     strtoll(PQgetvalue(res, i, 5), NULL, 10), PQgetvalue(res, i, 6));
}

#define PENDING_COLS                                                                          \
	" h.host_id::text, c.capture_id::text, " NS("c.from_ts") ", " NS("c.to_ts") ","      \
	" c.max_bytes, " NS("c.expires_at") ", c.trigger"

static const char load_pending_sql[] =
	"SELECT" PENDING_COLS " FROM capture_hosts h JOIN captures c USING (capture_id)"
	" WHERE h.status IN ('requested', 'sent') AND c.expires_at > now()";

static void load_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			 void *arg)
{
	struct agg_capture *cap = arg;

	(void)db;
	if (status < 0) {
		cap->db_errors++;
		sh_warn("capture: could not load pending requests: %s", errmsg);
		return;
	}
	cap->loaded = true;
	push_rows(cap, res);
	if (PQntuples(res) > 0)
		sh_info("capture: re-sent %d pending capture commands", PQntuples(res));
}

/* create_sql makes a capture: $1 capture id, $2 trigger, $3 incident id or
 * NULL, $4 from ns, $5 to ns, $6 max bytes, $7 expiry (s), $8 selector
 * kind (host|label|kernel|all|hosts), $9 selector value ($8 = hosts: a
 * comma-separated host_id list), $10 role of the selected hosts, $11 how
 * many healthy hosts of the same cohort to add. Returns the commands to
 * push. Hosts are those heard from in the last 10 minutes. */
static const char create_sql[] =
	"WITH a AS (SELECT $9::text AS v, lower($9::text) AS vl),"
	" live AS (SELECT h.host_id, h.hostname, h.labels, b.kernel_release FROM hosts h"
	"  LEFT JOIN boots b ON b.host_id = h.host_id AND b.boot_id = h.last_boot_id"
	"  WHERE h.last_seen > now() - interval '10 minutes'),"
	" sel AS (SELECT l.* FROM live l, a WHERE CASE $8::text"
	"   WHEN 'all' THEN true"
	"   WHEN 'host' THEN l.host_id::text = a.vl OR l.hostname = a.v"
	"    OR (length(a.vl) >= 4 AND starts_with(l.host_id::text, a.vl))"
	"   WHEN 'label' THEN l.labels ->> split_part(a.v, '=', 1) = substr(a.v, strpos(a.v, '=') + 1)"
	"   WHEN 'kernel' THEN l.kernel_release = a.v"
	"   WHEN 'hosts' THEN l.host_id::text = ANY (string_to_array(a.vl, ','))"
	"   ELSE false END),"
	" healthy AS (SELECT l.host_id FROM live l WHERE $11::int > 0"
	"   AND l.host_id NOT IN (SELECT host_id FROM sel)"
	"   AND EXISTS (SELECT 1 FROM sel s WHERE s.kernel_release IS NOT DISTINCT FROM l.kernel_release"
	"    AND s.labels = l.labels)"
	"   AND NOT EXISTS (SELECT 1 FROM spike_events e WHERE e.host_id = l.host_id"
	"    AND e.ts >= " TS("$4") " - interval '1 minute' AND e.ts <= " TS("$5") ")"
	"   ORDER BY random() LIMIT $11::int),"
	" c AS (INSERT INTO captures (capture_id, trigger, incident_id, from_ts, to_ts, max_bytes,"
	"   expires_at)"
	"  SELECT $1::uuid, $2, $3::bigint, " TS("$4") ", " TS("$5") ", $6::bigint,"
	"   now() + $7::float8 * interval '1 second'"
	"  WHERE EXISTS (SELECT 1 FROM sel) RETURNING *),"
	" h AS (INSERT INTO capture_hosts (capture_id, host_id, role)"
	"  SELECT c.capture_id, s.host_id, $10 FROM c, sel s"
	"  UNION ALL SELECT c.capture_id, y.host_id, 'healthy' FROM c, healthy y"
	"  RETURNING host_id, capture_id)"
	" SELECT h.host_id::text, c.capture_id::text, " NS("c.from_ts") ", " NS("c.to_ts") ","
	"  c.max_bytes, " NS("c.expires_at") ", c.trigger FROM h JOIN c USING (capture_id)";

struct create_ctx {
	struct agg_capture *cap;
	struct agg_http_req *req; /* manual: answer it; NULL for automatic */
	char capture_id[40];
};

static void create_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			   void *arg)
{
	struct create_ctx *x = arg;
	struct agg_capture *cap = x->cap;
	char body[160];

	(void)db;
	if (status < 0) {
		cap->db_errors++;
		sh_warn("capture: could not create capture %s: %s", x->capture_id, errmsg);
		if (x->req)
			agg_http_respond_error(x->req, status == -ECONNRESET ? 503 : 500,
					       "could not create the capture: %s", errmsg);
		free(x);
		return;
	}
	push_rows(cap, res);
	if (x->req) {
		if (PQntuples(res) == 0) {
			agg_http_respond_error(x->req, 404,
					       "no live host (heard from in the last 10 minutes) matches");
		} else {
			snprintf(body, sizeof(body), "{\"capture_id\":\"%s\",\"hosts\":%d}",
				 x->capture_id, PQntuples(res));
			agg_http_respond(x->req, 200, "application/json", body, strlen(body));
		}
	}
	if (PQntuples(res) > 0)
		sh_info("capture: %s asked of %d hosts", x->capture_id, PQntuples(res));
	free(x);
}

/* create starts a capture of [from, to] of the selected hosts; req (may be
 * NULL) is answered when done. Returns 0 or a negative errno (req not
 * answered then). */
static int create(struct agg_capture *cap, const char *sel_kind, const char *sel_value,
		  const char *role, int healthy, const char *trigger, int64_t incident_id,
		  int64_t from_ns, int64_t to_ns, uint64_t max_bytes, struct agg_http_req *req)
{
	struct create_ctx *x = calloc(1, sizeof(*x));
	char from_s[24], to_s[24], max_s[24], exp_s[32], inc_s[24], healthy_s[12];
	const char *params[11];
	int rv;

	if (!x)
		return -ENOMEM;
	x->cap = cap;
	x->req = req;
	sh_uuid_v4(x->capture_id);
	snprintf(from_s, sizeof(from_s), "%" PRId64, from_ns);
	snprintf(to_s, sizeof(to_s), "%" PRId64, to_ns);
	snprintf(max_s, sizeof(max_s), "%" PRIu64, max_bytes ? max_bytes : cap->opts.max_bytes);
	snprintf(exp_s, sizeof(exp_s), "%.3f", (double)cap->opts.expiry_ns / 1e9);
	snprintf(inc_s, sizeof(inc_s), "%" PRId64, incident_id);
	snprintf(healthy_s, sizeof(healthy_s), "%d", healthy);
	params[0] = x->capture_id;
	params[1] = trigger;
	params[2] = incident_id > 0 ? inc_s : NULL;
	params[3] = from_s;
	params[4] = to_s;
	params[5] = max_s;
	params[6] = exp_s;
	params[7] = sel_kind;
	params[8] = sel_value;
	params[9] = role;
	params[10] = healthy_s;
	rv = agg_db_query(cap->db, create_sql, 11, params, create_done_cb, x);
	if (rv < 0) {
		free(x);
		return rv;
	}
	cap->requested++;
	return 0;
}

/* --- automatic triggers --- */

/* rate_ok applies the automatic captures' limits: per hour fleet-wide (by
 * the clock), and per host by the time of the spikes (ts), so that a late
 * scan under load does not skip a spike that came long enough after the
 * host's last captured one. */
static bool rate_ok(struct agg_capture *cap, const char *host_id, int64_t now, int64_t ts)
{
	struct host_seen *s;
	char key[40];

	snprintf(key, sizeof(key), "%s", host_id);
	if (now - cap->hour_start_ns >= 3600 * SH_NS_PER_SEC) {
		cap->hour_start_ns = now;
		cap->hour_count = 0;
	}
	if (cap->hour_count >= cap->opts.auto_max_per_hour)
		return false;
	HASH_FIND_STR(cap->seen, key, s);
	if (s && llabs(ts - s->last_ns) < cap->opts.auto_host_interval_ns)
		return false;
	if (!s) {
		if (!(s = calloc(1, sizeof(*s))))
			return false;
		snprintf(s->key, sizeof(s->key), "%s", key);
		HASH_ADD_STR(cap->seen, key, s);
	}
	if (!s->last_ns || ts > s->last_ns)
		s->last_ns = ts;
	cap->hour_count++;
	return true;
}

/* scan_events_sql: spike events received since $1 (ns) that are long
 * enough ($2 ns) and recent enough to be in the recorders ($3 ns ago). */
static const char scan_events_sql[] =
	"SELECT e.host_id::text, " NS("e.ts") ", e.kind, " NS("e.received_at")
	" FROM spike_events e"
	" WHERE e.ts > now() - $3::bigint / 1000 * interval '1 microsecond'"
	"  AND e.received_at > " TS("$1") " AND e.duration_ns >= $2::bigint"
	" ORDER BY e.received_at LIMIT 200";

/* scan_incidents_sql: incidents after id $1 whose first spike is recent
 * enough, with their hosts (skipped when the incidents table is absent). */
static const char scan_incidents_sql[] =
	"SELECT i.incident_id, " NS("min(e.ts)") ", i.kind,"
	"  string_agg(DISTINCT e.host_id::text, ',')"
	" FROM incidents i JOIN spike_events e ON e.incident_id = i.incident_id"
	"  AND e.ts > now() - $2::bigint / 1000 * interval '1 microsecond'"
	" WHERE i.incident_id > $1::bigint"
	" GROUP BY i.incident_id, i.kind ORDER BY i.incident_id LIMIT 20";

static void incidents_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			      void *arg)
{
	struct agg_capture *cap = arg;
	int64_t now = sh_now_wall_ns();

	(void)db;
	cap->scanning = false;
	if (status < 0) {
		cap->db_errors++;
		if (cap->db_errors % 100 == 1)
			sh_warn("capture: incident scan failed: %s (%" PRIu64 " database errors)", errmsg,
				cap->db_errors);
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		int64_t id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		int64_t first = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		char trigger[48];

		if (id > cap->incident_cursor)
			cap->incident_cursor = id;
		if (now - cap->hour_start_ns < 3600 * SH_NS_PER_SEC &&
		    cap->hour_count >= cap->opts.auto_max_per_hour) {
			cap->auto_skipped_rate++;
			continue;
		}
		cap->hour_count++;
		snprintf(trigger, sizeof(trigger), "incident:%" PRId64, id);
		if (create(cap, "hosts", PQgetvalue(res, i, 3), "spiking", cap->opts.auto_healthy,
			   trigger, id, first - cap->opts.before_ns, first + cap->opts.after_ns, 0,
			   NULL) == 0)
			cap->auto_incident++;
	}
}

static void events_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			   void *arg)
{
	struct agg_capture *cap = arg;
	int64_t now = sh_now_wall_ns();
	char cur_s[24], span_s[24];
	const char *params[2];

	(void)db;
	if (status < 0) {
		cap->scanning = false;
		cap->db_errors++;
		if (cap->db_errors % 100 == 1)
			sh_warn("capture: event scan failed: %s (%" PRIu64 " database errors)", errmsg,
				cap->db_errors);
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *host = PQgetvalue(res, i, 0);
		int64_t ts = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		int64_t recv = strtoll(PQgetvalue(res, i, 3), NULL, 10);
		char trigger[80];

		if (recv > cap->event_cursor_ns)
			cap->event_cursor_ns = recv;
		if (!rate_ok(cap, host, now, ts)) {
			cap->auto_skipped_rate++;
			continue;
		}
		snprintf(trigger, sizeof(trigger), "spike:%.60s", PQgetvalue(res, i, 2));
		if (create(cap, "host", host, "spiking", cap->opts.auto_healthy, trigger, 0,
			   ts - cap->opts.before_ns, ts + cap->opts.after_ns, 0, NULL) == 0)
			cap->auto_spike++;
	}
	if (!cap->have_incidents) {
		cap->scanning = false;
		return;
	}
	snprintf(cur_s, sizeof(cur_s), "%" PRId64, cap->incident_cursor);
	snprintf(span_s, sizeof(span_s), "%" PRId64, cap->opts.recorder_span_ns);
	params[0] = cur_s;
	params[1] = span_s;
	if (agg_db_query(cap->db, scan_incidents_sql, 2, params, incidents_done_cb, cap) < 0)
		cap->scanning = false;
}

/* --- housekeeping --- */

static const char maint_sql[] =
	"WITH x AS (UPDATE capture_hosts h SET status = 'expired', updated_at = now(),"
	"  reason = 'the agent did not take the capture before the request expired'"
	"  FROM captures c WHERE c.capture_id = h.capture_id"
	"  AND h.status IN ('requested', 'sent') AND c.expires_at < now() RETURNING 1),"
	" y AS (UPDATE capture_hosts h SET status = 'failed', updated_at = now(),"
	"  reason = format('incomplete: %s of %s chunks arrived',"
	"   (SELECT count(*) FROM capture_chunks k WHERE k.capture_id = h.capture_id"
	"    AND k.host_id = h.host_id), h.total_chunks)"
	"  WHERE h.status IN ('accepted', 'receiving') AND h.updated_at < now() - interval '30 minutes'"
	"  RETURNING 1),"
	" z AS (DELETE FROM captures c WHERE c.requested_at < now() - $1::int * interval '1 day'"
	"  RETURNING capture_id),"
	" zh AS (DELETE FROM capture_hosts h USING z WHERE h.capture_id = z.capture_id RETURNING 1),"
	" zk AS (DELETE FROM capture_chunks k USING z WHERE k.capture_id = z.capture_id RETURNING 1),"
	/* chunks of a host whose capture failed are of no use */
	" zf AS (DELETE FROM capture_chunks k USING capture_hosts h"
	"  WHERE h.capture_id = k.capture_id AND h.host_id = k.host_id AND h.status = 'failed'"
	"  RETURNING 1)"
	" SELECT (SELECT count(*) FROM x), (SELECT count(*) FROM y), (SELECT count(*) FROM z),"
	"  to_regclass('incidents') IS NOT NULL, (SELECT count(*) FROM zf),"
	"  (SELECT count(*) FROM capture_hosts WHERE status = 'complete'),"
	"  (SELECT count(*) FROM capture_hosts WHERE status = 'failed'),"
	"  (SELECT count(*) FROM capture_hosts WHERE status = 'failed' AND reason LIKE 'checksum%')";

static void maint_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			  void *arg)
{
	struct agg_capture *cap = arg;

	(void)db;
	if (status < 0) {
		cap->db_errors++;
		if (cap->db_errors % 100 == 1)
			sh_warn("capture: housekeeping failed: %s (%" PRIu64 " database errors)", errmsg,
				cap->db_errors);
		return;
	}
	if (PQntuples(res) == 1) {
		cap->expired += strtoull(PQgetvalue(res, 0, 0), NULL, 10);
		cap->have_incidents = PQgetvalue(res, 0, 3)[0] == 't';
		cap->chunks_dropped += strtoull(PQgetvalue(res, 0, 4), NULL, 10);
		cap->hosts_complete = strtoull(PQgetvalue(res, 0, 5), NULL, 10);
		cap->hosts_failed = strtoull(PQgetvalue(res, 0, 6), NULL, 10);
		cap->hosts_corrupt = strtoull(PQgetvalue(res, 0, 7), NULL, 10);
	}
}

static void tick_cb(uv_timer_t *t)
{
	struct agg_capture *cap = t->data;
	char cur_s[24], min_s[24], span_s[24], ret_s[12];
	const char *params[3];

	if (!agg_db_ready(cap->db) || !agg_db_idle(cap->db))
		return;
	if (!cap->loaded) {
		agg_db_query(cap->db, load_pending_sql, 0, NULL, load_done_cb, cap);
		return;
	}
	if (cap->ticks++ % MAINT_EVERY == 0) {
		snprintf(ret_s, sizeof(ret_s), "%d", cap->opts.retention_days);
		params[0] = ret_s;
		agg_db_query(cap->db, maint_sql, 1, params, maint_done_cb, cap);
		return;
	}
	if (cap->opts.auto_min_duration_ns < 0)
		return;
	if (cap->scanning) {
		/* a scan's callbacks clear it; one that never came back (a lost
		 * connection mid-chain) must not stop the triggers for good */
		if (sh_now_mono_ns() - cap->scan_started_ns < 30 * SH_NS_PER_SEC)
			return;
		sh_warn("capture: a trigger scan did not finish in 30 s: starting over");
	}
	snprintf(cur_s, sizeof(cur_s), "%" PRId64, cap->event_cursor_ns);
	snprintf(min_s, sizeof(min_s), "%" PRId64, cap->opts.auto_min_duration_ns);
	snprintf(span_s, sizeof(span_s), "%" PRId64, cap->opts.recorder_span_ns);
	params[0] = cur_s;
	params[1] = min_s;
	params[2] = span_s;
	/* set before submitting: a callback may run before the call returns */
	cap->scanning = true;
	cap->scan_started_ns = sh_now_mono_ns();
	if (agg_db_query(cap->db, scan_events_sql, 3, params, events_done_cb, cap) < 0)
		cap->scanning = false;
}

/* --- statuses from agents --- */

static const char status_sql[] =
	"UPDATE capture_hosts SET updated_at = now(),"
	" status = CASE WHEN status IN ('complete', 'failed', 'expired') THEN status"
	"  WHEN $3 = 'accepted' AND status IN ('requested', 'sent') THEN 'accepted'"
	"  WHEN $3 IN ('failed', 'expired') AND status <> 'receiving' THEN $3"
	"  ELSE status END,"
	" reason = CASE WHEN $3 IN ('failed', 'expired') AND status NOT IN ('complete', 'receiving')"
	"  THEN $4 ELSE reason END"
	" WHERE capture_id = $1::uuid AND host_id = $2::uuid";

static void status_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			   void *arg)
{
	struct agg_capture *cap = arg;

	(void)db;
	(void)res;
	if (status < 0) {
		cap->db_errors++;
		sh_warn("capture: could not record a status: %s", errmsg);
	}
}

void agg_capture_status_cb(void *arg, const char *host_id, const Spikehound__CommandStatus *st)
{
	struct agg_capture *cap = arg;
	const char *params[4];

	cap->statuses++;
	if (!agg_is_uuid(st->command_id))
		return; /* not one of ours */
	params[0] = st->command_id;
	params[1] = host_id;
	params[2] = st->status ? st->status : "";
	params[3] = st->reason ? st->reason : "";
	agg_db_query(cap->db, status_sql, 4, params, status_done_cb, cap);
}

/* --- chunks (staged by ingest) --- */

const char *agg_capture_check_chunk(const Spikehound__CaptureChunk *ch)
{
	if (!ch->capture_id || !agg_is_uuid(ch->capture_id))
		return "bad_capture_id";
	if (ch->error && ch->error[0]) {
		if (strlen(ch->error) > 1024)
			return "string_too_long";
		return NULL;
	}
	if (ch->total == 0 || ch->total > MAX_CHUNKS || ch->index >= ch->total)
		return "bad_chunk_index";
	if (ch->data.len > MAX_CHUNK_BYTES)
		return "chunk_too_large";
	if (!ch->sha256 || strlen(ch->sha256) != 64)
		return "bad_checksum";
	for (const char *p = ch->sha256; *p; p++)
		if (!isxdigit((unsigned char)*p))
			return "bad_checksum";
	if (ch->compressed_bytes == 0 || ch->compressed_bytes > (uint64_t)MAX_CHUNK_BYTES * MAX_CHUNKS)
		return "bad_chunk_size";
	if (ch->trigger && strlen(ch->trigger) > 128)
		return "string_too_long";
	return NULL;
}

void agg_capture_stage_chunk(struct agg_copybuf *b, const Spikehound__AgentMessage *m)
{
	const Spikehound__CaptureChunk *ch = m->chunk;
	bool failed = ch->error && ch->error[0];

	agg_copybuf_str(b, m->host_id);
	agg_copybuf_str(b, m->boot_id);
	agg_copybuf_i64(b, (int64_t)m->seq);
	agg_copybuf_str(b, ch->capture_id);
	agg_copybuf_i64(b, failed ? 0 : ch->index);
	agg_copybuf_i64(b, failed ? 0 : ch->total);
	agg_copybuf_bytea(b, failed ? NULL : ch->data.data, failed ? 0 : ch->data.len);
	agg_copybuf_str(b, ch->sha256 ? ch->sha256 : "");
	agg_copybuf_str(b, failed ? ch->error : "");
	agg_copybuf_i64(b, (int64_t)(ch->compressed_bytes > INT64_MAX ? 0 : ch->compressed_bytes));
	agg_copybuf_i64(b, (int64_t)(ch->raw_bytes > INT64_MAX ? 0 : ch->raw_bytes));
	agg_copybuf_i64(b, ch->from_ns);
	agg_copybuf_i64(b, ch->to_ns);
	agg_copybuf_str(b, ch->trigger ? ch->trigger : "");
	agg_copybuf_end_row(b);
}

/* --- routes --- */

/* CAPTURE_JSON is one capture as JSON, from captures row c. */
#define CAPTURE_JSON                                                                           \
	"json_build_object('capture_id', c.capture_id, 'requested_ns', " NS("c.requested_at") "," \
	" 'trigger', c.trigger, 'incident_id', c.incident_id, 'from_ns', " NS("c.from_ts") ","     \
	" 'to_ns', " NS("c.to_ts") ", 'expires_ns', " NS("c.expires_at") ","                       \
	" 'max_bytes', c.max_bytes,"                                                            \
	" 'hosts', coalesce((SELECT json_agg(json_build_object("                                \
	"   'host_id', h.host_id, 'hostname', coalesce(o.hostname, ''), 'role', h.role,"        \
	"   'status', h.status, 'reason', h.reason, 'bytes', coalesce(h.compressed_bytes, 0),"   \
	"   'raw_bytes', coalesce(h.raw_bytes, 0),"                                             \
	"   'chunks', CASE WHEN h.status = 'complete' THEN h.total_chunks ELSE"                 \
	"    (SELECT count(*) FROM capture_chunks k WHERE k.capture_id = h.capture_id"          \
	"     AND k.host_id = h.host_id) END,"                                                  \
	"   'total', coalesce(h.total_chunks, 0), 'sha256', coalesce(h.sha256, ''),"            \
	"   'held_from_ns', " NS("h.held_from") ", 'held_to_ns', " NS("h.held_to") ","          \
	"   'updated_ns', " NS("h.updated_at") ", 'completed_ns', " NS("h.completed_at") ")"    \
	"   ORDER BY h.role DESC, o.hostname, h.host_id)"                                      \
	"  FROM capture_hosts h LEFT JOIN hosts o ON o.host_id = h.host_id"                     \
	"  WHERE h.capture_id = c.capture_id), '[]'::json))"

/* $1 since (ns ago), $2 limit */
static const char list_sql[] =
	"SELECT json_build_object('captures', coalesce(json_agg(x.j ORDER BY x.requested_at DESC),"
	" '[]'::json))::text FROM (SELECT " CAPTURE_JSON " AS j, c.requested_at FROM captures c"
	" WHERE c.requested_at >= now() - $1::bigint / 1000 * interval '1 microsecond'"
	" ORDER BY c.requested_at DESC LIMIT $2::int) x";

/* $1 capture id: (status, body) */
static const char one_sql[] =
	"SELECT CASE WHEN count(*) = 0 THEN 404 ELSE 200 END,"
	" coalesce(min(x.j::text), json_build_object('error', format('no capture \"%s\"', $1::text))::text)"
	" FROM (SELECT " CAPTURE_JSON " AS j FROM captures c WHERE c.capture_id = $1::uuid) x";

/* $1 capture id, $2 host ("" for the only complete one): (status, payload or error) */
static const char data_sql[] =
	"WITH m AS (SELECT h.host_id, h.status, h.payload, o.hostname FROM capture_hosts h"
	"  LEFT JOIN hosts o ON o.host_id = h.host_id WHERE h.capture_id = $1::uuid"
	"  AND ($2 = '' OR h.host_id::text = lower($2) OR o.hostname = $2"
	"   OR (length($2) >= 4 AND starts_with(h.host_id::text, lower($2)))))"
	" SELECT CASE WHEN (SELECT count(*) FROM m) = 0 THEN 404"
	"  WHEN (SELECT count(*) FROM m WHERE status = 'complete') = 0 THEN 409"
	"  WHEN $2 = '' AND (SELECT count(*) FROM m WHERE status = 'complete') > 1 THEN 409"
	"  ELSE 200 END,"
	" (SELECT payload FROM m WHERE status = 'complete' ORDER BY hostname LIMIT 1),"
	" (SELECT string_agg(coalesce(hostname, host_id::text) || ' (' || status || ')', ', ') FROM m)";

static void list_cb(struct agg_http_req *req, void *arg)
{
	struct agg_capture *cap = arg;
	int64_t since;
	int limit;
	char since_s[24], limit_s[12];
	const char *params[2] = { since_s, limit_s };

	if (agg_query_param_duration(req, "since", 86400 * SH_NS_PER_SEC,
				     366LL * 86400 * SH_NS_PER_SEC, &since) < 0 ||
	    agg_query_param_limit(req, 100, 10000, &limit) < 0)
		return;
	snprintf(since_s, sizeof(since_s), "%" PRId64, since);
	snprintf(limit_s, sizeof(limit_s), "%d", limit);
	agg_query_run_json(cap->db, req, list_sql, 2, params);
}

/* id_param reads a capture id parameter; NULL after answering 400. */
static const char *id_param(struct agg_http_req *req)
{
	const char *id = agg_http_req_param(req, "id");

	if (!id || !agg_is_uuid(id)) {
		agg_http_respond_error(req, 400, "missing or bad parameter \"id\" (a capture id, a UUID)");
		return NULL;
	}
	return id;
}

static void one_cb(struct agg_http_req *req, void *arg)
{
	struct agg_capture *cap = arg;
	const char *id = id_param(req);

	if (id)
		agg_query_run_json(cap->db, req, one_sql, 1, &id);
}

static void data_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			 void *arg)
{
	struct agg_http_req *req = arg;
	unsigned char *bytes;
	size_t len = 0;
	int code;

	(void)db;
	if (status < 0) {
		agg_http_respond_error(req, status == -ECONNRESET ? 503 : 500,
				       "database query failed: %s", errmsg);
		return;
	}
	if (!res || PQntuples(res) != 1 || PQnfields(res) != 3) {
		agg_http_respond_error(req, 500, "database query returned an unexpected result");
		return;
	}
	code = atoi(PQgetvalue(res, 0, 0));
	if (code == 404) {
		agg_http_respond_error(req, 404, "no such capture, or no such host in it");
		return;
	}
	if (code != 200) {
		agg_http_respond_error(req, 409,
				       "no single complete recording to send (hosts: %s); name one with host=",
				       PQgetvalue(res, 0, 2));
		return;
	}
	bytes = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 1), &len);
	if (!bytes) {
		agg_http_respond_error(req, 500, "out of memory");
		return;
	}
	agg_http_respond(req, 200, "application/zstd", bytes, len);
	PQfreemem(bytes);
}

static void data_cb(struct agg_http_req *req, void *arg)
{
	struct agg_capture *cap = arg;
	const char *id = id_param(req), *host = agg_http_req_param(req, "host");
	const char *params[2];

	if (!id)
		return;
	params[0] = id;
	params[1] = host ? host : "";
	if (strlen(params[1]) > 255) {
		agg_http_respond_error(req, 400, "parameter \"host\" is too long");
		return;
	}
	if (!agg_db_ready(cap->db) ||
	    agg_db_query(cap->db, data_sql, 2, params, data_done_cb, req) < 0)
		agg_http_respond_error(req, 503, "database unavailable");
}

static void new_cb(struct agg_http_req *req, void *arg)
{
	struct agg_capture *cap = arg;
	const char *host = agg_http_req_param(req, "host"), *label = agg_http_req_param(req, "label");
	const char *kernel = agg_http_req_param(req, "kernel"), *all = agg_http_req_param(req, "all");
	const char *kind, *value, *mb;
	int64_t at, before, after, max_bytes = 0;
	int given = (host != NULL) + (label != NULL) + (kernel != NULL) + (all != NULL);

	if (given != 1) {
		agg_http_respond_error(req, 400,
				       "say which hosts: exactly one of host=H, label=k=v, kernel=R or all=1");
		return;
	}
	kind = host ? "host" : label ? "label" : kernel ? "kernel" : "all";
	value = host ? host : label ? label : kernel ? kernel : "";
	if (strlen(value) > 255 || (label && !strchr(label, '='))) {
		agg_http_respond_error(req, 400, "bad %s \"%.64s\"", kind, value);
		return;
	}
	if (agg_query_param_time(req, "at", sh_now_wall_ns(), &at) < 0 ||
	    agg_query_param_duration(req, "before", cap->opts.before_ns, 600 * SH_NS_PER_SEC,
				     &before) < 0 ||
	    agg_query_param_duration(req, "after", cap->opts.after_ns, 600 * SH_NS_PER_SEC,
				     &after) < 0)
		return;
	if ((mb = agg_http_req_param(req, "max_bytes")) != NULL) {
		char *end;

		errno = 0;
		max_bytes = strtoll(mb, &end, 10);
		if (errno || end == mb || *end || max_bytes < 1024) {
			agg_http_respond_error(req, 400,
					       "bad max_bytes \"%.32s\": expected a number of bytes, at least 1024",
					       mb);
			return;
		}
	}
	if (before + after == 0 || before + after > 600 * SH_NS_PER_SEC) {
		agg_http_respond_error(req, 400, "the window (before + after) must be 1 ns to 10 minutes");
		return;
	}
	if (create(cap, kind, value, "requested", 0, "manual", 0, at - before, at + after,
		   (uint64_t)max_bytes, req) < 0)
		agg_http_respond_error(req, 503, "could not queue the request");
}

int agg_capture_register(struct agg_capture *cap, struct agg_http *http)
{
	static const struct {
		const char *path;
		agg_http_route_cb cb;
	} routes[] = {
		{ "/api/captures", list_cb },
		{ "/api/capture", one_cb },
		{ "/api/capture/data", data_cb },
		{ "/api/capture/new", new_cb },
	};
	int rv;

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if ((rv = agg_http_route(http, "GET", routes[i].path, routes[i].cb, cap)) < 0)
			return rv;
	return 0;
}

/* --- lifecycle --- */

int agg_capture_start(uv_loop_t *loop, const struct agg_capture_opts *o, struct agg_control *ctl,
		      struct agg_capture **out)
{
	struct agg_capture *cap = calloc(1, sizeof(*cap));

	if (!cap)
		return -ENOMEM;
	cap->loop = loop;
	cap->opts = *o;
	cap->opts.dsn = NULL;
	cap->ctl = ctl;
#define DEF(f, v)                  \
	if (cap->opts.f == 0)      \
		cap->opts.f = (v);
	DEF(before_ns, 30 * SH_NS_PER_SEC);
	DEF(after_ns, 5 * SH_NS_PER_SEC);
	DEF(expiry_ns, 300 * SH_NS_PER_SEC);
	DEF(max_bytes, 64u << 20);
	DEF(auto_min_duration_ns, 100 * SH_NS_PER_MS);
	DEF(auto_healthy, 3);
	DEF(auto_host_interval_ns, 600 * SH_NS_PER_SEC);
	DEF(auto_max_per_hour, 30);
	DEF(recorder_span_ns, 110 * SH_NS_PER_SEC);
	DEF(retention_days, 14);
#undef DEF
	/* negative: none (0 picked the default above) */
	if (cap->opts.auto_healthy < 0)
		cap->opts.auto_healthy = 0;
	if (cap->opts.auto_max_per_hour < 0)
		cap->opts.auto_max_per_hour = 0;
	if (cap->opts.auto_host_interval_ns < 0)
		cap->opts.auto_host_interval_ns = 0;
	cap->event_cursor_ns = sh_now_wall_ns() - 5 * SH_NS_PER_SEC;
	cap->hour_start_ns = sh_now_wall_ns();
	cap->db = agg_db_new(loop, o->dsn, "spikehound-capture");
	if (!cap->db) {
		free(cap);
		return -ENOMEM;
	}
	cap->incident_cursor = 0;
	uv_timer_init(loop, &cap->tick);
	cap->tick.data = cap;
	uv_timer_start(&cap->tick, tick_cb, TICK_MS, TICK_MS);
	*out = cap;
	return 0;
}

static void tick_closed_cb(uv_handle_t *h)
{
	struct agg_capture *cap = h->data;
	struct host_seen *s, *tmp;
	void (*done)(void *) = cap->done_cb;
	void *arg = cap->done_arg;

	HASH_ITER(hh, cap->seen, s, tmp) {
		HASH_DEL(cap->seen, s);
		free(s);
	}
	free(cap);
	if (done)
		done(arg);
}

void agg_capture_stop(struct agg_capture *cap, void (*done_cb)(void *arg), void *arg)
{
	cap->done_cb = done_cb;
	cap->done_arg = arg;
	uv_timer_stop(&cap->tick);
	agg_db_close(cap->db);
	cap->db = NULL;
	uv_close((uv_handle_t *)&cap->tick, tick_closed_cb);
}

char *agg_capture_stats_json(struct agg_capture *cap)
{
	char *out = malloc(600);

	if (!out)
		return NULL;
	snprintf(out, 600,
		 "{\"requested\":%" PRIu64 ",\"auto_spike\":%" PRIu64 ",\"auto_incident\":%" PRIu64
		 ",\"auto_skipped_rate\":%" PRIu64 ",\"statuses\":%" PRIu64 ",\"expired\":%" PRIu64
		 ",\"commands_pushed\":%" PRIu64 ",\"db_errors\":%" PRIu64
		 ",\"failed_chunks_dropped\":%" PRIu64 ",\"hosts_complete\":%" PRIu64
		 ",\"hosts_failed\":%" PRIu64 ",\"hosts_corrupt\":%" PRIu64 "}",
		 cap->requested, cap->auto_spike, cap->auto_incident, cap->auto_skipped_rate,
		 cap->statuses, cap->expired, cap->commands_pushed, cap->db_errors,
		 cap->chunks_dropped, cap->hosts_complete, cap->hosts_failed, cap->hosts_corrupt);
	return out;
}
