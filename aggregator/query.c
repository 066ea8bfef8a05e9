/* query.c: the query API's routes. Each validates its parameters, runs one
 * parameterized statement through the async db (user data only ever
 * travels as a parameter) and passes the JSON text PostgreSQL built
 * straight to the client.
 *
 * A statement returns one row: either (body) answered with 200, or
 * (status, body) when the answer depends on the data (an unknown host).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "query.h"
#include "query_kernels.h"
#include "timeutil.h"

#define HOSTS_LIMIT_DEFAULT 10000
#define HOSTS_LIMIT_MAX 1000000
#define SPIKES_LIMIT_DEFAULT 1000
#define SPIKES_LIMIT_MAX 100000
#define PROCS_LIMIT_DEFAULT 5000
#define PROCS_LIMIT_MAX 100000
#define SPIKES_WINDOW_DEFAULT (10 * SH_NS_PER_SEC)
#define TOP_WINDOW_DEFAULT (30 * SH_NS_PER_SEC)
#define TOP_WINDOW_MAX (3600 * SH_NS_PER_SEC)
#define SPIKES_WINDOW_MAX (31 * 86400 * SH_NS_PER_SEC)
#define HOST_ARG_MAX 255
#define STACKS_LIMIT_DEFAULT 10000
#define STACKS_LIMIT_MAX 1000000
#define STACKS_RANGE_MAX (31 * 86400 * SH_NS_PER_SEC)
#define INCIDENTS_LIMIT_DEFAULT 100
#define INCIDENTS_LIMIT_MAX 10000
#define INCIDENTS_SINCE_DEFAULT (86400 * SH_NS_PER_SEC)
#define INCIDENTS_RANGE_MAX (366 * 86400 * SH_NS_PER_SEC)
#define INCIDENT_HOSTS_LIMIT_DEFAULT 1000
#define INCIDENT_HOSTS_LIMIT_MAX 100000
#define KIND_ARG_MAX 64
#define LABEL_ARG_MAX 255

/* TS turns a text parameter holding Unix ns into a timestamptz (PostgreSQL
 * keeps microseconds); NS turns a timestamptz column into Unix ns. */
#define TS(p) "(timestamptz 'epoch' + (" p "::bigint / 1000) * interval '1 microsecond')"
#define NS(c) "(extract(epoch FROM " c ") * 1000000000)::bigint"

static const char hosts_sql[] =
	"SELECT json_build_object("
	" 'total', (SELECT count(*) FROM hosts),"
	" 'limit', $1::int,"
	" 'hosts', coalesce(json_agg(x ORDER BY x.hostname, x.host_id), '[]'::json))::text"
	" FROM (SELECT h.host_id, h.hostname, b.kernel_release, b.kernel_version,"
	"  h.last_boot_id, h.labels, " NS("h.first_seen") " AS first_seen_ns,"
	"  " NS("h.last_seen") " AS last_seen_ns, h.spool_dropped, h.cpu_count, h.cpu_model,"
	"  h.memory_bytes, h.agent_version, h.clock_skew_ms,"
	"  (SELECT count(*) FROM boots c WHERE c.host_id = h.host_id) AS boots"
	"  FROM hosts h"
	"  LEFT JOIN LATERAL (SELECT kernel_release, kernel_version FROM boots b"
	"   WHERE b.host_id = h.host_id"
	"   ORDER BY b.boot_id = h.last_boot_id DESC NULLS LAST, b.last_seen DESC LIMIT 1) b ON true"
	"  ORDER BY h.hostname, h.host_id LIMIT $1::int) x";

/* spikes_sql: $1 from ns, $2 to ns, $3 limit, $4 kind or NULL, $5 label
 * key or NULL, $6 label value. Each spike carries its incident_id (null:
 * in none); "incidents" summarizes the incidents of the spikes shown. */
static const char spikes_sql[] =
	"WITH e AS (SELECT s.*, h.hostname, b.kernel_release, i.type AS incident_type,"
	"  row_number() OVER (ORDER BY s.ts, s.host_id, s.seq) AS rn"
	"  FROM spike_events s"
	"  LEFT JOIN hosts h ON h.host_id = s.host_id"
	"  LEFT JOIN boots b ON b.host_id = s.host_id AND b.boot_id = s.boot_id"
	"  LEFT JOIN incidents i ON i.incident_id = s.incident_id"
	"  WHERE s.ts >= " TS("$1") " AND s.ts <= " TS("$2")
	"  AND ($4::text IS NULL OR s.kind = $4::text)"
	"  AND ($5::text IS NULL OR h.labels ->> $5::text = $6::text)"
	"  ORDER BY s.ts, s.host_id, s.seq LIMIT $3::int + 1)"
	" SELECT json_build_object("
	" 'from_ns', $1::bigint, 'to_ns', $2::bigint, 'limit', $3::int,"
	" 'kind', $4::text, 'label', CASE WHEN $5::text IS NULL THEN NULL ELSE $5::text || '=' || $6::text END,"
	" 'truncated', (SELECT count(*) FROM e) > $3::int,"
	" 'spikes', coalesce((SELECT json_agg(json_build_object("
	"  'host_id', e.host_id, 'hostname', e.hostname, 'boot_id', e.boot_id,"
	"  'kernel_release', e.kernel_release, 'seq', e.seq, 'ts_ns', " NS("e.ts") ","
	"  'duration_ns', e.duration_ns, 'kind', e.kind, 'cpu', e.cpu,"
	"  'victim', json_build_object('pid', e.victim_pid, 'tid', e.victim_tid,"
	"   'comm', e.victim_comm, 'cgroup', e.victim_cgroup),"
	"  'detail', e.detail, 'evidence', e.evidence,"
	"  'incident_id', e.incident_id, 'incident_type', e.incident_type)"
	"  ORDER BY e.ts, e.host_id, e.seq) FROM e WHERE e.rn <= $3::int), '[]'::json),"
	" 'incidents', coalesce((SELECT json_agg(x ORDER BY x.first_ns, x.incident_id) FROM"
	"  (SELECT i.incident_id, i.kind, i.type, " NS("i.first_ts") " AS first_ns,"
	"   " NS("i.last_ts") " AS last_ns, i.hosts, i.events, i.period_s, i.period_jitter_s,"
	"   (SELECT row_to_json(t) FROM (SELECT s.feature, s.basis, s.spiking_with, s.spiking_total,"
	"    s.others_with, s.others_total, s.p_value, s.log10_p, s.evidence_events,"
	"    s.evidence_total, s.evidence_role, s.example FROM incident_suspects s"
	"    WHERE s.incident_id = i.incident_id AND s.rank = 1) t) AS top_suspect"
	"   FROM incidents i WHERE i.incident_id IN"
	"    (SELECT e.incident_id FROM e WHERE e.rn <= $3::int)) x), '[]'::json))::text";

/* SUSPECT_FIELDS are a suspect's columns as the API shows them. */
#define SUSPECT_FIELDS                                                                   \
	" s.feature, s.basis, s.spiking_with, s.spiking_total, s.others_with,"          \
	" s.others_total, s.p_value, s.log10_p, s.score, s.evidence_events,"            \
	" s.evidence_total, s.evidence_role, s.example"

/* incidents_sql: incidents that overlap [$1, $2] (ns), most recent first,
 * at most $3, each with its #1 suspect. */
static const char incidents_sql[] =
	"WITH m AS (SELECT * FROM incidents i"
	"  WHERE i.last_ts >= " TS("$1") " AND i.first_ts <= " TS("$2") ")"
	" SELECT json_build_object("
	" 'from_ns', $1::bigint, 'to_ns', $2::bigint, 'limit', $3::int,"
	" 'total', (SELECT count(*) FROM m),"
	" 'incidents', coalesce((SELECT json_agg(x ORDER BY x.last_ns DESC, x.incident_id DESC) FROM"
	"  (SELECT i.incident_id, i.kind, i.type, " NS("i.first_ts") " AS first_ns,"
	"   " NS("i.last_ts") " AS last_ns, i.hosts, i.events, i.period_s, i.period_jitter_s,"
	"   " NS("i.created_at") " AS created_ns, " NS("i.updated_at") " AS updated_ns,"
	"   (SELECT row_to_json(t) FROM (SELECT" SUSPECT_FIELDS " FROM incident_suspects s"
	"    WHERE s.incident_id = i.incident_id AND s.rank = 1) t) AS top_suspect"
	"   FROM m i ORDER BY i.last_ts DESC, i.incident_id DESC LIMIT $3::int) x), '[]'::json))::text";

/* incident_sql: incident $1 with its hosts (at most $2; their event
 * counts and first and last spike), ranked suspects, and one
 * representative event (with evidence, culprits first) of each of its
 * first 10 hosts. Returns (status, body): 404 for an unknown id. */
static const char incident_sql[] =
	"WITH i AS (SELECT * FROM incidents WHERE incident_id = $1::bigint)"
	" SELECT CASE WHEN EXISTS (SELECT 1 FROM i) THEN 200 ELSE 404 END,"
	" (CASE WHEN NOT EXISTS (SELECT 1 FROM i)"
	"  THEN json_build_object('error', format('no incident %s', $1::bigint))"
	"  ELSE (SELECT json_build_object("
	"   'incident', json_build_object('incident_id', i.incident_id, 'kind', i.kind,"
	"    'type', i.type, 'first_ns', " NS("i.first_ts") ", 'last_ns', " NS("i.last_ts") ","
	"    'hosts', i.hosts, 'events', i.events, 'period_s', i.period_s,"
	"    'period_jitter_s', i.period_jitter_s, 'created_ns', " NS("i.created_at") ","
	"    'updated_ns', " NS("i.updated_at") ", 'suspects_ns', " NS("i.suspects_at") "),"
	"   'hosts_limit', $2::int,"
	"   'hosts', coalesce((SELECT json_agg(h ORDER BY h.first_ns, h.hostname) FROM"
	"    (SELECT x.host_id, hs.hostname, hs.labels, hs.clock_skew_ms,"
	"     (SELECT b.kernel_release FROM boots b WHERE b.host_id = x.host_id"
	"      ORDER BY b.boot_id = hs.last_boot_id DESC NULLS LAST, b.last_seen DESC LIMIT 1)"
	"      AS kernel_release,"
	"     x.events, " NS("x.first_ts") " AS first_ns, " NS("x.last_ts") " AS last_ns,"
	"     x.period_s, x.period_jitter_s"
	"     FROM incident_hosts x LEFT JOIN hosts hs ON hs.host_id = x.host_id"
	"     WHERE x.incident_id = i.incident_id ORDER BY x.first_ts, hs.hostname"
	"     LIMIT $2::int) h), '[]'::json),"
	"   'suspects', coalesce((SELECT json_agg(s ORDER BY s.rank) FROM"
	"    (SELECT s.rank," SUSPECT_FIELDS " FROM incident_suspects s"
	"     WHERE s.incident_id = i.incident_id) s), '[]'::json),"
	"   'events', coalesce((SELECT json_agg(json_build_object("
	"    'host_id', e.host_id, 'hostname', e.hostname, 'boot_id', e.boot_id, 'seq', e.seq,"
	"    'ts_ns', " NS("e.ts") ", 'duration_ns', e.duration_ns, 'kind', e.kind, 'cpu', e.cpu,"
	"    'victim', json_build_object('pid', e.victim_pid, 'tid', e.victim_tid,"
	"     'comm', e.victim_comm, 'cgroup', e.victim_cgroup),"
	"    'detail', e.detail, 'evidence', e.evidence) ORDER BY e.ts) FROM"
	"    (SELECT DISTINCT ON (s.host_id) s.*, hs.hostname FROM spike_events s"
	"     LEFT JOIN hosts hs ON hs.host_id = s.host_id"
	"     WHERE s.incident_id = i.incident_id AND s.host_id IN (SELECT x.host_id"
	"      FROM incident_hosts x WHERE x.incident_id = i.incident_id"
	"      ORDER BY x.first_ts, x.host_id LIMIT 10)"
	"     ORDER BY s.host_id, jsonb_typeof(s.evidence -> 'culprits') = 'array'"
	"      AND jsonb_array_length(CASE WHEN jsonb_typeof(s.evidence -> 'culprits') = 'array'"
	"      THEN s.evidence -> 'culprits' ELSE '[]'::jsonb END) > 0 DESC, s.ts) e), '[]'::json))"
	"   FROM i) END)::text";

/* The per-second series of summaries, in schema order (m_<name>). */
#define METRICS(X)                                                                      \
	X(cpu_user_pct) X(cpu_sys_pct) X(cpu_irq_pct) X(cpu_softirq_pct) X(cpu_iowait_pct) \
	X(cpu_steal_pct) X(cpu_idle_pct) X(load1) X(procs_running) X(procs_blocked)        \
	X(psi_cpu_some_avg10) X(psi_mem_some_avg10) X(psi_mem_full_avg10)                 \
	X(psi_io_some_avg10) X(psi_io_full_avg10) X(psi_cpu_some_us) X(psi_mem_some_us)   \
	X(psi_io_some_us) X(mem_total_kb) X(mem_free_kb) X(mem_available_kb)              \
	X(mem_cached_kb) X(slab_reclaimable_kb) X(slab_unreclaimable_kb)                  \
	X(pgscan_direct) X(pgscan_kswapd) X(pgsteal_direct) X(pgsteal_kswapd)             \
	X(allocstall) X(compact_stall) X(dentry_nr) X(dentry_unused) X(dentry_negative)   \
	X(ctxt) X(forks) X(intr) X(softirq_net_rx)
#define M_ARRAY(n) ", s.m_" #n
#define M_ALIAS(n) ", " #n
#define M_COLUMN(n) ", m." #n

/* Processes alive in the window: started by its end, not exited before its
 * start. */
#define PROC_ALIVE                                                                     \
	" p.host_id = b.host_id AND p.start_time <= a.t1"                             \
	" AND (p.exit_time IS NULL OR p.exit_time >= a.t0)"
#define PROC_EVENT                                                                     \
	"(p.start_time >= a.t0 OR (p.exit_time IS NOT NULL AND p.exit_time <= a.t1))"

/* $1 host (hostname, host_id or host_id prefix), $2 from ns, $3 to ns,
 * $4 process limit. Returns (status, body). A host_id match beats a
 * hostname match, which beats a prefix match; several hosts at the best
 * rank make the host ambiguous. Summaries are found through their start
 * (the partition key), assuming intervals shorter than an hour. */
/* HOST_MATCH resolves parameter $1 (hostname, host_id or a unique host_id
 * prefix) into CTE "best" with its match count in "n" (after CTE "a", which
 * must define q and ql = lower(q)); HOST_STATUS is the HTTP status that
 * follows from it, HOST_404 and HOST_409 the error documents. */
#define HOST_MATCH \
	" cand AS (SELECT h.host_id, h.hostname, h.last_boot_id," \
	"  CASE WHEN h.host_id::text = a.ql THEN 1 WHEN lower(h.hostname) = a.ql THEN 2 ELSE 3 END AS rank" \
	"  FROM hosts h, a" \
	"  WHERE h.host_id::text = a.ql OR lower(h.hostname) = a.ql OR starts_with(h.host_id::text, a.ql))," \
	" best AS (SELECT * FROM cand WHERE rank = (SELECT min(rank) FROM cand))," \
	" n AS (SELECT count(*)::int AS n FROM best)"
#define HOST_STATUS " CASE n.n WHEN 0 THEN 404 WHEN 1 THEN 200 ELSE 409 END"
#define HOST_404 " json_build_object('error', format('no host matches \"%s\"', a.q))"
#define HOST_409 \
	" json_build_object(" \
	"   'error', format('host \"%s\" is ambiguous: it matches %s hosts (%s); use a longer host_id prefix'," \
	"    a.q, n.n, (SELECT string_agg(c.hostname || ' ' || c.host_id, ', ') FROM" \
	"     (SELECT * FROM best ORDER BY hostname, host_id LIMIT 10) c))," \
	"   'candidates', (SELECT json_agg(json_build_object('host_id', c.host_id, 'hostname', c.hostname))" \
	"    FROM (SELECT * FROM best ORDER BY hostname, host_id LIMIT 100) c))"

static const char top_sql[] =
	"WITH a AS (SELECT $1::text AS q, lower($1::text) AS ql,"
	"  " TS("$2") " AS t0, " TS("$3") " AS t1),"
	HOST_MATCH
	" SELECT" HOST_STATUS ","
	" (CASE n.n"
	"  WHEN 0 THEN" HOST_404
	"  WHEN 1 THEN (SELECT json_build_object("
	"   'host', json_build_object('host_id', b.host_id, 'hostname', b.hostname,"
	"    'kernel_release', (SELECT k.kernel_release FROM boots k WHERE k.host_id = b.host_id"
	"     ORDER BY k.boot_id = b.last_boot_id DESC NULLS LAST, k.last_seen DESC LIMIT 1)),"
	"   'from_ns', $2::bigint, 'to_ns', $3::bigint,"
	"   'metrics', coalesce((SELECT json_agg(m ORDER BY m.t_ns) FROM"
	"    (SELECT DISTINCT ON (m.t) " NS("m.t") " AS t_ns" METRICS(M_COLUMN)
	"     FROM summaries s CROSS JOIN LATERAL unnest(s.m_time" METRICS(M_ARRAY) ")"
	"      AS m(t" METRICS(M_ALIAS) ")"
	"     WHERE s.host_id = b.host_id AND s.ts_start <= a.t1"
	"      AND s.ts_start > a.t0 - interval '1 hour' AND s.ts_end >= a.t0"
	"      AND m.t >= a.t0 AND m.t <= a.t1"
	"     ORDER BY m.t, s.seq DESC) m), '[]'::json),"
	"   'processes_total', (SELECT count(*) FROM processes p WHERE" PROC_ALIVE "),"
	"   'processes', coalesce((SELECT json_agg(p ORDER BY p.start_ns, p.pid) FROM"
	"    (SELECT p.pid, p.ppid, p.uid, p.comm, p.exe, p.cmdline, p.cgroup, p.boot_id,"
	"     " NS("p.start_time") " AS start_ns, " NS("p.exit_time") " AS exit_ns,"
	"     p.exit_inferred, p.start_time >= a.t0 AS started_in_window,"
	"     p.exit_time IS NOT NULL AND p.exit_time <= a.t1 AS exited_in_window"
	"     FROM processes p WHERE" PROC_ALIVE
	"     ORDER BY " PROC_EVENT " DESC, p.start_time DESC, p.pid LIMIT $4::int) p), '[]'::json),"
	"   'processes_limit', $4::int)"
	"   FROM best b)"
	"  ELSE" HOST_409
	"  END)::text"
	" FROM n, a";

/* stacks_sql merges the top stacks of one host's summaries overlapping
 * [$2, $3] (Unix ns): $1 host, $4 limit. */
static const char stacks_sql[] =
	"WITH a AS (SELECT $1::text AS q, lower($1::text) AS ql,"
	"  " TS("$2") " AS t0, " TS("$3") " AS t1),"
	HOST_MATCH ","
	" s AS (SELECT s.* FROM summaries s, best b, a WHERE s.host_id = b.host_id"
	"  AND s.ts_start < a.t1 AND s.ts_end > a.t0 AND s.ts_start > a.t0 - interval '1 hour')"
	" SELECT" HOST_STATUS ","
	" (CASE n.n"
	"  WHEN 0 THEN" HOST_404
	"  WHEN 1 THEN (SELECT json_build_object("
	"   'host', json_build_object('host_id', b.host_id, 'hostname', b.hostname),"
	"   'from_ns', $2::bigint, 'to_ns', $3::bigint,"
	"   'summaries', (SELECT count(*) FROM s),"
	"   'samples', (SELECT coalesce(sum(samples_total), 0) FROM s),"
	"   'stacks', coalesce((SELECT json_agg(x ORDER BY x.count DESC, x.stack) FROM"
	"    (SELECT k.folded AS stack, sum(u.c)::bigint AS count"
	"     FROM s CROSS JOIN LATERAL unnest(s.stack_ids, s.stack_counts) AS u(id, c)"
	"     JOIN stacks k ON k.stack_id = u.id"
	"     GROUP BY k.folded ORDER BY 2 DESC, 1 LIMIT $4::int) x), '[]'::json))"
	"   FROM best b)"
	"  ELSE" HOST_409
	"  END)::text"
	" FROM n, a";

static const char index_html[] =
	"<!DOCTYPE html>\n"
	"<html><head><meta charset=\"utf-8\"><title>spikehound</title></head><body>\n"
	"<h1>spikehound aggregator</h1>\n"
	"<p><a href=\"/ui/\">Web pages</a>: spikes by time, incidents, the kernel report, "
	"captures with heat maps and flame graphs.</p>\n"
	"<p>JSON query API (times: Unix ns or <code>now</code>, <code>-60s</code>, ISO 8601; "
	"windows: ns or <code>30s</code>; a window is at&plusmn;window):</p>\n"
	"<ul>\n"
	"<li><a href=\"/api/hosts\">/api/hosts</a> [limit] &mdash; hosts, their kernel and "
	"last contact</li>\n"
	"<li><a href=\"/api/spikes?at=now&amp;window=1h\">/api/spikes?at=T&amp;window=D</a> "
	"[kind=K] [label=k=v] [limit] &mdash; spike events across all hosts, with their "
	"incident</li>\n"
	"<li>/api/top?host=H&amp;at=T&amp;window=D [limit] &mdash; a host's per-second "
	"metrics and processes</li>\n"
	"<li><a href=\"/api/incidents\">/api/incidents</a> [since=D | from=T&amp;to=T] [limit] "
	"&mdash; fleet incidents (bursts, periodic, recurring) with their top suspect</li>\n"
	"<li>/api/incident?id=N [limit] &mdash; one incident: hosts, ranked suspects with their "
	"numbers, representative events</li>\n"
	"<li><a href=\"/api/kernels?since=7d\">/api/kernels</a> [since=D] [by=kernel|label:KEY] [baseline=R] &mdash; the kernel report (<a href=\"/api/kernels?since=7d&amp;format=html\">as a page</a>)</li>\n"
	"<li><a href=\"/api/stats\">/api/stats</a> &mdash; the aggregator's self-metrics</li>\n"
	"</ul>\n"
	"<p>From a shell: <code>spikehound --help</code>.</p>\n"
	"</body></html>\n";

/* parse_int64 parses a whole decimal integer. Returns 0 or -EINVAL. */
static int parse_int64(const char *s, int64_t *v)
{
	char *end;
	long long x;

	if (*s == '\0' || (*s != '-' && (*s < '0' || *s > '9')))
		return -EINVAL;
	errno = 0;
	x = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -EINVAL;
	*v = x;
	return 0;
}

/* param_time reads a time parameter (Unix ns, or what sh_parse_time
 * accepts); def is used when it is absent. Returns 0 or answers req with
 * 400 and returns -EINVAL (req is then gone). */
static int param_time(struct agg_http_req *req, const char *name, int64_t def, int64_t *ns)
{
	const char *s = agg_http_req_param(req, name);

	if (s == NULL) {
		*ns = def;
		return 0;
	}
	/* Bare integers are ns; sh_parse_time's bare (fractional) seconds
	 * would be too easy to mix up with them. */
	if (parse_int64(s, ns) == 0 ||
	    (strspn(s, "0123456789.") != strlen(s) && sh_parse_time(s, sh_now_wall_ns(), ns) == 0))
		return 0;
	agg_http_respond_error(req, 400,
			       "bad %s \"%.64s\": expected Unix ns (an integer), \"now\", \"-60s\", "
			       "ISO 8601 (2025-11-22T10:21:07Z) or @<unix seconds>",
			       name, s);
	return -EINVAL;
}

/* param_duration reads a duration parameter (ns, or what
 * sh_parse_duration accepts) in [0, max]. Returns 0 or answers req with 400. */
static int param_duration(struct agg_http_req *req, const char *name, int64_t def, int64_t max,
			  int64_t *ns)
{
	const char *s = agg_http_req_param(req, name);

	if (s == NULL) {
		*ns = def;
		return 0;
	}
	if ((parse_int64(s, ns) == 0 ||
	     (strspn(s, "0123456789.") != strlen(s) && sh_parse_duration(s, ns) == 0)) &&
	    *ns >= 0 && *ns <= max)
		return 0;
	agg_http_respond_error(req, 400,
			       "bad %s \"%.64s\": expected ns or a duration like 30s, 250ms, "
			       "5m, between 0 and %" PRId64 " s",
			       name, s, (int64_t)(max / SH_NS_PER_SEC));
	return -EINVAL;
}

/* param_window reads the window half-width. */
static int param_window(struct agg_http_req *req, int64_t def, int64_t max, int64_t *ns)
{
	return param_duration(req, "window", def, max, ns);
}

/* param_limit reads the limit parameter in [1, max]. Returns 0 or answers
 * req with 400. */
static int param_limit(struct agg_http_req *req, int def, int max, int *limit)
{
	const char *s = agg_http_req_param(req, "limit");
	int64_t v;

	if (s == NULL) {
		*limit = def;
		return 0;
	}
	if (parse_int64(s, &v) == 0 && v >= 1 && v <= max) {
		*limit = (int)v;
		return 0;
	}
	agg_http_respond_error(req, 400, "bad limit \"%.64s\": expected 1 to %d", s, max);
	return -EINVAL;
}

/* window_bounds computes [at - window, at + window]. Returns 0 or answers
 * req with 400. */
static int window_bounds(struct agg_http_req *req, int64_t at, int64_t window, int64_t *from,
			 int64_t *to)
{
	if (__builtin_sub_overflow(at, window, from) || __builtin_add_overflow(at, window, to)) {
		agg_http_respond_error(req, 400, "time window out of range");
		return -EINVAL;
	}
	return 0;
}

static bool db_unavailable(int status)
{
	switch (status) {
	case -ECONNRESET:
	case -ECONNREFUSED:
	case -ECONNABORTED:
	case -ENOTCONN:
	case -ECANCELED:
	case -ESHUTDOWN:
	case -EAGAIN:
	case -ETIMEDOUT:
		return true;
	default:
		return false;
	}
}

/* sql_done_cb passes the JSON a statement built to the client of req. */
static void sql_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			void *arg)
{
	struct agg_http_req *req = arg;
	int code = 200, col = 0;

	if (status < 0) {
		if (db_unavailable(status)) {
			agg_http_respond_error(req, 503, "database unavailable: %s", errmsg);
		} else {
			sh_err("query for %s failed: %s", agg_http_req_path(req), errmsg);
			agg_http_respond_error(req, 500, "database query failed: %s", errmsg);
		}
		return;
	}
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
	    PQnfields(res) < 1 || PQnfields(res) > 2) {
		sh_err("query for %s returned an unexpected result", agg_http_req_path(req));
		agg_http_respond_error(req, 500, "database query returned an unexpected result");
		return;
	}
	if (PQnfields(res) == 2) {
		code = atoi(PQgetvalue(res, 0, 0));
		col = 1;
		if (code < 200 || code > 599)
			code = 500;
	}
	if (PQgetisnull(res, 0, col)) {
		agg_http_respond_error(req, 500, "database query returned no document");
		return;
	}
	agg_http_respond(req, code, "application/json", PQgetvalue(res, 0, col),
			 (size_t)PQgetlength(res, 0, col));
}

/* run_sql submits sql with nparams text parameters for req; answers req
 * itself if the db is down or the job cannot be queued. */
static void run_sql(struct agg_query *q, struct agg_http_req *req, const char *sql, int nparams,
		    const char *const *params)
{
	agg_query_run_json(q->db, req, sql, nparams, params);
}

void agg_query_run_json(struct agg_db *db, struct agg_http_req *req, const char *sql, int nparams,
			const char *const *params)
{
	int rv;

	if (!agg_db_ready(db)) {
		agg_http_respond_error(req, 503, "database unavailable");
		return;
	}
	rv = agg_db_query(db, sql, nparams, params, sql_done_cb, req);
	if (rv < 0)
		agg_http_respond_error(req, rv == -ENOMEM ? 500 : 503,
				       "could not queue the database query: %s", strerror(-rv));
}

static void index_cb(struct agg_http_req *req, void *arg)
{
	agg_http_respond(req, 200, "text/html; charset=utf-8", index_html, sizeof(index_html) - 1);
}

static void hosts_cb(struct agg_http_req *req, void *arg)
{
	struct agg_query *q = arg;
	char limit_s[24];
	const char *params[1] = {limit_s};
	int limit;

	if (param_limit(req, HOSTS_LIMIT_DEFAULT, HOSTS_LIMIT_MAX, &limit) < 0)
		return;
	snprintf(limit_s, sizeof(limit_s), "%d", limit);
	run_sql(q, req, hosts_sql, 1, params);
}

static void spikes_cb(struct agg_http_req *req, void *arg)
{
	struct agg_query *q = arg;
	char from_s[24], to_s[24], limit_s[24], key[LABEL_ARG_MAX + 1];
	const char *kind = agg_http_req_param(req, "kind"), *label = agg_http_req_param(req, "label");
	const char *params[6] = {from_s, to_s, limit_s, NULL, NULL, NULL};
	int64_t at, window, from, to;
	int limit;

	if (kind != NULL && (kind[0] == '\0' || strlen(kind) > KIND_ARG_MAX)) {
		agg_http_respond_error(req, 400, "bad kind: expected a spike kind like mmap_lock_wait"
				       " (at most %d bytes)", KIND_ARG_MAX);
		return;
	}
	if (label != NULL) {
		const char *eq = strchr(label, '=');

		if (eq == NULL || eq == label || strlen(label) > LABEL_ARG_MAX) {
			agg_http_respond_error(req, 400, "bad label \"%.64s\": expected KEY=VALUE, like"
					       " rack=r07", label);
			return;
		}
		snprintf(key, sizeof(key), "%.*s", (int)(eq - label), label);
		params[4] = key;
		params[5] = eq + 1;
	}
	params[3] = kind;

	if (agg_http_req_param(req, "at") == NULL) {
		agg_http_respond_error(req, 400, "missing parameter \"at\" (the time to search around)");
		return;
	}
	if (param_time(req, "at", 0, &at) < 0 ||
	    param_window(req, SPIKES_WINDOW_DEFAULT, SPIKES_WINDOW_MAX, &window) < 0 ||
	    param_limit(req, SPIKES_LIMIT_DEFAULT, SPIKES_LIMIT_MAX, &limit) < 0 ||
	    window_bounds(req, at, window, &from, &to) < 0)
		return;
	snprintf(from_s, sizeof(from_s), "%" PRId64, from);
	snprintf(to_s, sizeof(to_s), "%" PRId64, to);
	snprintf(limit_s, sizeof(limit_s), "%d", limit);
	run_sql(q, req, spikes_sql, 6, params);
}

/* param_since reads "since" (a duration before now) or "from" and "to"
 * (times) into [*from, *to]. Returns 0 or answers req with 400. */
static int param_since(struct agg_http_req *req, int64_t def, int64_t max, int64_t *from,
		       int64_t *to)
{
	const char *s = agg_http_req_param(req, "since");
	int64_t now = sh_now_wall_ns(), d;

	if (s != NULL && (agg_http_req_param(req, "from") != NULL || agg_http_req_param(req, "to") != NULL)) {
		agg_http_respond_error(req, 400, "give either \"since\" or \"from\" and \"to\", not both");
		return -EINVAL;
	}
	if (s != NULL) {
		if ((parse_int64(s, &d) == 0 ||
		     (strspn(s, "0123456789.") != strlen(s) && sh_parse_duration(s, &d) == 0)) &&
		    d > 0 && d <= max) {
			*from = now - d;
			*to = now;
			return 0;
		}
		agg_http_respond_error(req, 400,
				       "bad since \"%.64s\": expected ns or a duration like 1h, 30m, 7d,"
				       " at most %" PRId64 " days",
				       s, (int64_t)(max / (86400 * SH_NS_PER_SEC)));
		return -EINVAL;
	}
	if (param_time(req, "from", now - def, from) < 0 || param_time(req, "to", now, to) < 0)
		return -EINVAL;
	if (*to < *from || *to - *from > max) {
		agg_http_respond_error(req, 400, "\"from\" must be before \"to\", at most %" PRId64
				       " days apart", (int64_t)(max / (86400 * SH_NS_PER_SEC)));
		return -EINVAL;
	}
	return 0;
}

static void incidents_cb(struct agg_http_req *req, void *arg)
{
	struct agg_query *q = arg;
	char from_s[24], to_s[24], limit_s[24];
	const char *params[3] = {from_s, to_s, limit_s};
	int64_t from, to;
	int limit;

	if (param_since(req, INCIDENTS_SINCE_DEFAULT, INCIDENTS_RANGE_MAX, &from, &to) < 0 ||
	    param_limit(req, INCIDENTS_LIMIT_DEFAULT, INCIDENTS_LIMIT_MAX, &limit) < 0)
		return;
	snprintf(from_s, sizeof(from_s), "%" PRId64, from);
	snprintf(to_s, sizeof(to_s), "%" PRId64, to);
	snprintf(limit_s, sizeof(limit_s), "%d", limit);
	run_sql(q, req, incidents_sql, 3, params);
}

static void incident_cb(struct agg_http_req *req, void *arg)
{
	struct agg_query *q = arg;
	const char *id = agg_http_req_param(req, "id");
	char id_s[24], limit_s[24];
	const char *params[2] = {id_s, limit_s};
	int64_t v;
	int limit;

	if (id == NULL) {
		agg_http_respond_error(req, 400, "missing parameter \"id\" (an incident number)");
		return;
	}
	if (parse_int64(id, &v) != 0 || v < 1) {
		agg_http_respond_error(req, 400, "bad id \"%.64s\": expected an incident number", id);
		return;
	}
	if (param_limit(req, INCIDENT_HOSTS_LIMIT_DEFAULT, INCIDENT_HOSTS_LIMIT_MAX, &limit) < 0)
		return;
	snprintf(id_s, sizeof(id_s), "%" PRId64, v);
	snprintf(limit_s, sizeof(limit_s), "%d", limit);
	run_sql(q, req, incident_sql, 2, params);
}

/* check_host checks the host parameter (a hostname, host_id or host_id
 * prefix). Returns 0 or answers req with 400. */
static int check_host(struct agg_http_req *req, const char *host)
{
	if (host == NULL || host[0] == '\0') {
		agg_http_respond_error(req, 400,
				       "missing parameter \"host\" (a hostname, host_id or host_id prefix)");
		return -EINVAL;
	}
	if (strlen(host) > HOST_ARG_MAX) {
		agg_http_respond_error(req, 400, "parameter \"host\" is longer than %d bytes",
				       HOST_ARG_MAX);
		return -EINVAL;
	}
	return 0;
}

static void top_cb(struct agg_http_req *req, void *arg)
{
	struct agg_query *q = arg;
	const char *host = agg_http_req_param(req, "host");
	char from_s[24], to_s[24], limit_s[24];
	const char *params[4] = {host, from_s, to_s, limit_s};
	int64_t at, window, from, to;
	int limit;

	if (check_host(req, host) < 0)
		return;
	if (param_time(req, "at", sh_now_wall_ns(), &at) < 0 ||
	    param_window(req, TOP_WINDOW_DEFAULT, TOP_WINDOW_MAX, &window) < 0 ||
	    param_limit(req, PROCS_LIMIT_DEFAULT, PROCS_LIMIT_MAX, &limit) < 0 ||
	    window_bounds(req, at, window, &from, &to) < 0)
		return;
	snprintf(from_s, sizeof(from_s), "%" PRId64, from);
	snprintf(to_s, sizeof(to_s), "%" PRId64, to);
	snprintf(limit_s, sizeof(limit_s), "%d", limit);
	run_sql(q, req, top_sql, 4, params);
}

static void stacks_cb(struct agg_http_req *req, void *arg)
{
	struct agg_query *q = arg;
	const char *host = agg_http_req_param(req, "host");
	char from_s[24], to_s[24], limit_s[24];
	const char *params[4] = {host, from_s, to_s, limit_s};
	int64_t now = sh_now_wall_ns(), from, to;
	int limit;

	if (check_host(req, host) < 0)
		return;
	if (param_time(req, "from", now - 60 * SH_NS_PER_SEC, &from) < 0 ||
	    param_time(req, "to", now, &to) < 0 ||
	    param_limit(req, STACKS_LIMIT_DEFAULT, STACKS_LIMIT_MAX, &limit) < 0)
		return;
	if (to <= from || to - from > STACKS_RANGE_MAX) {
		agg_http_respond_error(req, 400, "\"from\" must be before \"to\", at most 31 days apart");
		return;
	}
	snprintf(from_s, sizeof(from_s), "%" PRId64, from);
	snprintf(to_s, sizeof(to_s), "%" PRId64, to);
	snprintf(limit_s, sizeof(limit_s), "%d", limit);
	run_sql(q, req, stacks_sql, 4, params);
}

static void stats_cb(struct agg_http_req *req, void *arg)
{
	struct agg_query *q = arg;
	char *json = q->stats_json != NULL ? q->stats_json(q->stats_arg) : NULL;

	if (json == NULL) {
		agg_http_respond_error(req, 503, "self-metrics unavailable");
		return;
	}
	agg_http_respond(req, 200, "application/json", json, strlen(json));
	free(json);
}

int agg_query_init(struct agg_query *q, struct agg_db *db, agg_query_stats_fn stats_json,
		   void *stats_arg)
{
	if (q == NULL || db == NULL)
		return -EINVAL;
	memset(q, 0, sizeof(*q));
	q->db = db;
	q->stats_json = stats_json;
	q->stats_arg = stats_arg;
	return 0;
}

int agg_query_register(struct agg_query *q, struct agg_http *http)
{
	static const struct {
		const char *path;
		agg_http_route_cb cb;
	} routes[] = {
		{"/", index_cb},
		{"/api/hosts", hosts_cb},
		{"/api/spikes", spikes_cb},
		{"/api/incidents", incidents_cb},
		{"/api/incident", incident_cb},
		{"/api/top", top_cb},
		{"/api/stacks", stacks_cb},
		{"/api/stats", stats_cb},
		{"/api/kernels", agg_query_kernels_cb},
	};
	size_t i;
	int rv;

	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if ((rv = agg_http_route(http, "GET", routes[i].path, routes[i].cb, q)) < 0)
			return rv;
	}
	return 0;
}

void agg_query_fini(struct agg_query *q)
{
	if (q != NULL)
		q->db = NULL;
}

/* --- helpers for routes outside this file (query.h) --- */

int agg_query_param_time(struct agg_http_req *req, const char *name, int64_t def, int64_t *ns)
{
	return param_time(req, name, def, ns);
}

int agg_query_param_duration(struct agg_http_req *req, const char *name, int64_t def, int64_t max,
			     int64_t *ns)
{
	return param_duration(req, name, def, max, ns);
}

int agg_query_param_limit(struct agg_http_req *req, int def, int max, int *limit)
{
	return param_limit(req, def, max, limit);
}
