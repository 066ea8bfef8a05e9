/* query.h: the JSON query API (hosts, spikes, per-host top, self-metrics)
 * served over the HTTP server of http.h and answered from PostgreSQL.
 *
 * Every route runs one parameterized statement that makes PostgreSQL build
 * the whole JSON document; the loop passes its text through unparsed.
 *
 *   GET /              a small HTML index of the API
 *   GET /api/hosts     [limit=N]                     (default 10000)
 *   GET /api/spikes    at=T [window=D] [limit=N]     (10 s, 1000)
 *   GET /api/top       host=H [at=T] [window=D] [limit=N]  (now, 30 s, 5000)
 *   GET /api/stats     the aggregator's self-metrics (the stats provider)
 *
 * T is Unix ns (an integer), or anything sh_parse_time() accepts ("now",
 * "-60s", ISO 8601, "@<unix s>"); D is ns (an integer) or anything
 * sh_parse_duration() accepts ("30s"). A window is symmetric: [at-D, at+D].
 * H is a hostname, a host_id or a unique host_id prefix. Times in answers
 * are Unix ns in fields named *_ns. Errors are {"error": "..."} with 400
 * (bad parameter), 404 (no such host or endpoint), 405, 409 (ambiguous
 * host, with "candidates"), 500 (query failed) or 503 (database or stats
 * unavailable, shutting down).
 */
#ifndef AGG_QUERY_H
#define AGG_QUERY_H

#include "db.h"
#include "http.h"

/* agg_query_stats_fn returns the aggregator's self-metrics as the text of
 * one JSON object, malloc'd (the caller frees it), or NULL on failure. It
 * is called on the loop thread. */
typedef char *(*agg_query_stats_fn)(void *arg);

/* struct agg_query is the query API's state; embed it and set it up with
 * agg_query_init(). */
struct agg_query {
	struct agg_db *db;             /* borrowed */
	agg_query_stats_fn stats_json; /* may be NULL: /api/stats answers 503 */
	void *stats_arg;
};

/* agg_query_init sets q up to answer from db (borrowed) and to serve /api/stats from stats_json(stats_arg).
 * Returns 0 or -EINVAL. */
int agg_query_init(struct agg_query *q, struct agg_db *db, agg_query_stats_fn stats_json,
		   void *stats_arg);

/* agg_query_register adds q's routes (see above) to http; q is borrowed
 * until agg_http_stop(http). Shut down in this order: agg_http_stop(), then
 * agg_db_close() (routes call into the db; queries still running then fail
 * and their answers are discarded), then run the loop. Returns 0 or a
 * negative errno from agg_http_route(). */
int agg_query_register(struct agg_query *q, struct agg_http *http);

/* Helpers for routes registered by other modules (capture.c, ...): each
 * reads one query-string parameter, returns 0, or answers req with 400 and
 * returns -EINVAL (req is then gone). Times are Unix ns or what
 * sh_parse_time() accepts; durations ns or what sh_parse_duration()
 * accepts, within [0, max]; limits within [1, max]. */
int agg_query_param_time(struct agg_http_req *req, const char *name, int64_t def, int64_t *ns);
int agg_query_param_duration(struct agg_http_req *req, const char *name, int64_t def, int64_t max,
			     int64_t *ns);
int agg_query_param_limit(struct agg_http_req *req, int def, int max, int *limit);

/* agg_query_run_json runs sql on db (one row: body, or status and body, as
 * the routes here do) and answers req with it; takes ownership of req. */
void agg_query_run_json(struct agg_db *db, struct agg_http_req *req, const char *sql, int nparams,
			const char *const *params);

/* agg_query_fini releases q (nothing to free today; for symmetry). */
void agg_query_fini(struct agg_query *q);

#endif
