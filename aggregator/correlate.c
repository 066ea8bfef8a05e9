/* correlate.c: the correlator (correlate.h; the algorithm and the suspect
 * score are described in aggregator/README.md).
 *
 * A cycle is a chain of database steps, each submitted from the callback
 * of the one before (nothing waits on the loop):
 *   lock      pg_try_advisory_lock, once per connection
 *   claim     the oldest `batch` rows of correlate_queue
 *   known     open periodic/recurring incidents of the claimed kinds, the
 *             largest clock skew, how many hosts are active
 *   rates     for each claimed kind whose baseline is stale: every host's
 *             count of that kind over the lookback; here: the robust
 *             baseline and the hosts far above it (recurring)
 *   context   the events near the claimed ones: the same kind within a
 *             margin (bursts) and the members of bursts they touch, the
 *             same host and kind within the lookback (periods)
 *   apply     what was decided here (periodic trains, then bursts, then
 *             recurring), in one transaction with the queue rows' removal
 *   suspects  up to SUSPECTS_PER_CYCLE incidents whose membership changed:
 *             features counted in SQL, Fisher's test and ranking here
 * Decisions only move an event up in priority (periodic > burst >
 * recurring) or merge bursts; the apply transaction dissolves incidents left
 * too small.
 */
#include "correlate.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "copybuf.h"
#include "db.h"
#include "log.h"
#include "stats.h"
#include "timeutil.h"

#define LOCK_KEY "7526752163571428468" /* "hcorrelt" as a bigint */
#define RATE_REFRESH_NS (60 * SH_NS_PER_SEC)  /* recount a kind at least this often */
#define RATE_DRIFT_NS (600 * SH_NS_PER_SEC)   /* or when event time moved this far */
#define MAX_GRID_WINDOWS 8                    /* older windows of a backfill per kind and cycle */
#define CONTEXT_PAD_NS (30 * SH_NS_PER_SEC)   /* burst context beyond gap and skew */
#define MAX_SKEW_NS (600 * SH_NS_PER_SEC)     /* larger skew estimates are not trusted */
#define OCCURRENCE_NS SH_NS_PER_SEC           /* events of one host this close: one occurrence */
#define SINGLE_HOST_LOG10_CHANCE (-6.0)       /* a periodic incident of one host needs more */
#define SINGLE_HOST_OCCURRENCES 6
#define MAX_PENDING_TRAINS 10000
#define SUSPECTS_PER_CYCLE 4
#define SUSPECTS_TOP 10
#define SUSPECT_HOSTS_MAX 1000
#define SUSPECT_EVENTS_MAX 500
#define ORDINARY_WINDOWS 10
#define EVIDENCE_WEIGHT 3.0
#define ERROR_LOG_NS (60 * SH_NS_PER_SEC)
#define NSTEPS 5

/* TS turns a text parameter or column holding Unix ns into a timestamptz;
 * NS turns a timestamptz into Unix ns (PostgreSQL keeps microseconds). */
#define TS(p) "(timestamptz 'epoch' + (" p "::bigint / 1000) * interval '1 microsecond')"
#define NS(c) "(extract(epoch FROM " c ") * 1000000000)::bigint"
#define LOOKBACK(p) "(" p "::bigint * interval '1 microsecond')"

/* The session: no JIT (compiling these statements costs more than running
 * them), room to sort a backfill's batch in memory, and the staging tables
 * of the apply transaction. */
static const char setup_sql[] =
	"SET jit = off; SET work_mem = '64MB';"
	"CREATE TEMP TABLE IF NOT EXISTS cs_newinc (ref bigint, kind text, type text,"
	" period_s float8, jitter_s float8) ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS cs_assign (host_id uuid, boot_id uuid, seq bigint,"
	" ts timestamptz, ref bigint) ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS cs_hostper (ref bigint, host_id uuid, period_s float8,"
	" jitter_s float8) ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS cs_recur (kind text, host_id uuid, from_ts timestamptz,"
	" to_ts timestamptz, ref bigint, release_id bigint) ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS cs_done (qid bigint) ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS cs_map (ref bigint, incident_id bigint) ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS cs_touched (incident_id bigint, host_id uuid)"
	" ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS cs_hagg (incident_id bigint, host_id uuid, events bigint,"
	" first_ts timestamptz, last_ts timestamptz) ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS cs_dead (incident_id bigint) ON COMMIT DELETE ROWS;";

static const char *const copy_sql[NSTEPS] = {
	"COPY cs_newinc FROM STDIN",
	"COPY cs_assign FROM STDIN",
	"COPY cs_hostper FROM STDIN",
	"COPY cs_recur FROM STDIN",
	"COPY cs_done FROM STDIN",
};

/* final_fmt is the apply transaction after the COPYs; %d is min_hosts.
 * New incidents get their ids, memberships move, recurring hosts are
 * released or take their free events, then every touched (incident, host)
 * is recounted, incidents recomputed, the too small dissolved. */
static const char final_fmt[] =
	"ANALYZE cs_assign; ANALYZE cs_recur; ANALYZE cs_done;"
	"INSERT INTO cs_map SELECT ref, nextval(pg_get_serial_sequence('incidents', 'incident_id'))"
	" FROM cs_newinc;"
	"INSERT INTO incidents (incident_id, kind, type, first_ts, last_ts, period_s, period_jitter_s)"
	" SELECT m.incident_id, n.kind, n.type, now(), now(), n.period_s, n.jitter_s"
	" FROM cs_newinc n JOIN cs_map m USING (ref);"
	"INSERT INTO cs_touched SELECT e.incident_id, e.host_id FROM cs_assign a JOIN spike_events e"
	" ON e.host_id = a.host_id AND e.ts = a.ts AND e.boot_id = a.boot_id AND e.seq = a.seq"
	" WHERE e.incident_id IS NOT NULL;"
	"UPDATE spike_events e SET incident_id = coalesce(m.incident_id, a.ref)"
	" FROM cs_assign a LEFT JOIN cs_map m ON m.ref = a.ref"
	" WHERE e.host_id = a.host_id AND e.ts = a.ts AND e.boot_id = a.boot_id AND e.seq = a.seq;"
	"INSERT INTO cs_touched SELECT DISTINCT coalesce(m.incident_id, a.ref), a.host_id"
	" FROM cs_assign a LEFT JOIN cs_map m ON m.ref = a.ref;"
	"INSERT INTO cs_touched SELECT DISTINCT release_id, host_id FROM cs_recur WHERE release_id > 0;"
	"UPDATE spike_events e SET incident_id = NULL FROM cs_recur r"
	" WHERE r.release_id > 0 AND e.incident_id = r.release_id AND e.host_id = r.host_id"
	" AND e.ts > r.from_ts AND e.ts <= r.to_ts;"
	"UPDATE spike_events e SET incident_id = coalesce(m.incident_id, r.ref)"
	" FROM cs_recur r LEFT JOIN cs_map m ON m.ref = r.ref"
	" WHERE r.ref <> 0 AND e.host_id = r.host_id AND e.kind = r.kind"
	" AND e.ts > r.from_ts AND e.ts <= r.to_ts AND e.incident_id IS NULL;"
	"INSERT INTO cs_touched SELECT DISTINCT coalesce(m.incident_id, r.ref), r.host_id"
	" FROM cs_recur r LEFT JOIN cs_map m ON m.ref = r.ref WHERE r.ref <> 0;"
	"ANALYZE cs_touched;"
	"INSERT INTO cs_hagg SELECT t.incident_id, t.host_id, count(e.ts), min(e.ts), max(e.ts)"
	" FROM (SELECT DISTINCT incident_id, host_id FROM cs_touched) t"
	" LEFT JOIN spike_events e ON e.incident_id = t.incident_id AND e.host_id = t.host_id"
	" GROUP BY 1, 2;"
	"DELETE FROM incident_hosts h USING cs_hagg a"
	" WHERE h.incident_id = a.incident_id AND h.host_id = a.host_id AND a.events = 0;"
	"INSERT INTO incident_hosts AS h (incident_id, host_id, events, first_ts, last_ts)"
	" SELECT incident_id, host_id, events, first_ts, last_ts FROM cs_hagg WHERE events > 0"
	" ON CONFLICT (incident_id, host_id) DO UPDATE SET events = EXCLUDED.events,"
	" first_ts = EXCLUDED.first_ts, last_ts = EXCLUDED.last_ts;"
	"UPDATE incident_hosts h SET period_s = p.period_s, period_jitter_s = p.jitter_s"
	" FROM cs_hostper p LEFT JOIN cs_map m ON m.ref = p.ref"
	" WHERE h.incident_id = coalesce(m.incident_id, p.ref) AND h.host_id = p.host_id;"
	"UPDATE incidents i SET hosts = x.hosts, events = x.events,"
	" first_ts = coalesce(x.first_ts, i.first_ts), last_ts = coalesce(x.last_ts, i.last_ts),"
	" period_s = CASE WHEN i.type = 'periodic' THEN coalesce(x.period_s, i.period_s) END,"
	" period_jitter_s = CASE WHEN i.type = 'periodic' THEN coalesce(x.jitter_s, i.period_jitter_s) END,"
	" updated_at = now()"
	" FROM (SELECT t.incident_id, count(h.host_id) AS hosts, coalesce(sum(h.events), 0) AS events,"
	"  min(h.first_ts) AS first_ts, max(h.last_ts) AS last_ts, avg(h.period_s) AS period_s,"
	"  sqrt(avg(h.period_jitter_s ^ 2) + coalesce(var_pop(h.period_s), 0)) AS jitter_s"
	"  FROM (SELECT DISTINCT incident_id FROM cs_touched) t"
	"  LEFT JOIN incident_hosts h ON h.incident_id = t.incident_id GROUP BY 1) x"
	" WHERE i.incident_id = x.incident_id;"
	"INSERT INTO cs_dead SELECT i.incident_id FROM incidents i"
	" WHERE i.incident_id IN (SELECT incident_id FROM cs_touched)"
	" AND (i.events = 0 OR (i.type = 'burst' AND i.hosts < %d)"
	" OR (i.type = 'recurring' AND i.hosts < 2));"
	"UPDATE spike_events e SET incident_id = NULL FROM incident_hosts h JOIN cs_dead d USING (incident_id)"
	" WHERE e.incident_id = h.incident_id AND e.host_id = h.host_id"
	" AND e.ts >= h.first_ts AND e.ts <= h.last_ts;"
	"DELETE FROM incident_hosts WHERE incident_id IN (SELECT incident_id FROM cs_dead);"
	"DELETE FROM incident_suspects WHERE incident_id IN (SELECT incident_id FROM cs_dead);"
	"DELETE FROM incidents WHERE incident_id IN (SELECT incident_id FROM cs_dead);"
	"DELETE FROM correlate_queue WHERE qid BETWEEN (SELECT min(qid) FROM cs_done)"
	" AND (SELECT max(qid) FROM cs_done) AND qid IN (SELECT qid FROM cs_done);"
	"COMMIT;";

static const char lock_sql[] = "SELECT pg_try_advisory_lock(" LOCK_KEY ")";

static const char claim_sql[] =
	"SELECT qid, host_id::text, boot_id::text, seq, " NS("ts") ", kind"
	" FROM correlate_queue ORDER BY qid LIMIT $1::int";

/* $1 kinds, $2 earliest claimed event (ns), $3 lookback (us), $4 newest
 * event seen (ns). The first row is "meta": largest |skew| (ms), hosts
 * active within the lookback, incidents open. */
static const char known_sql[] =
	"SELECT 0::bigint, ''::text, 'meta'::text,"
	" (SELECT coalesce(max(abs(clock_skew_ms)), 0) FROM hosts)::float8,"
	" (SELECT count(*) FROM hosts WHERE last_seen >= " TS("$2") " - " LOOKBACK("$3") ")::bigint,"
	" (SELECT count(*) FROM incidents WHERE last_ts >= " TS("$4") " - " LOOKBACK("$3") ")::bigint"
	" UNION ALL"
	" SELECT incident_id, kind, type, coalesce(period_s, 0), " NS("first_ts") ", " NS("last_ts")
	" FROM incidents WHERE type <> 'burst' AND kind = ANY($1::text[])"
	" AND last_ts >= " TS("$2") " - 2 * " LOOKBACK("$3");

/* $1 kinds, $2 window ends (ns), $3 lookback (us): per kind and host, the
 * events in the window not in a burst or periodic incident, the recurring
 * incident holding some of them, and the events in periodic incidents. */
static const char rates_sql[] =
	"SELECT k.kind, e.host_id::text,"
	" count(*) FILTER (WHERE i.type IS NULL OR i.type = 'recurring'),"
	" coalesce(max(e.incident_id) FILTER (WHERE i.type = 'recurring'), 0),"
	" count(*) FILTER (WHERE i.type = 'periodic'), k.end_ns, " NS("min(e.ts)")
	" FROM unnest($1::text[], $2::bigint[]) AS k(kind, end_ns)"
	" JOIN spike_events e ON e.kind = k.kind"
	"  AND e.ts > " TS("k.end_ns") " - " LOOKBACK("$3") " AND e.ts <= " TS("k.end_ns")
	" LEFT JOIN incidents i ON i.incident_id = e.incident_id"
	" GROUP BY k.kind, k.end_ns, e.host_id";

/* $1..$3 burst ranges (kind, from ns, to ns), $4..$7 series ranges (host,
 * kind, from ns, to ns). part 1: burst context, 2: series. */
static const char context_sql[] =
	"WITH br AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS r(kind, f, t)),"
	" sr AS (SELECT * FROM unnest($4::uuid[], $5::text[], $6::bigint[], $7::bigint[])"
	"  AS r(host_id, kind, f, t)),"
	/* LATERAL ... OFFSET 0: one index scan per range (the subquery is not
	 * flattened into a join that could scan the whole table) */
	" b AS MATERIALIZED (SELECT e.* FROM br CROSS JOIN LATERAL"
	"  (SELECT e.host_id, e.boot_id, e.seq, e.ts, e.kind, e.incident_id FROM spike_events e"
	"   WHERE e.kind = br.kind AND e.ts >= " TS("br.f") " AND e.ts <= " TS("br.t") " OFFSET 0) e),"
	" bm AS (SELECT e.* FROM (SELECT DISTINCT b.incident_id FROM b JOIN incidents i"
	"   ON i.incident_id = b.incident_id WHERE i.type = 'burst') x CROSS JOIN LATERAL"
	"  (SELECT e.host_id, e.boot_id, e.seq, e.ts, e.kind, e.incident_id FROM spike_events e"
	"   WHERE e.incident_id = x.incident_id OFFSET 0) e),"
	" s AS (SELECT e.* FROM sr CROSS JOIN LATERAL"
	"  (SELECT e.host_id, e.boot_id, e.seq, e.ts, e.kind, e.incident_id FROM spike_events e"
	"   WHERE e.host_id = sr.host_id AND e.kind = sr.kind"
	"   AND e.ts >= " TS("sr.f") " AND e.ts <= " TS("sr.t") " OFFSET 0) e),"
	" u AS (SELECT *, 1 AS part FROM b UNION ALL SELECT *, 1 FROM bm UNION ALL SELECT *, 2 FROM s)"
	" SELECT u.host_id::text, u.boot_id::text, u.seq, " NS("u.ts") ", u.kind,"
	" coalesce(u.incident_id, 0), coalesce(i.type, ''), coalesce(h.clock_skew_ms, 0), bit_or(u.part)"
	" FROM u LEFT JOIN incidents i ON i.incident_id = u.incident_id"
	" LEFT JOIN hosts h ON h.host_id = u.host_id"
	" GROUP BY u.host_id, u.boot_id, u.seq, u.ts, u.kind, u.incident_id, i.type, h.clock_skew_ms";

/* $1 suspects interval (ms), $2 newest event time (ns), $3 lookback (us):
 * the incidents open (seen within the lookback of the newest event), and
 * an array of those whose suspects are missing or older than their last
 * change (and than the interval), SUSPECTS_PER_CYCLE + 1 at most. */
static const char pick_sql[] =
	"SELECT (SELECT count(*) FROM incidents WHERE last_ts >= " TS("$2") " - " LOOKBACK("$3") "),"
	" ARRAY(SELECT incident_id FROM incidents"
	"  WHERE suspects_at IS NULL OR (updated_at > suspects_at"
	"   AND suspects_at < now() - $1::bigint * interval '1 millisecond')"
	"  ORDER BY suspects_at NULLS FIRST, updated_at LIMIT 5)::text";

/* features_sql counts the features of incident $1: $2 spiking hosts at
 * most, $3 others at most, $4 window (s) at most, $5 spike windows at
 * most, $6 ordinary windows per spiking host. Rows: ('f', feature, with,
 * total, others with, others total, comm, example, basis) for features
 * more common among spiking hosts (windows) than others or whose process
 * is named in evidence, and ('e', comm, events naming it, events, 0, 0,
 * usual role, '', '') for the culprits named in the events' evidence. */
static const char features_sql[] =
	"WITH inc AS (SELECT incident_id,"
	"  greatest(first_ts, last_ts - $4::float8 * interval '1 second') AS from_ts"
	"  FROM incidents WHERE incident_id = $1::bigint),"
	" sp AS MATERIALIZED (SELECT h.host_id, greatest(h.first_ts, inc.from_ts) - interval '5 seconds' AS t0,"
	"  h.last_ts + interval '1 second' AS t1, b.boot_id"
	"  FROM inc JOIN incident_hosts h ON h.incident_id = inc.incident_id"
	"  CROSS JOIN LATERAL (SELECT e.boot_id FROM spike_events e WHERE e.incident_id = inc.incident_id"
	"   AND e.host_id = h.host_id ORDER BY e.ts DESC LIMIT 1) b"
	"  WHERE h.last_ts >= inc.from_ts ORDER BY h.events DESC, h.host_id LIMIT $2::int),"
	" win AS (SELECT min(t0) AS t0, max(t1) AS t1 FROM sp),"
	" ot AS MATERIALIZED (SELECT c.host_id, w.t0, w.t1, s.boot_id FROM win w"
	"  CROSS JOIN LATERAL (SELECT h.host_id FROM hosts h WHERE NOT EXISTS (SELECT 1 FROM incident_hosts x"
	"   WHERE x.incident_id = $1::bigint AND x.host_id = h.host_id)"
	"   ORDER BY md5(h.host_id::text || $1::text)) c"
	"  CROSS JOIN LATERAL (SELECT s.boot_id FROM summaries s WHERE s.host_id = c.host_id"
	"   AND s.ts_start <= w.t1 AND s.ts_start > w.t0 - interval '1 hour' AND s.ts_end >= w.t0"
	"   ORDER BY s.ts_start DESC LIMIT 1) s"
	"  LIMIT $3::int),"
	" hw AS (SELECT 's'::text AS grp, host_id, boot_id, t0, t1 FROM sp"
	"  UNION ALL SELECT 'o', host_id, boot_id, t0, t1 FROM ot),"
	" pr AS MATERIALIZED (SELECT DISTINCT hw.grp, hw.host_id, p.comm, p.cmdline FROM hw"
	"  JOIN processes p ON p.host_id = hw.host_id AND p.start_time <= hw.t1"
	"  AND (p.exit_time IS NULL OR p.exit_time >= hw.t0) WHERE p.comm <> ''),"
	" hf AS (SELECT grp, host_id, 'process:' || comm AS feature, comm, cmdline AS example FROM pr"
	"  UNION ALL SELECT grp, host_id, 'cmdline:' || sh_cmdline_norm(cmdline), comm, cmdline FROM pr"
	"   WHERE btrim(cmdline) <> ''"
	"  UNION ALL SELECT hw.grp, hw.host_id, 'kernel:' || b.kernel_release, '', b.kernel_release FROM hw"
	"   JOIN boots b ON b.host_id = hw.host_id AND b.boot_id = hw.boot_id WHERE b.kernel_release <> ''"
	"  UNION ALL SELECT hw.grp, hw.host_id, 'label:' || l.key || '=' || l.value, '', l.value FROM hw"
	"   JOIN hosts h ON h.host_id = hw.host_id CROSS JOIN LATERAL jsonb_each_text(CASE WHEN"
	"   jsonb_typeof(h.labels) = 'object' THEN h.labels ELSE '{}'::jsonb END) l),"
	" hc AS (SELECT feature, count(DISTINCT host_id) FILTER (WHERE grp = 's') AS sw,"
	"  count(DISTINCT host_id) FILTER (WHERE grp = 'o') AS ow,"
	"  mode() WITHIN GROUP (ORDER BY comm) AS comm,"
	"  coalesce(min(example) FILTER (WHERE grp = 's'), min(example)) AS example"
	"  FROM hf GROUP BY feature),"
	" ev AS MATERIALIZED (SELECT row_number() OVER () AS eid, e.host_id, e.ts, e.duration_ns, e.evidence"
	"  FROM inc JOIN spike_events e ON e.incident_id = inc.incident_id AND e.ts >= inc.from_ts"
	"  ORDER BY e.ts DESC LIMIT $5::int),"
	" sw AS MATERIALIZED (SELECT eid AS wid, host_id, ts - interval '5 seconds' AS t0,"
	"  ts + greatest(duration_ns, 0) / 1000 * interval '1 microsecond' AS t1 FROM ev),"
	" dur AS (SELECT coalesce(avg(t1 - t0), interval '5 seconds') AS d FROM sw),"
	" ow AS MATERIALIZED (SELECT row_number() OVER () AS wid, o.host_id, o.t - interval '5 seconds' AS t0,"
	"  o.t - interval '5 seconds' + dur.d AS t1"
	"  FROM dur, (SELECT sp.host_id, sp.t0 - interval '1 hour' + (k * 0.6180339887498949"
	"   - floor(k * 0.6180339887498949))::float8 * (sp.t1 - sp.t0 + interval '1 hour') AS t"
	"   FROM sp, generate_series(1, $6::int) k) o"
	"  WHERE NOT EXISTS (SELECT 1 FROM spike_events x WHERE x.host_id = o.host_id"
	"   AND x.ts >= o.t - interval '30 seconds' AND x.ts <= o.t + dur.d + interval '30 seconds')),"
	" st AS (SELECT 's'::text AS grp, w.wid, p.comm, p.cmdline FROM sw w JOIN processes p"
	"   ON p.host_id = w.host_id AND p.start_time >= w.t0 AND p.start_time <= w.t1"
	"  UNION ALL SELECT 'o', w.wid, p.comm, p.cmdline FROM ow w JOIN processes p"
	"   ON p.host_id = w.host_id AND p.start_time >= w.t0 AND p.start_time <= w.t1),"
	" sc AS (SELECT 'started:' || comm AS feature, count(DISTINCT wid) FILTER (WHERE grp = 's') AS sw,"
	"  count(DISTINCT wid) FILTER (WHERE grp = 'o') AS ow, comm,"
	"  coalesce(min(cmdline) FILTER (WHERE grp = 's'), min(cmdline)) AS example"
	"  FROM st WHERE comm <> '' GROUP BY comm),"
	" cu AS (SELECT c.value ->> 'comm' AS comm, count(DISTINCT ev.eid) AS n,"
	"  mode() WITHIN GROUP (ORDER BY c.value ->> 'role') AS role FROM ev"
	"  CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(ev.evidence -> 'culprits') = 'array'"
	"   THEN ev.evidence -> 'culprits' ELSE '[]'::jsonb END) c"
	"  WHERE jsonb_typeof(c.value) = 'object' AND coalesce(c.value ->> 'comm', '') <> '' GROUP BY 1),"
	" n AS (SELECT (SELECT count(*) FROM sp) AS nsp, (SELECT count(*) FROM ot) AS nos,"
	"  (SELECT count(*) FROM sw) AS nsw, (SELECT count(*) FROM ow) AS now_,"
	"  (SELECT count(*) FROM ev) AS nev)"
	" SELECT 'f', hc.feature, hc.sw, n.nsp, hc.ow, n.nos, coalesce(hc.comm, ''),"
	"  coalesce(hc.example, ''), 'hosts' FROM hc, n"
	"  WHERE hc.sw > 0 AND (hc.sw * n.nos > hc.ow * n.nsp OR hc.comm IN (SELECT comm FROM cu))"
	" UNION ALL SELECT 'f', sc.feature, sc.sw, n.nsw, sc.ow, n.now_, sc.comm, coalesce(sc.example, ''),"
	"  'windows' FROM sc, n"
	"  WHERE sc.sw > 0 AND (sc.sw * n.now_ > sc.ow * n.nsw OR sc.comm IN (SELECT comm FROM cu))"
	" UNION ALL SELECT 'e', cu.comm, cu.n, n.nev, 0, 0, coalesce(cu.role, ''), '', '' FROM cu, n"
	" UNION ALL SELECT 'n', '', n.nev, 0, 0, 0, '', '', '' FROM n";

/* $1 incident, $2.. the ranked suspects as parallel arrays. */
static const char suspects_sql[] =
	"WITH s AS (SELECT * FROM unnest($2::int[], $3::text[], $4::text[], $5::int[], $6::int[],"
	"  $7::int[], $8::int[], $9::float8[], $10::float8[], $11::float8[], $12::int[], $13::int[],"
	"  $14::text[], $15::text[]) AS s(rank, feature, basis, sw, st, ow, ot, p, lp, score, ev, evt,"
	"  role, example)),"
	" up AS (INSERT INTO incident_suspects AS x (incident_id, rank, feature, basis, spiking_with,"
	"  spiking_total, others_with, others_total, p_value, log10_p, score, evidence_events,"
	"  evidence_total, evidence_role, example)"
	"  SELECT $1::bigint, rank, feature, basis, sw, st, ow, ot, p, lp, score, ev, evt, role, example"
	"  FROM s WHERE EXISTS (SELECT 1 FROM incidents WHERE incident_id = $1::bigint)"
	"  ON CONFLICT (incident_id, rank) DO UPDATE SET feature = EXCLUDED.feature,"
	"  basis = EXCLUDED.basis, spiking_with = EXCLUDED.spiking_with,"
	"  spiking_total = EXCLUDED.spiking_total, others_with = EXCLUDED.others_with,"
	"  others_total = EXCLUDED.others_total, p_value = EXCLUDED.p_value,"
	"  log10_p = EXCLUDED.log10_p, score = EXCLUDED.score,"
	"  evidence_events = EXCLUDED.evidence_events, evidence_total = EXCLUDED.evidence_total,"
	"  evidence_role = EXCLUDED.evidence_role, example = EXCLUDED.example RETURNING 1),"
	" del AS (DELETE FROM incident_suspects WHERE incident_id = $1::bigint"
	"  AND rank > (SELECT count(*) FROM s) RETURNING 1)"
	" UPDATE incidents SET suspects_at = now() WHERE incident_id = $1::bigint";

/* --- small containers --- */

static int reserve(void **p, size_t *cap, size_t need, size_t size)
{
	size_t c = *cap ? *cap : 16;
	void *q;

	if (need <= *cap)
		return 0;
	while (c < need)
		c *= 2;
	q = realloc(*p, c * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = c;
	return 0;
}
#define RESERVE(arr, cap, need) reserve((void **)&(arr), &(cap), (need), sizeof(*(arr)))

/* struct names interns strings (host ids, kinds) as small indexes. */
struct name {
	char *s;
	int idx;
	UT_hash_handle hh;
};

struct names {
	struct name *hash;
	char **v;
	size_t n, cap;
};

static int names_get(struct names *t, const char *s)
{
	struct name *e;

	HASH_FIND_STR(t->hash, s, e);
	if (e)
		return e->idx;
	if (RESERVE(t->v, t->cap, t->n + 1) != 0 || !(e = calloc(1, sizeof(*e))))
		return -ENOMEM;
	if (!(e->s = strdup(s))) {
		free(e);
		return -ENOMEM;
	}
	e->idx = (int)t->n;
	t->v[t->n++] = e->s;
	HASH_ADD_KEYPTR(hh, t->hash, e->s, strlen(e->s), e);
	return e->idx;
}

static int names_find(const struct names *t, const char *s)
{
	struct name *e;

	HASH_FIND_STR(t->hash, s, e);
	return e ? e->idx : -1;
}

static void names_free(struct names *t)
{
	struct name *e, *tmp;

	HASH_ITER(hh, t->hash, e, tmp)
	{
		HASH_DEL(t->hash, e);
		free(e->s);
		free(e);
	}
	free(t->v);
	memset(t, 0, sizeof(*t));
}

/* struct arr builds an array literal parameter ("{...}"). */
struct arr {
	struct agg_copybuf b;
	bool open;
};

static void arr_sep(struct arr *a)
{
	if (!a->open) {
		agg_copybuf_raw(&a->b, "{", 1);
		a->open = true;
	} else {
		agg_copybuf_raw(&a->b, ",", 1);
	}
}

static void arr_str(struct arr *a, const char *s)
{
	arr_sep(a);
	agg_copybuf_raw(&a->b, "\"", 1);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			agg_copybuf_raw(&a->b, "\\", 1);
		agg_copybuf_raw(&a->b, s, 1);
	}
	agg_copybuf_raw(&a->b, "\"", 1);
}

static void arr_i64(struct arr *a, int64_t v)
{
	char t[24];
	int n = snprintf(t, sizeof(t), "%" PRId64, v);

	arr_sep(a);
	agg_copybuf_raw(&a->b, t, (size_t)n);
}

static void arr_f64(struct arr *a, double v)
{
	char t[40];
	int n = snprintf(t, sizeof(t), "%.17g", isfinite(v) ? v : 0);

	arr_sep(a);
	agg_copybuf_raw(&a->b, t, (size_t)n);
}

/* arr_text ends the literal and returns it (NUL-terminated, owned by a),
 * or NULL when an allocation failed. */
static const char *arr_text(struct arr *a)
{
	if (!a->open)
		agg_copybuf_raw(&a->b, "{", 1);
	agg_copybuf_raw(&a->b, "}", 2); /* with the NUL */
	return a->b.oom ? NULL : a->b.data;
}

/* arr_params ends the n literals of a into params[0..n-1] (owned by a);
 * returns false when an allocation failed. */
static bool arr_params(struct arr *a, size_t n, const char **params)
{
	bool ok = true;

	for (size_t i = 0; i < n; i++)
		if (!(params[i] = arr_text(&a[i])))
			ok = false;
	return ok;
}

/* arr_fini frees the n literals of a. */
static void arr_fini(struct arr *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		agg_copybuf_fini(&a[i].b);
}

/* --- state --- */

/* struct krate is the cached baseline of one kind. */
struct krate {
	char *kind;
	int64_t end_ns;      /* the window (end - lookback, end] it describes */
	int64_t computed_ns; /* wall clock */
	double rate_per_s;   /* fleet events per second from hosts at baseline */
	double all_per_s;    /* fleet events per second, every host (bursts' chance) */
	char **flagged;      /* hosts far above it, sorted */
	size_t nflagged;
	UT_hash_handle hh;
};

/* struct ptrain is a periodic train seen on one host, waiting for a second
 * host with the same kind and period. */
struct ptrain {
	char host[40];
	char *kind;
	double period_s;
	int64_t ts; /* its last occurrence (event time) */
};

/* struct revisit: a (host, kind) series to read again in the next cycle. */
struct revisit {
	char host[40];
	char *kind;
	int64_t ts;
};

struct qev { /* a claimed queue row */
	int64_t qid, seq, ts;
	int host, kind;
	char boot[40];
};

struct cev { /* an event of the context */
	int64_t seq, ts, tc; /* tc: corrected for the host's clock skew */
	int64_t cur;         /* its incident now, 0: none */
	int64_t target;      /* decided here: > 0 incident, < 0 new (ref), 0 unchanged */
	int host, kind, parts;
	char cur_type, target_type; /* 'b', 'p', 'r' or 0 */
	bool is_new;
	char boot[40];
};

struct kinc { /* a known open periodic or recurring incident */
	int64_t id, first, last;
	int kind;
	char type;
	double period_s;
};

struct newinc {
	int64_t ref;
	int kind;
	char type;
	double period_s, jitter_s;
};

struct hostper {
	int64_t ref;
	int host;
	double period_s, jitter_s;
};

struct recur {
	int kind, host;
	int64_t from, to, ref, release_id;
};

struct rrow { /* one host's count of a kind over the lookback ending at end */
	int kind, host;
	int64_t count, periodic, cur, end;
	int64_t first; /* its earliest event in the window */
};

/* struct gwin remembers when an older window of a kind was last judged. */
struct gwin {
	char key[96]; /* kind, '/', end ns */
	int64_t computed_ns;
	UT_hash_handle hh;
};

struct hk {
	int host, kind;
};

struct cycle {
	int64_t started_ns;
	struct agg_correlate_cycle info;
	struct names hosts, kinds;
	struct qev *q;
	size_t nq;
	struct cev *ev;
	size_t nev;
	struct kinc *known;
	size_t nknown, capknown;
	struct newinc *ni;
	size_t nni, capni;
	struct hostper *hp;
	size_t nhp, caphp;
	struct recur *rc;
	size_t nrc, caprc;
	char **stale; /* (kind, window end) judged this cycle */
	int64_t *stale_end;
	bool *stale_latest; /* the kind's latest window: sets its cached rate */
	size_t nstale;
	struct rrow *rr; /* their per-host counts */
	size_t nrr, caprr;
	struct hk *trains; /* (host, kind) series with a period this cycle */
	size_t ntrains, captrains;
	double max_skew_ms;
	int64_t hosts_active;
	int64_t next_ref;
	int64_t min_ts;
	struct agg_copybuf buf[NSTEPS];
	struct agg_db_copy steps[NSTEPS];
	int64_t *pick; /* incidents whose suspects are ranked this cycle */
	size_t npick, ipick;
};

struct agg_correlate {
	uv_loop_t *loop;
	struct agg_correlate_opts o;
	char *dsn;
	struct agg_db *db;
	uv_timer_t timer;
	char *final_sql;
	struct cycle *cy;
	struct krate *rates;
	struct gwin *gwins;
	struct ptrain *pend;
	size_t npend, cappend;
	struct revisit *rev;
	size_t nrev, caprev;
	bool have_lock, lock_logged, running, kicked, stopping;
	void (*done_cb)(void *);
	void *done_arg;
	int64_t newest_ns;
	/* counters */
	uint64_t cycles, events, created, ranked, errors;
	int64_t incidents_open;
	double last_ms;
	bool behind;
	int64_t last_err_log_ns;
};

static void step_claim(struct agg_correlate *c);
static void step_known(struct agg_correlate *c);
static void step_rates(struct agg_correlate *c);
static void step_context(struct agg_correlate *c);
static void step_pick(struct agg_correlate *c);
static void step_features(struct agg_correlate *c);
static void context_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			    void *arg);

void agg_correlate_opts_default(struct agg_correlate_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->interval_ns = 5 * SH_NS_PER_SEC;
	o->gap_ns = 2 * SH_NS_PER_SEC;
	o->min_hosts = 3;
	o->lookback_ns = 6 * 3600 * SH_NS_PER_SEC;
	o->burst_p = 1e-4;
	o->recurring_p = 1e-6;
	o->periodic_p = 1e-3;
	o->min_events = 4;
	o->batch = 20000;
	o->suspects_interval_ns = 30 * SH_NS_PER_SEC;
	o->others_max = 1000;
}

static void cycle_free(struct cycle *cy)
{
	if (!cy)
		return;
	names_free(&cy->hosts);
	names_free(&cy->kinds);
	free(cy->q);
	free(cy->ev);
	free(cy->known);
	free(cy->ni);
	free(cy->hp);
	free(cy->rc);
	for (size_t i = 0; i < cy->nstale; i++)
		free(cy->stale[i]);
	free(cy->stale);
	free(cy->stale_end);
	free(cy->stale_latest);
	free(cy->rr);
	free(cy->trains);
	for (int i = 0; i < NSTEPS; i++)
		agg_copybuf_fini(&cy->buf[i]);
	free(cy->pick);
	free(cy);
}

static void krate_free(struct krate *k)
{
	for (size_t i = 0; i < k->nflagged; i++)
		free(k->flagged[i]);
	free(k->flagged);
	free(k->kind);
	free(k);
}

static void timer_closed_cb(uv_handle_t *h)
{
	struct agg_correlate *c = h->data;
	void (*done)(void *) = c->done_cb;
	void *arg = c->done_arg;
	struct krate *k, *tmp;

	HASH_ITER(hh, c->rates, k, tmp)
	{
		HASH_DEL(c->rates, k);
		krate_free(k);
	}
	{
		struct gwin *g, *gt;

		HASH_ITER(hh, c->gwins, g, gt)
		{
			HASH_DEL(c->gwins, g);
			free(g);
		}
	}
	for (size_t i = 0; i < c->npend; i++)
		free(c->pend[i].kind);
	free(c->pend);
	for (size_t i = 0; i < c->nrev; i++)
		free(c->rev[i].kind);
	free(c->rev);
	free(c->final_sql);
	free(c->dsn);
	free(c);
	if (done)
		done(arg);
}

static void finish_stop(struct agg_correlate *c)
{
	agg_db_close(c->db);
	c->db = NULL;
	uv_close((uv_handle_t *)&c->timer, timer_closed_cb);
}

static void timer_cb(uv_timer_t *t);

/* end_cycle finishes the running cycle with status, reports it and
 * schedules the next. */
static void end_cycle(struct agg_correlate *c, int status)
{
	struct cycle *cy = c->cy;
	struct agg_correlate_cycle info = { 0 };
	int64_t now = sh_now_wall_ns();

	if (cy) {
		info = cy->info;
		c->last_ms = (double)(now - cy->started_ns) / 1e6;
	}
	info.status = status;
	if (status < 0) {
		c->errors++;
		if (status == -ECONNRESET || status == -ECANCELED)
			c->have_lock = false;
	}
	c->cycles++;
	c->behind = info.more;
	if (c->nrev > 0)
		info.more = true; /* hosts to read again: go on at once */
	cycle_free(cy);
	c->cy = NULL;
	if (c->o.cycle_cb)
		c->o.cycle_cb(c->o.cycle_arg, &info); /* may call agg_correlate_stop */
	c->running = false;
	if (c->stopping) {
		finish_stop(c);
		return;
	}
	/* more work waits: go on at once; after a failure, wait an interval */
	uv_timer_start(&c->timer, timer_cb,
		       status == 0 && (info.more || info.suspects_more || c->kicked) ?
			       0 :
			       (uint64_t)(c->o.interval_ns / SH_NS_PER_MS),
		       0);
	c->kicked = false;
}

/* failed logs a failed step (at most once a minute, the rest counted) and
 * ends the cycle. */
static void failed(struct agg_correlate *c, const char *what, int status, const char *errmsg)
{
	int64_t now = sh_now_wall_ns();

	if (status != -ECANCELED && now - c->last_err_log_ns >= ERROR_LOG_NS) {
		sh_warn("correlator: %s failed: %s (%" PRIu64 " failures so far)", what,
			errmsg && *errmsg ? errmsg : strerror(-status), c->errors + 1);
		c->last_err_log_ns = now;
	}
	end_cycle(c, status);
}

/* submit runs one statement of the cycle; on failure to queue, ends it. */
static void submit(struct agg_correlate *c, const char *sql, int nparams, const char *const *params,
		   agg_db_cb cb)
{
	int rv = agg_db_query(c->db, sql, nparams, params, cb, c);

	if (rv < 0)
		failed(c, "queueing a query", rv, NULL);
}

/* step_ok checks the result of a step's statement: when it failed, logs
 * what failed and ends the cycle; when the correlator is stopping, ends the
 * cycle. Returns whether the cycle goes on. */
static bool step_ok(struct agg_correlate *c, const char *what, int status, const char *errmsg)
{
	if (status < 0) {
		failed(c, what, status, errmsg);
		return false;
	}
	if (c->stopping) {
		end_cycle(c, 0);
		return false;
	}
	return true;
}

/* --- lock and claim --- */

static void lock_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			 void *arg)
{
	struct agg_correlate *c = arg;

	if (!step_ok(c, "taking the correlator lock", status, errmsg))
		return;
	c->have_lock = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
	if (!c->have_lock) {
		if (!c->lock_logged)
			sh_info("correlator: another aggregator correlates this database; waiting");
		c->lock_logged = true;
		end_cycle(c, 0);
		return;
	}
	if (c->lock_logged)
		sh_info("correlator: took over correlating");
	c->lock_logged = false;
	step_claim(c);
}

static void timer_cb(uv_timer_t *t)
{
	struct agg_correlate *c = t->data;

	if (c->running || c->stopping)
		return;
	if (!agg_db_ready(c->db)) {
		uv_timer_start(&c->timer, timer_cb, (uint64_t)(c->o.interval_ns / SH_NS_PER_MS), 0);
		return;
	}
	c->cy = calloc(1, sizeof(*c->cy));
	if (!c->cy) {
		c->errors++;
		uv_timer_start(&c->timer, timer_cb, (uint64_t)(c->o.interval_ns / SH_NS_PER_MS), 0);
		return;
	}
	c->running = true;
	c->cy->started_ns = sh_now_wall_ns();
	c->cy->next_ref = -1;
	if (!c->have_lock) {
		submit(c, lock_sql, 0, NULL, lock_done_cb);
		return;
	}
	step_claim(c);
}

static void claim_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			  void *arg)
{
	struct agg_correlate *c = arg;
	struct cycle *cy = c->cy;
	int n;

	if (!step_ok(c, "reading the queue", status, errmsg))
		return;
	n = PQntuples(res);
	cy->info.claimed = n;
	cy->info.more = n >= c->o.batch;
	if (n == 0 && c->nrev == 0) {
		step_pick(c);
		return;
	}
	cy->q = calloc((size_t)n + 1, sizeof(*cy->q));
	if (!cy->q) {
		failed(c, "claiming", -ENOMEM, NULL);
		return;
	}
	cy->min_ts = INT64_MAX;
	for (int i = 0; i < n; i++) {
		struct qev *q = &cy->q[i];

		q->qid = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		q->host = names_get(&cy->hosts, PQgetvalue(res, i, 1));
		snprintf(q->boot, sizeof(q->boot), "%s", PQgetvalue(res, i, 2));
		q->seq = strtoll(PQgetvalue(res, i, 3), NULL, 10);
		q->ts = strtoll(PQgetvalue(res, i, 4), NULL, 10);
		q->kind = names_get(&cy->kinds, PQgetvalue(res, i, 5));
		if (q->host < 0 || q->kind < 0) {
			failed(c, "claiming", -ENOMEM, NULL);
			return;
		}
		if (q->ts < cy->min_ts)
			cy->min_ts = q->ts;
		if (q->ts > c->newest_ns)
			c->newest_ns = q->ts;
	}
	cy->nq = (size_t)n;
	/* series of hosts waiting for their periodic incident are read too */
	for (size_t i = 0; i < c->nrev; i++) {
		if (names_get(&cy->kinds, c->rev[i].kind) < 0) {
			failed(c, "claiming", -ENOMEM, NULL);
			return;
		}
		if (c->rev[i].ts < cy->min_ts)
			cy->min_ts = c->rev[i].ts;
	}
	step_known(c);
}

static void step_claim(struct agg_correlate *c)
{
	char n[16];
	const char *params[1] = { n };

	snprintf(n, sizeof(n), "%d", c->o.batch);
	submit(c, claim_sql, 1, params, claim_done_cb);
}

/* --- known incidents --- */

static void known_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			  void *arg)
{
	struct agg_correlate *c = arg;
	struct cycle *cy = c->cy;
	int n;

	if (!step_ok(c, "reading the open incidents", status, errmsg))
		return;
	n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		const char *type = PQgetvalue(res, i, 2);
		struct kinc *k;

		if (strcmp(type, "meta") == 0) {
			cy->max_skew_ms = strtod(PQgetvalue(res, i, 3), NULL);
			cy->hosts_active = strtoll(PQgetvalue(res, i, 4), NULL, 10);
			c->incidents_open = strtoll(PQgetvalue(res, i, 5), NULL, 10);
			continue;
		}
		if (RESERVE(cy->known, cy->capknown, cy->nknown + 1) != 0) {
			failed(c, "reading the open incidents", -ENOMEM, NULL);
			return;
		}
		k = &cy->known[cy->nknown++];
		k->id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		k->kind = names_find(&cy->kinds, PQgetvalue(res, i, 1));
		k->type = type[0];
		k->period_s = strtod(PQgetvalue(res, i, 3), NULL);
		k->first = strtoll(PQgetvalue(res, i, 4), NULL, 10);
		k->last = strtoll(PQgetvalue(res, i, 5), NULL, 10);
	}
	if (cy->max_skew_ms * SH_NS_PER_MS > (double)MAX_SKEW_NS)
		cy->max_skew_ms = (double)MAX_SKEW_NS / SH_NS_PER_MS;
	step_rates(c);
}

static void step_known(struct agg_correlate *c)
{
	struct cycle *cy = c->cy;
	struct arr kinds = { 0 };
	char min_s[24], lb_s[24], new_s[24];
	const char *params[4];

	for (size_t i = 0; i < cy->kinds.n; i++)
		arr_str(&kinds, cy->kinds.v[i]);
	snprintf(min_s, sizeof(min_s), "%" PRId64, cy->min_ts);
	snprintf(lb_s, sizeof(lb_s), "%" PRId64, c->o.lookback_ns / 1000);
	snprintf(new_s, sizeof(new_s), "%" PRId64, c->newest_ns ? c->newest_ns : sh_now_wall_ns());
	params[0] = arr_text(&kinds);
	params[1] = min_s;
	params[2] = lb_s;
	params[3] = new_s;
	if (!params[0])
		failed(c, "reading the open incidents", -ENOMEM, NULL);
	else
		submit(c, known_sql, 4, params, known_done_cb);
	agg_copybuf_fini(&kinds.b);
}

/* --- rates: baselines and recurring hosts --- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool krate_flagged(const struct krate *k, const char *host)
{
	return k && k->nflagged &&
	       bsearch(&host, k->flagged, k->nflagged, sizeof(char *), cmp_str) != NULL;
}

/* open_incident returns the known open incident of type for kind (the one
 * seen last that reaches back to since), or NULL. */
static struct kinc *open_incident(struct cycle *cy, int kind, char type, int64_t since)
{
	struct kinc *best = NULL;

	for (size_t i = 0; i < cy->nknown; i++) {
		struct kinc *k = &cy->known[i];

		if (k->kind == kind && k->type == type && k->last >= since &&
		    (!best || k->last > best->last))
			best = k;
	}
	return best;
}

static int64_t new_incident(struct cycle *cy, int kind, char type, double period, double jitter)
{
	struct newinc *n;

	if (RESERVE(cy->ni, cy->capni, cy->nni + 1) != 0)
		return 0;
	n = &cy->ni[cy->nni++];
	n->ref = cy->next_ref--;
	n->kind = kind;
	n->type = type;
	n->period_s = period;
	n->jitter_s = jitter;
	return n->ref;
}

static int add_recur(struct cycle *cy, int kind, int host, int64_t from, int64_t to, int64_t ref,
		     int64_t release)
{
	struct recur *r;

	if (RESERVE(cy->rc, cy->caprc, cy->nrc + 1) != 0)
		return -ENOMEM;
	r = &cy->rc[cy->nrc++];
	r->kind = kind;
	r->host = host;
	r->from = from;
	r->to = to;
	r->ref = ref;
	r->release_id = release;
	return 0;
}

/* rate_kind computes the baseline of stale kind s from its hosts' counts.
 * Hosts with a period are not counted (they are not "no period"). The
 * provisional pass (before this cycle's decisions) only sets the rate that
 * bursts are judged by; the final pass also leaves out the events this
 * cycle put into bursts and periodic incidents, flags the hosts far above
 * the baseline and decides the kind's recurring incident: flagged hosts
 * join it with their free events of the window, hosts back at the
 * baseline leave it. */
static int rate_kind(struct agg_correlate *c, size_t s, bool final)
{
	struct cycle *cy = c->cy;
	int64_t end = cy->stale_end[s], from = end - c->o.lookback_ns;
	int kidx = names_find(&cy->kinds, cy->stale[s]), rv = -ENOMEM;
	int64_t *counts = calloc(cy->nrr + 1, sizeof(*counts));
	struct rrow **rows = calloc(cy->nrr + 1, sizeof(*rows));
	bool *flagged = calloc(cy->nrr + 1, sizeof(*flagged));
	int64_t *taken = calloc(cy->hosts.n + 1, sizeof(*taken)); /* per host: moved to b/p now */
	bool *trained = calloc(cy->hosts.n + 1, sizeof(*trained)); /* per host: has a period */
	size_t n = 0, nflag = 0;
	struct krate *k;
	struct kinc *open;
	double mu, lookback_s = (double)c->o.lookback_ns / 1e9, covered_s, first_s = -1, total;
	int64_t hosts_active, ref = 0;

	if (!counts || !rows || !flagged || !taken || !trained)
		goto cleanup;
	for (size_t e = 0; final && e < cy->nev; e++) {
		struct cev *ev = &cy->ev[e];

		if (ev->kind == kidx && ev->ts > from && ev->ts <= end && ev->target &&
		    (ev->target_type == 'b' || ev->target_type == 'p') && ev->cur_type != 'b' &&
		    ev->cur_type != 'p')
			taken[ev->host]++;
	}
	for (size_t i = 0; final && i < cy->ntrains; i++)
		if (cy->trains[i].kind == kidx)
			trained[cy->trains[i].host] = true;
	for (size_t i = 0; i < cy->nrr; i++) {
		struct rrow *r = &cy->rr[i];
		int64_t cnt = r->count - taken[r->host];

		if (r->kind != kidx || r->end != end || r->periodic > 0 || trained[r->host])
			continue;
		if (cnt <= 0)
			continue;
		rows[n] = r;
		counts[n++] = cnt;
	}
	hosts_active = cy->hosts_active > (int64_t)n ? cy->hosts_active : (int64_t)n;
	mu = agg_stats_baseline(counts, n, hosts_active, log10(c->o.recurring_p), c->o.min_events,
				flagged);
	for (size_t i = 0; i < n; i++)
		nflag += flagged[i];
	if (!cy->stale_latest[s]) {
		if (!final) {
			rv = 0;
			goto cleanup;
		}
		goto decide; /* an older window: only its recurring hosts */
	}
	HASH_FIND_STR(c->rates, cy->stale[s], k);
	if (!k) {
		if (!(k = calloc(1, sizeof(*k))) || !(k->kind = strdup(cy->stale[s]))) {
			free(k);
			goto cleanup;
		}
		HASH_ADD_KEYPTR(hh, c->rates, k->kind, strlen(k->kind), k);
	}
	/* the baseline is per lookback; while the data (a fresh aggregator, a
	 * backfill) covers less than the lookback, it is per covered time, from
	 * the kind's earliest event in the window (never over-estimating the
	 * time: a higher rate only makes bursts harder to call) */
	covered_s = lookback_s;
	for (size_t i = 0; i < cy->nrr; i++) {
		const struct rrow *r = &cy->rr[i];
		double span;

		if (r->kind != kidx || r->end != end || r->first <= 0)
			continue;
		span = (double)(end - r->first) / 1e9;
		if (first_s < 0 || span > first_s)
			first_s = span;
	}
	if (first_s > 0 && first_s < covered_s)
		covered_s = first_s > 600 ? first_s : 600;
	k->rate_per_s = mu * (double)(hosts_active - (int64_t)nflag) / covered_s;
	/* what a burst must beat is every event of the kind, the recurring
	 * hosts' too: their own coincidences are not fleet incidents */
	total = 0;
	for (size_t i = 0; i < n; i++)
		total += (double)counts[i];
	k->all_per_s = total / covered_s;
	if (k->all_per_s < k->rate_per_s)
		k->all_per_s = k->rate_per_s;
	k->end_ns = end;
	k->computed_ns = sh_now_wall_ns();
	if (!final) {
		rv = 0;
		goto cleanup;
	}
	for (size_t i = 0; i < k->nflagged; i++)
		free(k->flagged[i]);
	free(k->flagged);
	k->flagged = NULL;
	k->nflagged = 0;
	if (nflag && !(k->flagged = calloc(nflag, sizeof(char *))))
		goto cleanup;
	for (size_t i = 0; i < n; i++) {
		if (flagged[i] && (k->flagged[k->nflagged] = strdup(cy->hosts.v[rows[i]->host])))
			k->nflagged++;
	}
	if (k->nflagged)
		qsort(k->flagged, k->nflagged, sizeof(char *), cmp_str);
decide:
	open = open_incident(cy, kidx, 'r', from);
	if (open)
		ref = open->id;
	for (size_t i = 0; !ref && i < cy->nni; i++)
		if (cy->ni[i].kind == kidx && cy->ni[i].type == 'r')
			ref = cy->ni[i].ref; /* made for another window this cycle */
	if (!ref && nflag >= 2 && !(ref = new_incident(cy, kidx, 'r', 0, 0)))
		goto cleanup;
	for (size_t i = 0; ref && i < n; i++) {
		if (flagged[i] && add_recur(cy, kidx, rows[i]->host, from, end, ref, 0) != 0)
			goto cleanup;
	}
	/* members no longer far above it (or now periodic) leave */
	for (size_t i = 0; open && i < cy->nrr; i++) {
		struct rrow *r = &cy->rr[i];
		bool still = false;

		if (r->kind != kidx || r->cur != open->id)
			continue;
		for (size_t x = 0; x < n && !still; x++)
			still = rows[x] == r && flagged[x];
		if (!still && add_recur(cy, kidx, r->host, from, end, 0, open->id) != 0)
			goto cleanup;
	}
	rv = 0;
cleanup:
	free(counts);
	free(rows);
	free(flagged);
	free(taken);
	free(trained);
	return rv;
}

static void rates_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			  void *arg)
{
	struct agg_correlate *c = arg;
	struct cycle *cy = c->cy;
	int n, rv = 0;

	if (!step_ok(c, "counting events per host", status, errmsg))
		return;
	n = PQntuples(res);
	if (RESERVE(cy->rr, cy->caprr, (size_t)n + 1) != 0) {
		failed(c, "counting events per host", -ENOMEM, NULL);
		return;
	}
	for (int i = 0; i < n; i++) {
		struct rrow *r = &cy->rr[cy->nrr++];

		r->kind = names_get(&cy->kinds, PQgetvalue(res, i, 0));
		r->host = names_get(&cy->hosts, PQgetvalue(res, i, 1));
		r->count = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		r->cur = strtoll(PQgetvalue(res, i, 3), NULL, 10);
		r->periodic = strtoll(PQgetvalue(res, i, 4), NULL, 10);
		r->end = strtoll(PQgetvalue(res, i, 5), NULL, 10);
		r->first = strtoll(PQgetvalue(res, i, 6), NULL, 10);
		if (r->kind < 0 || r->host < 0) {
			failed(c, "counting events per host", -ENOMEM, NULL);
			return;
		}
	}
	for (size_t s = 0; s < cy->nstale && rv == 0; s++)
		rv = rate_kind(c, s, false);
	if (rv < 0) {
		failed(c, "counting events per host", rv, NULL);
		return;
	}
	step_context(c);
}

/* add_stale adds window (kind, end) to this cycle's rate queries. */
static int add_stale(struct cycle *cy, const char *kind, int64_t end, bool latest, struct arr *kinds,
		     struct arr *ends)
{
	if (!(cy->stale[cy->nstale] = strdup(kind)))
		return -ENOMEM;
	cy->stale_end[cy->nstale] = end;
	cy->stale_latest[cy->nstale++] = latest;
	arr_str(kinds, kind);
	arr_i64(ends, end);
	return 0;
}

/* grid_windows adds the older windows of kind that a backfill reaches
 * (ends on a grid of half the lookback, between the batch's first event
 * and its last), each at most once per RATE_REFRESH_NS. */
static int grid_windows(struct agg_correlate *c, const char *kind, int64_t kmin, int64_t kmax,
			int64_t now, struct arr *kinds, struct arr *ends)
{
	struct cycle *cy = c->cy;
	int64_t grid = c->o.lookback_ns / 2, e;
	int n = 0;

	if (grid <= 0)
		return 0;
	for (e = (kmin / grid + 1) * grid; e <= kmax - grid / 2 && n < MAX_GRID_WINDOWS; e += grid) {
		struct gwin *g;
		char key[96];

		snprintf(key, sizeof(key), "%.60s/%" PRId64, kind, e);
		HASH_FIND_STR(c->gwins, key, g);
		if (g && now - g->computed_ns < RATE_REFRESH_NS)
			continue;
		if (!g) {
			if (!(g = calloc(1, sizeof(*g))))
				return -ENOMEM;
			snprintf(g->key, sizeof(g->key), "%s", key);
			HASH_ADD_STR(c->gwins, key, g);
		}
		g->computed_ns = now;
		if (add_stale(cy, kind, e, false, kinds, ends) != 0)
			return -ENOMEM;
		n++;
	}
	return 0;
}

static void step_rates(struct agg_correlate *c)
{
	struct cycle *cy = c->cy;
	int64_t now = sh_now_wall_ns();
	struct arr kinds = { 0 }, ends = { 0 };
	char lb_s[24];
	const char *params[3];
	size_t cap = cy->kinds.n * (1 + MAX_GRID_WINDOWS) + 1;
	int64_t *kend = calloc(cy->kinds.n + 1, sizeof(*kend));
	int64_t *kmin = calloc(cy->kinds.n + 1, sizeof(*kmin));
	int rv = 0;

	cy->stale = calloc(cap, sizeof(char *));
	cy->stale_end = calloc(cap, sizeof(int64_t));
	cy->stale_latest = calloc(cap, sizeof(bool));
	if (!kend || !kmin || !cy->stale || !cy->stale_end || !cy->stale_latest) {
		rv = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < cy->nq; i++) {
		struct qev *q = &cy->q[i];

		if (q->ts > kend[q->kind])
			kend[q->kind] = q->ts;
		if (!kmin[q->kind] || q->ts < kmin[q->kind])
			kmin[q->kind] = q->ts;
	}
	for (size_t i = 0; i < cy->kinds.n && rv == 0; i++) {
		struct krate *k;
		int64_t d;

		if (!kend[i])
			continue; /* a kind seen only in known incidents */
		HASH_FIND_STR(c->rates, cy->kinds.v[i], k);
		d = k ? kend[i] - k->end_ns : 0;
		if (!k || d >= RATE_DRIFT_NS || d <= -RATE_DRIFT_NS || now - k->computed_ns >= RATE_REFRESH_NS)
			rv = add_stale(cy, cy->kinds.v[i], kend[i], true, &kinds, &ends);
		if (rv == 0)
			rv = grid_windows(c, cy->kinds.v[i], kmin[i], kend[i], now, &kinds, &ends);
	}
	/* old window marks go after an hour */
	{
		struct gwin *g, *gt;

		HASH_ITER(hh, c->gwins, g, gt)
		{
			if (now - g->computed_ns > 3600 * SH_NS_PER_SEC) {
				HASH_DEL(c->gwins, g);
				free(g);
			}
		}
	}
	if (rv != 0 || cy->nstale == 0)
		goto out;
	snprintf(lb_s, sizeof(lb_s), "%" PRId64, c->o.lookback_ns / 1000);
	params[0] = arr_text(&kinds);
	params[1] = arr_text(&ends);
	params[2] = lb_s;
	if (!params[0] || !params[1]) {
		rv = -ENOMEM;
		goto out;
	}
	free(kend);
	free(kmin);
	submit(c, rates_sql, 3, params, rates_done_cb); /* may end the cycle */
	agg_copybuf_fini(&kinds.b);
	agg_copybuf_fini(&ends.b);
	return;
out:
	free(kend);
	free(kmin);
	agg_copybuf_fini(&kinds.b);
	agg_copybuf_fini(&ends.b);
	if (rv < 0)
		failed(c, "counting events per host", rv, NULL);
	else
		step_context(c);
}

/* --- context --- */

static int cmp_q_kind_ts(const void *a, const void *b)
{
	const struct qev *x = a, *y = b;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return x->ts < y->ts ? -1 : x->ts > y->ts;
}

static int cmp_q_host_kind_ts(const void *a, const void *b)
{
	const struct qev *x = a, *y = b;

	if (x->host != y->host)
		return x->host < y->host ? -1 : 1;
	return cmp_q_kind_ts(a, b);
}

static void step_context(struct agg_correlate *c)
{
	struct cycle *cy = c->cy;
	/* the parameters: bursts' kinds, froms and tos; series' hosts, kinds,
	 * froms and tos */
	enum { BK, BF, BT, SH, SK, SF, ST, NPARAMS };
	struct arr a[NPARAMS] = { 0 };
	int64_t margin = c->o.gap_ns + 2 * (int64_t)(cy->max_skew_ms * SH_NS_PER_MS) + CONTEXT_PAD_NS;
	const char *params[NPARAMS];
	struct qev *q = malloc((cy->nq + 1) * sizeof(*q));

	if (!q) {
		failed(c, "reading the context", -ENOMEM, NULL);
		return;
	}
	/* burst ranges: per kind, the claimed times +/- margin, merged */
	memcpy(q, cy->q, cy->nq * sizeof(*q));
	qsort(q, cy->nq, sizeof(*q), cmp_q_kind_ts);
	for (size_t i = 0; i < cy->nq;) {
		size_t j = i;
		int64_t f = q[i].ts - margin, t = q[i].ts + margin;

		while (j + 1 < cy->nq && q[j + 1].kind == q[i].kind && q[j + 1].ts - margin <= t) {
			j++;
			t = q[j].ts + margin;
		}
		arr_str(&a[BK], cy->kinds.v[q[i].kind]);
		arr_i64(&a[BF], f);
		arr_i64(&a[BT], t);
		i = j + 1;
	}
	/* series: per (host, kind), the claimed span +/- lookback */
	qsort(q, cy->nq, sizeof(*q), cmp_q_host_kind_ts);
	for (size_t i = 0; i < cy->nq;) {
		size_t j = i;

		while (j + 1 < cy->nq && q[j + 1].host == q[i].host && q[j + 1].kind == q[i].kind)
			j++;
		arr_str(&a[SH], cy->hosts.v[q[i].host]);
		arr_str(&a[SK], cy->kinds.v[q[i].kind]);
		arr_i64(&a[SF], q[i].ts - c->o.lookback_ns);
		arr_i64(&a[ST], q[j].ts + c->o.lookback_ns);
		i = j + 1;
	}
	free(q);
	/* and the hosts of pending trains that just found a partner */
	for (size_t i = 0; i < c->nrev; i++) {
		arr_str(&a[SH], c->rev[i].host);
		arr_str(&a[SK], c->rev[i].kind);
		arr_i64(&a[SF], c->rev[i].ts - c->o.lookback_ns);
		arr_i64(&a[ST], c->rev[i].ts + c->o.lookback_ns);
		free(c->rev[i].kind);
	}
	c->nrev = 0;
	if (!arr_params(a, NPARAMS, params))
		failed(c, "reading the context", -ENOMEM, NULL);
	else
		submit(c, context_sql, NPARAMS, params, context_done_cb);
	arr_fini(a, NPARAMS);
}

/* --- decisions --- */

static int cmp_ev_key(const void *a, const void *b)
{
	const struct cev *x = a, *y = b;

	if (x->host != y->host)
		return x->host < y->host ? -1 : 1;
	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return strcmp(x->boot, y->boot);
}

static int cmp_idx_series(const void *a, const void *b, void *arg)
{
	const struct cev *ev = arg, *x = &ev[*(const size_t *)a], *y = &ev[*(const size_t *)b];

	if (x->host != y->host)
		return x->host < y->host ? -1 : 1;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return x->ts < y->ts ? -1 : x->ts > y->ts;
}

static int cmp_idx_kind_tc(const void *a, const void *b, void *arg)
{
	const struct cev *ev = arg, *x = &ev[*(const size_t *)a], *y = &ev[*(const size_t *)b];

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return x->tc < y->tc ? -1 : x->tc > y->tc;
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return x < y ? -1 : x > y;
}

/* effective is an event's incident type after this cycle's decisions. */
static char effective(const struct cev *e)
{
	return e->target ? e->target_type : e->cur_type;
}

static int64_t effective_id(const struct cev *e)
{
	return e->target ? e->target : e->cur;
}

static void assign(struct cev *e, int64_t id, char type)
{
	e->target = e->cur == id ? 0 : id; /* 0: stays where it is */
	e->target_type = e->cur == id ? 0 : type;
}

static int add_hostper(struct cycle *cy, int64_t ref, int host, double period, double jitter)
{
	struct hostper *h;

	if (RESERVE(cy->hp, cy->caphp, cy->nhp + 1) != 0)
		return -ENOMEM;
	h = &cy->hp[cy->nhp++];
	h->ref = ref;
	h->host = host;
	h->period_s = period;
	h->jitter_s = jitter;
	return 0;
}

static void remember_train(struct agg_correlate *c, const char *host, const char *kind,
			   double period, int64_t ts)
{
	struct ptrain *p = NULL;

	for (size_t i = 0; i < c->npend; i++) {
		if (strcmp(c->pend[i].host, host) == 0 && strcmp(c->pend[i].kind, kind) == 0) {
			p = &c->pend[i];
			break;
		}
	}
	if (!p) {
		if (c->npend >= MAX_PENDING_TRAINS) {
			free(c->pend[0].kind);
			memmove(c->pend, c->pend + 1, (c->npend - 1) * sizeof(*c->pend));
			c->npend--;
		}
		if (RESERVE(c->pend, c->cappend, c->npend + 1) != 0)
			return;
		p = &c->pend[c->npend];
		if (!(p->kind = strdup(kind)))
			return;
		snprintf(p->host, sizeof(p->host), "%s", host);
		c->npend++;
	}
	p->period_s = period;
	p->ts = ts;
}

/* partner_trains moves the pending trains of other hosts with kind and a
 * period within tol of period to the revisit list; returns how many. */
static size_t partner_trains(struct agg_correlate *c, const char *host, const char *kind,
			     double period, int64_t now_ev)
{
	struct agg_period_opts po;
	size_t found = 0;

	agg_period_opts_default(&po);
	po.tol_abs_s = 1;
	for (size_t i = 0; i < c->npend;) {
		struct ptrain *p = &c->pend[i];
		bool old = now_ev - p->ts > c->o.lookback_ns;

		if (!old && strcmp(p->kind, kind) == 0 && strcmp(p->host, host) != 0 &&
		    fabs(p->period_s - period) <= agg_stats_period_tol(&po, period) &&
		    RESERVE(c->rev, c->caprev, c->nrev + 1) == 0) {
			struct revisit *r = &c->rev[c->nrev++];

			snprintf(r->host, sizeof(r->host), "%s", p->host);
			r->kind = p->kind;
			r->ts = p->ts;
			found++;
		} else if (!old) {
			i++;
			continue;
		} else {
			free(p->kind);
		}
		memmove(p, p + 1, (c->npend - i - 1) * sizeof(*p));
		c->npend--;
	}
	return found;
}

/* struct train is a period found in one (host, kind) series: events
 * idx[i..j) of the series, occurrences occ[o0..o0+nocc) (their first event
 * in idx), matched[] marks the train's occurrences. */
struct train {
	size_t i, j, o0, nocc;
	int host, kind;
	int64_t last_ts;
	struct agg_period per;
	int64_t id;
};

/* train_group finds the incident a train belongs to: an open periodic
 * incident of its kind and period, one made this cycle, or a new one when
 * the train is strong alone or another host has the same kind and period
 * (in this cycle, or waiting from an earlier one). 0: none yet. */
static int64_t train_group(struct agg_correlate *c, struct cycle *cy, const struct train *tr,
			   const struct train *all, size_t ntr, const struct agg_period_opts *po)
{
	const char *host = cy->hosts.v[tr->host], *kind = cy->kinds.v[tr->kind];
	double p = tr->per.period_s;
	bool partner = false;

	for (size_t k = 0; k < cy->nknown; k++) {
		struct kinc *ki = &cy->known[k];

		if (ki->kind == tr->kind && ki->type == 'p' && ki->last >= tr->last_ts - 2 * c->o.lookback_ns &&
		    fabs(ki->period_s - p) <= agg_stats_period_tol(po, ki->period_s))
			return ki->id;
	}
	for (size_t k = 0; k < cy->nni; k++) {
		struct newinc *ni = &cy->ni[k];

		if (ni->kind == tr->kind && ni->type == 'p' &&
		    fabs(ni->period_s - p) <= agg_stats_period_tol(po, ni->period_s))
			return ni->ref;
	}
	for (size_t k = 0; k < ntr && !partner; k++)
		partner = all[k].kind == tr->kind && all[k].host != tr->host &&
			  fabs(all[k].per.period_s - p) <= agg_stats_period_tol(po, p);
	if (partner_trains(c, host, kind, p, tr->last_ts) > 0)
		partner = true;
	if (partner || (tr->per.log10_chance <= SINGLE_HOST_LOG10_CHANCE &&
			tr->per.matched >= SINGLE_HOST_OCCURRENCES))
		return new_incident(cy, tr->kind, 'p', p, tr->per.jitter_s);
	remember_train(c, host, kind, p, tr->last_ts);
	return 0;
}

/* periodic finds trains in every (host, kind) series of the context, then
 * groups them by kind and period and assigns their events. */
static int periodic(struct agg_correlate *c, struct cycle *cy)
{
	struct agg_period_opts po;
	size_t *idx = malloc((cy->nev + 1) * sizeof(*idx)), n = 0, ntr = 0, nocc_all = 0;
	double *t = malloc((cy->nev + 1) * sizeof(*t));
	size_t *occ = malloc((cy->nev + 1) * sizeof(*occ));
	bool *m = malloc((cy->nev + 1) * sizeof(*m));
	struct train *tr = malloc((cy->nev + 1) * sizeof(*tr));
	int rv = -ENOMEM;

	if (!idx || !t || !occ || !m || !tr)
		goto cleanup;
	agg_period_opts_default(&po);
	po.min_occurrences = c->o.min_events;
	po.max_log10_chance = log10(c->o.periodic_p);
	for (size_t i = 0; i < cy->nev; i++)
		if (cy->ev[i].parts & 2)
			idx[n++] = i;
	qsort_r(idx, n, sizeof(*idx), cmp_idx_series, cy->ev);
	for (size_t i = 0, j; i < n; i = j) {
		struct cev *first = &cy->ev[idx[i]];
		struct train *x = &tr[ntr];
		size_t o0 = nocc_all;
		int found;

		for (j = i; j < n && cy->ev[idx[j]].host == first->host &&
			    cy->ev[idx[j]].kind == first->kind;
		     j++) {
			/* occurrences: events within OCCURRENCE_NS of the first
			 * event of their occurrence */
			struct cev *e = &cy->ev[idx[j]];

			if (nocc_all == o0 || e->ts - cy->ev[idx[occ[nocc_all - 1]]].ts > OCCURRENCE_NS) {
				occ[nocc_all] = j;
				t[nocc_all++] = (double)(e->ts - first->ts) / 1e9;
			}
		}
		found = nocc_all - o0 >= (size_t)c->o.min_events ?
				agg_stats_period(t + o0, nocc_all - o0, &po, &x->per, m + o0) :
				0;
		if (found < 0)
			goto cleanup;
		if (found == 0) {
			nocc_all = o0; /* reuse the space */
			continue;
		}
		x->i = i;
		x->j = j;
		x->o0 = o0;
		x->nocc = nocc_all - o0;
		x->host = first->host;
		x->kind = first->kind;
		x->id = 0;
		x->last_ts = first->ts;
		if (RESERVE(cy->trains, cy->captrains, cy->ntrains + 1) != 0)
			goto cleanup;
		cy->trains[cy->ntrains].host = first->host;
		cy->trains[cy->ntrains++].kind = first->kind;
		for (size_t o = 0; o < x->nocc; o++)
			if (m[o0 + o])
				x->last_ts = cy->ev[idx[occ[o0 + o]]].ts;
		ntr++;
	}
	for (size_t k = 0; k < ntr; k++) {
		struct train *x = &tr[k];

		if (!(x->id = train_group(c, cy, x, tr, ntr, &po)))
			continue;
		if (add_hostper(cy, x->id, x->host, x->per.period_s, x->per.jitter_s) != 0)
			goto cleanup;
		for (size_t o = 0; o < x->nocc; o++) {
			size_t end = o + 1 < x->nocc ? occ[x->o0 + o + 1] : x->j;

			if (!m[x->o0 + o])
				continue;
			for (size_t e = occ[x->o0 + o]; e < end; e++)
				assign(&cy->ev[idx[e]], x->id, 'p');
		}
	}
	rv = 0;
cleanup:
	free(idx);
	free(t);
	free(occ);
	free(m);
	free(tr);
	return rv;
}

/* bursts chains the events of each kind (skew-corrected times within the
 * gap) and makes every chain on enough hosts, unlikely enough from the
 * kind's baseline rate, one burst incident. */
static int bursts(struct agg_correlate *c, struct cycle *cy)
{
	size_t *idx = malloc((cy->nev + 1) * sizeof(*idx)), n = 0;
	int *hosts = malloc((cy->nev + 1) * sizeof(*hosts));
	double log10_p = log10(c->o.burst_p), gap_s = (double)c->o.gap_ns / 1e9;
	int rv = -ENOMEM;

	if (!idx || !hosts)
		goto cleanup;
	for (size_t i = 0; i < cy->nev; i++)
		if ((cy->ev[i].parts & 1) && effective(&cy->ev[i]) != 'p')
			idx[n++] = i;
	qsort_r(idx, n, sizeof(*idx), cmp_idx_kind_tc, cy->ev);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1, nh = 0, distinct = 0;
		struct cev *first = &cy->ev[idx[i]];
		struct krate *k;
		double span_s, mu, chains_h;
		int64_t id = 0;

		while (j < n && cy->ev[idx[j]].kind == first->kind &&
		       cy->ev[idx[j]].tc - cy->ev[idx[j - 1]].tc <= c->o.gap_ns)
			j++;
		for (size_t x = i; x < j; x++)
			hosts[nh++] = cy->ev[idx[x]].host;
		qsort(hosts, nh, sizeof(*hosts), cmp_int);
		for (size_t x = 0; x < nh; x++)
			distinct += x == 0 || hosts[x] != hosts[x - 1];
		if (distinct < (size_t)c->o.min_hosts) {
			i = j;
			continue;
		}
		HASH_FIND_STR(c->rates, cy->kinds.v[first->kind], k);
		span_s = (double)(cy->ev[idx[j - 1]].tc - first->tc) / 1e9;
		mu = (k ? k->all_per_s : 0) * (span_s + gap_s);
		/* every event of the kind starts a chain that is tested: burst_p is
		 * the chance of a false burst per hour of the kind's baseline
		 * (Bonferroni over the chains an hour tests) */
		chains_h = (k ? k->all_per_s : 0) * 3600;
		if (agg_stats_log10_poisson_sf((int64_t)distinct, mu) >
		    log10_p - (chains_h > 1 ? log10(chains_h) : 0)) {
			i = j;
			continue;
		}
		/* join the oldest burst incident among the chain's events (a late
		 * event joins its burst; a bridge merges two) */
		for (size_t x = i; x < j; x++) {
			struct cev *e = &cy->ev[idx[x]];

			if (effective(e) == 'b' && effective_id(e) > 0 && (id <= 0 || effective_id(e) < id))
				id = effective_id(e);
		}
		if (!id && !(id = new_incident(cy, first->kind, 'b', 0, 0)))
			goto cleanup;
		for (size_t x = i; x < j; x++)
			assign(&cy->ev[idx[x]], id, 'b');
		i = j;
	}
	rv = 0;
cleanup:
	free(idx);
	free(hosts);
	return rv;
}

/* recurring_new assigns new free events of hosts known to be far above
 * their kind's baseline to the kind's open recurring incident (rates
 * recomputed this cycle cover their window in SQL already). */
static void recurring_new(struct agg_correlate *c, struct cycle *cy)
{
	for (size_t i = 0; i < cy->nev; i++) {
		struct cev *e = &cy->ev[i];
		struct krate *k;
		struct kinc *open;
		bool stale = false;

		if (!e->is_new || effective(e))
			continue;
		for (size_t s = 0; s < cy->nstale && !stale; s++)
			stale = cy->stale_latest[s] && strcmp(cy->stale[s], cy->kinds.v[e->kind]) == 0;
		if (stale)
			continue;
		HASH_FIND_STR(c->rates, cy->kinds.v[e->kind], k);
		if (!krate_flagged(k, cy->hosts.v[e->host]))
			continue;
		open = open_incident(cy, e->kind, 'r', e->ts - c->o.lookback_ns);
		if (open)
			assign(e, open->id, 'r');
	}
}

static int stage_apply(struct agg_correlate *c, struct cycle *cy)
{
	struct agg_copybuf *b = cy->buf;

	for (size_t i = 0; i < cy->nni; i++) {
		static const char *const types[] = { ['b'] = "burst", ['p'] = "periodic",
						     ['r'] = "recurring" };

		agg_copybuf_i64(&b[0], cy->ni[i].ref);
		agg_copybuf_str(&b[0], cy->kinds.v[cy->ni[i].kind]);
		agg_copybuf_str(&b[0], types[(unsigned char)cy->ni[i].type]);
		if (cy->ni[i].type == 'p') {
			agg_copybuf_f64(&b[0], cy->ni[i].period_s);
			agg_copybuf_f64(&b[0], cy->ni[i].jitter_s);
		} else {
			agg_copybuf_null(&b[0]);
			agg_copybuf_null(&b[0]);
		}
		agg_copybuf_end_row(&b[0]);
	}
	for (size_t i = 0; i < cy->nev; i++) {
		struct cev *e = &cy->ev[i];

		if (!e->target || e->target == e->cur)
			continue;
		agg_copybuf_str(&b[1], cy->hosts.v[e->host]);
		agg_copybuf_str(&b[1], e->boot);
		agg_copybuf_i64(&b[1], e->seq);
		agg_copybuf_ts(&b[1], e->ts);
		agg_copybuf_i64(&b[1], e->target);
		agg_copybuf_end_row(&b[1]);
	}
	for (size_t i = 0; i < cy->nhp; i++) {
		agg_copybuf_i64(&b[2], cy->hp[i].ref);
		agg_copybuf_str(&b[2], cy->hosts.v[cy->hp[i].host]);
		agg_copybuf_f64(&b[2], cy->hp[i].period_s);
		agg_copybuf_f64(&b[2], cy->hp[i].jitter_s);
		agg_copybuf_end_row(&b[2]);
	}
	for (size_t i = 0; i < cy->nrc; i++) {
		agg_copybuf_str(&b[3], cy->kinds.v[cy->rc[i].kind]);
		agg_copybuf_str(&b[3], cy->hosts.v[cy->rc[i].host]);
		agg_copybuf_ts(&b[3], cy->rc[i].from);
		agg_copybuf_ts(&b[3], cy->rc[i].to);
		agg_copybuf_i64(&b[3], cy->rc[i].ref);
		agg_copybuf_i64(&b[3], cy->rc[i].release_id);
		agg_copybuf_end_row(&b[3]);
	}
	for (size_t i = 0; i < cy->nq; i++) {
		agg_copybuf_i64(&b[4], cy->q[i].qid);
		agg_copybuf_end_row(&b[4]);
	}
	for (int i = 0; i < NSTEPS; i++) {
		if (b[i].oom)
			return -ENOMEM;
		cy->steps[i].sql = copy_sql[i];
		cy->steps[i].data = b[i].data ? b[i].data : "";
		cy->steps[i].len = b[i].len;
	}
	return 0;
}

static void apply_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			  void *arg)
{
	struct agg_correlate *c = arg;
	struct cycle *cy = c->cy;

	if (status < 0) {
		failed(c, "storing incidents", status, errmsg);
		return;
	}
	c->events += cy->nq;
	c->created += cy->nni;
	if (c->stopping) {
		end_cycle(c, 0);
		return;
	}
	step_pick(c);
}

static void context_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			    void *arg)
{
	struct agg_correlate *c = arg;
	struct cycle *cy = c->cy;
	int n, rv;

	if (!step_ok(c, "reading the context", status, errmsg))
		return;
	n = PQntuples(res);
	cy->ev = calloc((size_t)n + 1, sizeof(*cy->ev));
	if (!cy->ev) {
		failed(c, "reading the context", -ENOMEM, NULL);
		return;
	}
	for (int i = 0; i < n; i++) {
		struct cev *e = &cy->ev[i];
		double skew = strtod(PQgetvalue(res, i, 7), NULL);

		e->host = names_get(&cy->hosts, PQgetvalue(res, i, 0));
		e->kind = names_get(&cy->kinds, PQgetvalue(res, i, 4));
		if (e->host < 0 || e->kind < 0) {
			failed(c, "reading the context", -ENOMEM, NULL);
			return;
		}
		snprintf(e->boot, sizeof(e->boot), "%s", PQgetvalue(res, i, 1));
		e->seq = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		e->ts = strtoll(PQgetvalue(res, i, 3), NULL, 10);
		if (skew * SH_NS_PER_MS > (double)MAX_SKEW_NS || -skew * SH_NS_PER_MS > (double)MAX_SKEW_NS)
			skew = 0;
		e->tc = e->ts - (int64_t)(skew * SH_NS_PER_MS);
		e->cur = strtoll(PQgetvalue(res, i, 5), NULL, 10);
		e->cur_type = e->cur ? PQgetvalue(res, i, 6)[0] : 0;
		e->parts = atoi(PQgetvalue(res, i, 8));
	}
	cy->nev = (size_t)n;
	/* mark the claimed events */
	qsort(cy->ev, cy->nev, sizeof(*cy->ev), cmp_ev_key);
	for (size_t i = 0; i < cy->nq; i++) {
		struct cev key = { 0 }, *e;

		key.host = cy->q[i].host;
		key.seq = cy->q[i].seq;
		memcpy(key.boot, cy->q[i].boot, sizeof(key.boot));
		e = bsearch(&key, cy->ev, cy->nev, sizeof(*cy->ev), cmp_ev_key);
		if (e)
			e->is_new = true;
	}
	rv = periodic(c, cy);
	if (rv == 0)
		rv = bursts(c, cy);
	for (size_t k = 0; rv == 0 && k < cy->nstale; k++)
		rv = rate_kind(c, k, true);
	if (rv == 0) {
		recurring_new(c, cy);
		rv = stage_apply(c, cy);
	}
	if (rv < 0) {
		failed(c, "correlating", rv, NULL);
		return;
	}
	rv = agg_db_copy_txn(c->db, NULL, cy->steps, NSTEPS, c->final_sql, apply_done_cb, c);
	if (rv < 0)
		failed(c, "storing incidents", rv, NULL);
}

/* --- suspects --- */

struct feat {
	const char *feature, *basis, *comm, *example, *role;
	int64_t sw, st, ow, ot, ev, evt;
	double lp, score;
	int pref;
};

static int feature_pref(const char *f)
{
	static const char *const order[] = { "cmdline:", "process:", "started:", "label:", "kernel:" };

	for (int i = 0; i < 5; i++)
		if (strncmp(f, order[i], strlen(order[i])) == 0)
			return i;
	return 5;
}

static int cmp_feat(const void *a, const void *b)
{
	const struct feat *x = a, *y = b;

	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	if (x->lp != y->lp)
		return x->lp < y->lp ? -1 : 1;
	if (x->sw * y->st != y->sw * x->st)
		return x->sw * y->st > y->sw * x->st ? -1 : 1;
	if (x->pref != y->pref)
		return x->pref < y->pref ? -1 : 1;
	return strcmp(x->feature, y->feature);
}

/* evidence_comm is the process name a feature's evidence is looked up by. */
static const char *evidence_comm(const char *feature, const char *comm)
{
	if (strncmp(feature, "process:", 8) == 0)
		return feature + 8;
	if (strncmp(feature, "started:", 8) == 0)
		return feature + 8;
	if (strncmp(feature, "cmdline:", 8) == 0)
		return comm;
	return NULL;
}

static void next_incident(struct agg_correlate *c);

static void suspects_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			     void *arg)
{
	struct agg_correlate *c = arg;

	if (status < 0) {
		failed(c, "storing suspects", status, errmsg);
		return;
	}
	c->ranked++;
	c->cy->info.suspects_ranked++;
	next_incident(c);
}

static void features_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			     void *arg)
{
	struct agg_correlate *c = arg;
	struct cycle *cy = c->cy;
	int n, nf = 0, ne = 0;
	int64_t nev = 0;
	struct feat *f = NULL;
	struct arr a[14];
	char id_s[24];
	const char *params[15];
	int64_t *ev_n = NULL, *ev_t = NULL;
	const char **ev_comm = NULL, **ev_role = NULL;
	bool ok = true;

	if (!step_ok(c, "counting suspect features", status, errmsg))
		return;
	memset(a, 0, sizeof(a));
	n = PQntuples(res);
	f = calloc((size_t)n + 1, sizeof(*f));
	ev_n = calloc((size_t)n + 1, sizeof(*ev_n));
	ev_t = calloc((size_t)n + 1, sizeof(*ev_t));
	ev_comm = calloc((size_t)n + 1, sizeof(*ev_comm));
	ev_role = calloc((size_t)n + 1, sizeof(*ev_role));
	if (!f || !ev_n || !ev_t || !ev_comm || !ev_role) {
		ok = false;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		if (PQgetvalue(res, i, 0)[0] == 'n')
			nev = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		if (PQgetvalue(res, i, 0)[0] != 'e')
			continue;
		ev_comm[ne] = PQgetvalue(res, i, 1);
		ev_n[ne] = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		ev_t[ne] = strtoll(PQgetvalue(res, i, 3), NULL, 10);
		ev_role[ne++] = PQgetvalue(res, i, 6);
	}
	for (int i = 0; i < n; i++) {
		struct feat *x = &f[nf];
		const char *comm;
		bool enriched;

		if (PQgetvalue(res, i, 0)[0] != 'f')
			continue;
		x->feature = PQgetvalue(res, i, 1);
		x->sw = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		x->st = strtoll(PQgetvalue(res, i, 3), NULL, 10);
		x->ow = strtoll(PQgetvalue(res, i, 4), NULL, 10);
		x->ot = strtoll(PQgetvalue(res, i, 5), NULL, 10);
		x->comm = PQgetvalue(res, i, 6);
		x->example = PQgetvalue(res, i, 7);
		x->basis = PQgetvalue(res, i, 8);
		x->role = "";
		x->evt = nev;
		comm = evidence_comm(x->feature, x->comm);
		for (int k = 0; comm && *comm && k < ne; k++) {
			if (strcmp(ev_comm[k], comm) == 0) {
				x->ev = ev_n[k];
				x->role = ev_role[k];
			}
		}
		enriched = x->sw * x->ot > x->ow * x->st || (x->ot == 0 && x->sw > 0);
		if (!enriched && x->ev == 0)
			continue;
		x->lp = agg_stats_log10_fisher(x->sw, x->st - x->sw, x->ow, x->ot - x->ow);
		if (x->lp < -1e6 || isnan(x->lp))
			x->lp = -1e6;
		x->score = -x->lp + (x->evt > 0 ? EVIDENCE_WEIGHT * (double)x->ev / (double)x->evt : 0);
		x->pref = feature_pref(x->feature);
		nf++;
	}
	qsort(f, (size_t)nf, sizeof(*f), cmp_feat);
	if (nf > SUSPECTS_TOP)
		nf = SUSPECTS_TOP;
	for (int i = 0; i < nf; i++) {
		double p = f[i].lp < -300 ? 0 : pow(10, f[i].lp);

		arr_i64(&a[0], i + 1);
		arr_str(&a[1], f[i].feature);
		arr_str(&a[2], f[i].basis);
		arr_i64(&a[3], f[i].sw);
		arr_i64(&a[4], f[i].st);
		arr_i64(&a[5], f[i].ow);
		arr_i64(&a[6], f[i].ot);
		arr_f64(&a[7], p);
		arr_f64(&a[8], f[i].lp);
		arr_f64(&a[9], f[i].score);
		arr_i64(&a[10], f[i].ev);
		arr_i64(&a[11], f[i].evt);
		arr_str(&a[12], f[i].role);
		arr_str(&a[13], f[i].example);
	}
	snprintf(id_s, sizeof(id_s), "%" PRId64, cy->pick[cy->ipick - 1]);
	params[0] = id_s;
	ok = arr_params(a, 14, params + 1);
	if (ok)
		submit(c, suspects_sql, 15, params, suspects_done_cb);
out:
	arr_fini(a, 14);
	free(f);
	free(ev_n);
	free(ev_t);
	free(ev_comm);
	free(ev_role);
	if (!ok)
		failed(c, "ranking suspects", -ENOMEM, NULL);
}

static void step_features(struct agg_correlate *c)
{
	struct cycle *cy = c->cy;
	char id_s[24], hosts_s[16], others_s[16], win_s[32], ev_s[16], ow_s[16];
	const char *params[6] = { id_s, hosts_s, others_s, win_s, ev_s, ow_s };

	snprintf(id_s, sizeof(id_s), "%" PRId64, cy->pick[cy->ipick++]);
	snprintf(hosts_s, sizeof(hosts_s), "%d", SUSPECT_HOSTS_MAX);
	snprintf(others_s, sizeof(others_s), "%d", c->o.others_max);
	snprintf(win_s, sizeof(win_s), "%.3f", (double)c->o.lookback_ns / 1e9);
	snprintf(ev_s, sizeof(ev_s), "%d", SUSPECT_EVENTS_MAX);
	snprintf(ow_s, sizeof(ow_s), "%d", ORDINARY_WINDOWS);
	submit(c, features_sql, 6, params, features_done_cb);
}

static void next_incident(struct agg_correlate *c)
{
	struct cycle *cy = c->cy;

	if (c->stopping || cy->ipick >= cy->npick) {
		end_cycle(c, 0);
		return;
	}
	step_features(c);
}

static void pick_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			 void *arg)
{
	struct agg_correlate *c = arg;
	struct cycle *cy = c->cy;

	if (status < 0) {
		failed(c, "finding incidents to rank", status, errmsg);
		return;
	}
	if (PQntuples(res) != 1 || PQnfields(res) != 2) {
		failed(c, "finding incidents to rank", -EPROTO, "unexpected result");
		return;
	}
	c->incidents_open = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	cy->pick = calloc(SUSPECTS_PER_CYCLE + 1, sizeof(*cy->pick));
	if (!cy->pick) {
		failed(c, "finding incidents to rank", -ENOMEM, NULL);
		return;
	}
	/* "{12,15}" */
	for (const char *p = PQgetvalue(res, 0, 1); *p;) {
		char *end;
		int64_t id = strtoll(p + 1, &end, 10);

		if (end == p + 1)
			break;
		if (cy->npick < SUSPECTS_PER_CYCLE)
			cy->pick[cy->npick++] = id;
		else
			cy->info.suspects_more = true;
		p = end;
	}
	next_incident(c);
}

static void step_pick(struct agg_correlate *c)
{
	char ms[24], new_s[24], lb_s[24];
	const char *params[3] = { ms, new_s, lb_s };

	snprintf(ms, sizeof(ms), "%" PRId64, (int64_t)(c->o.suspects_interval_ns / SH_NS_PER_MS));
	snprintf(new_s, sizeof(new_s), "%" PRId64, c->newest_ns ? c->newest_ns : sh_now_wall_ns());
	snprintf(lb_s, sizeof(lb_s), "%" PRId64, c->o.lookback_ns / 1000);
	submit(c, pick_sql, 3, params, pick_done_cb);
}

/* --- lifecycle --- */

int agg_correlate_start(uv_loop_t *loop, const struct agg_correlate_opts *o,
			struct agg_correlate **out)
{
	struct agg_correlate *c;
	int n;

	if (!o->dsn || o->interval_ns <= 0 || o->batch < 1 || o->min_hosts < 2 ||
	    o->lookback_ns <= 0 || o->min_events < 3)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->o = *o;
	c->dsn = strdup(o->dsn);
	n = snprintf(NULL, 0, final_fmt, o->min_hosts);
	c->final_sql = malloc((size_t)n + 1);
	if (!c->dsn || !c->final_sql)
		goto nomem;
	snprintf(c->final_sql, (size_t)n + 1, final_fmt, o->min_hosts);
	c->o.dsn = c->dsn;
	c->db = agg_db_new(loop, c->dsn, "spikehound-correlator");
	if (!c->db || agg_db_set_setup(c->db, setup_sql) != 0)
		goto nomem;
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	uv_timer_start(&c->timer, timer_cb, (uint64_t)(o->interval_ns / SH_NS_PER_MS), 0);
	*out = c;
	return 0;
nomem:
	if (c->db)
		agg_db_close(c->db);
	free(c->final_sql);
	free(c->dsn);
	free(c);
	return -ENOMEM;
}

void agg_correlate_kick(struct agg_correlate *c)
{
	if (c->stopping)
		return;
	if (c->running) {
		c->kicked = true;
		return;
	}
	uv_timer_start(&c->timer, timer_cb, 0, 0);
}

void agg_correlate_stop(struct agg_correlate *c, void (*done_cb)(void *arg), void *arg)
{
	if (c->stopping)
		return;
	c->stopping = true;
	c->done_cb = done_cb;
	c->done_arg = arg;
	uv_timer_stop(&c->timer);
	if (!c->running)
		finish_stop(c);
}

char *agg_correlate_stats_json(const struct agg_correlate *c)
{
	char *s = NULL;
	int n;

	n = snprintf(NULL, 0,
		     "{\"cycles\":%" PRIu64 ",\"events_correlated\":%" PRIu64
		     ",\"incidents_created\":%" PRIu64 ",\"incidents_open\":%" PRId64
		     ",\"suspects_ranked\":%" PRIu64 ",\"errors\":%" PRIu64
		     ",\"last_cycle_ms\":%.1f,\"queue_behind\":%s}",
		     c->cycles, c->events, c->created, c->incidents_open, c->ranked, c->errors,
		     c->last_ms, c->behind ? "true" : "false");
	if (n > 0 && (s = malloc((size_t)n + 1)))
		snprintf(s, (size_t)n + 1,
			 "{\"cycles\":%" PRIu64 ",\"events_correlated\":%" PRIu64
			 ",\"incidents_created\":%" PRIu64 ",\"incidents_open\":%" PRId64
			 ",\"suspects_ranked\":%" PRIu64 ",\"errors\":%" PRIu64
			 ",\"last_cycle_ms\":%.1f,\"queue_behind\":%s}",
			 c->cycles, c->events, c->created, c->incidents_open, c->ranked, c->errors,
			 c->last_ms, c->behind ? "true" : "false");
	return s;
}
