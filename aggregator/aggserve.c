/* aggserve.c: the aggregator's event loop. One libuv loop owns all state:
 * ingest (nng under uv_poll), the correlator, the query API, housekeeping
 * timers and the signal handlers that start a graceful stop. */
#include "aggserve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "capture.h"
#include "capture_web.h"
#include "control.h"
#include "correlate.h"
#include "db.h"
#include "http.h"
#include "ingest.h"
#include "query.h"
#include "log.h"
#include "webui.h"
#include "timeutil.h"

struct serve {
	const struct agg_serve_opts *o;
	uv_loop_t loop;
	uv_signal_t sigterm, sigint;
	uv_timer_t stats_timer, maint_timer;
	struct agg_ingest *ingest;
	struct agg_correlate *correlate;
	struct agg_control *control;
	struct agg_capture *capture;
	int stopping_parts; /* ingest, correlator, capture store, control still stopping */
	struct agg_db *maint_db;
	struct agg_db *query_db;
	struct agg_http *http;
	struct agg_query query;
	struct agg_capture_web *capweb; /* draws captures for the web pages */
	bool stopping;
};

static void closed_cb(uv_handle_t *h)
{
	(void)h;
}

/* part_stopped closes the rest once ingest and the correlator are done. */
static void part_stopped(struct serve *s)
{
	if (--s->stopping_parts > 0)
		return;
	uv_close((uv_handle_t *)&s->sigterm, closed_cb);
	uv_close((uv_handle_t *)&s->sigint, closed_cb);
	uv_close((uv_handle_t *)&s->stats_timer, closed_cb);
	uv_close((uv_handle_t *)&s->maint_timer, closed_cb);
	agg_db_close(s->maint_db);
	s->maint_db = NULL;
	/* the query routes use the query connection: the server went first */
	agg_query_fini(&s->query);
	/* renders under way answer (discarded) and free it when done */
	agg_capture_web_stop(s->capweb);
	s->capweb = NULL;
	agg_db_close(s->query_db);
	s->query_db = NULL;
}

static void ingest_stopped_cb(void *arg)
{
	struct serve *s = arg;

	s->ingest = NULL;
	sh_info("ingest stopped: every received request was answered");
	part_stopped(s);
}

static void capture_stopped_cb(void *arg)
{
	struct serve *s = arg;

	s->capture = NULL;
	part_stopped(s);
}

static void control_stopped_cb(void *arg)
{
	struct serve *s = arg;

	s->control = NULL;
	part_stopped(s);
}

static void correlate_stopped_cb(void *arg)
{
	struct serve *s = arg;

	s->correlate = NULL;
	sh_info("correlator stopped");
	part_stopped(s);
}

/* stats_json_cb is the query API's /api/stats provider: ingest's counters
 * plus the HTTP server's, the capture renderer's ("capture_web") and the
 * correlator's ("correlator": {...}), as one JSON object. */
static char *stats_json_cb(void *arg)
{
	struct serve *s = arg;
	struct agg_http_stats hs = { 0 };
	char *ingest = s->ingest ? agg_ingest_stats_json(s->ingest) : NULL, *out;
	char *corr = s->correlate ? agg_correlate_stats_json(s->correlate) : NULL;
	char *ctl = s->control ? agg_control_stats_json(s->control) : NULL;
	char *capt = s->capture ? agg_capture_stats_json(s->capture) : NULL;
	struct agg_capture_web_stats ws = { 0 };
	char web[200];
	size_t len, cap;

	if (s->http)
		agg_http_get_stats(s->http, &hs);
	if (s->capweb)
		agg_capture_web_get_stats(s->capweb, &ws);
	snprintf(web, sizeof(web),
		 "{\"renders\":%llu,\"refused_busy\":%llu,\"corrupt\":%llu,\"too_large\":%llu}",
		 (unsigned long long)ws.renders, (unsigned long long)ws.refused,
		 (unsigned long long)ws.corrupt, (unsigned long long)ws.too_large);
	if (!ingest) {
		free(corr);
		free(ctl);
		free(capt);
		return NULL;
	}
	len = strlen(ingest);
	cap = len + 300 + strlen(web) + (corr ? strlen(corr) : 0) + (ctl ? strlen(ctl) : 0) +
	      (capt ? strlen(capt) : 0);
	out = malloc(cap);
	if (out && len > 1) {
		/* splice the other parts' counters into ingest's object */
		snprintf(out, cap,
			 "%.*s,\"http_requests\":%llu,\"http_errors\":%llu,\"capture_web\":%s%s%s%s%s%s%s}",
			 (int)(len - 1), ingest, (unsigned long long)hs.requests,
			 (unsigned long long)hs.errors, web, corr ? ",\"correlator\":" : "", corr ? corr : "",
			 ctl ? ",\"control\":" : "", ctl ? ctl : "", capt ? ",\"captures\":" : "",
			 capt ? capt : "");
	}
	free(ingest);
	free(corr);
	free(ctl);
	free(capt);
	return out;
}

/* correlate_opts fills o from the configuration. */
static void correlate_opts(const struct agg_serve_opts *so, struct agg_correlate_opts *o)
{
	const struct agg_config *c = so->cfg;

	agg_correlate_opts_default(o);
	o->dsn = so->dsn;
	o->interval_ns = c->correlate_interval_ns;
	o->gap_ns = c->correlate_gap_ns;
	o->min_hosts = c->correlate_min_hosts;
	o->lookback_ns = c->correlate_lookback_ns;
	o->burst_p = c->correlate_burst_p;
	o->recurring_p = c->correlate_recurring_p;
	o->periodic_p = c->correlate_periodic_p;
	o->min_events = c->correlate_min_events;
	o->batch = c->correlate_batch;
	o->suspects_interval_ns = c->correlate_suspects_interval_ns;
	o->others_max = c->correlate_others_max;
}

static void signal_cb(uv_signal_t *h, int signum)
{
	struct serve *s = h->data;

	if (s->stopping) {
		sh_warn("second signal: still stopping, waiting for the last commit");
		return;
	}
	s->stopping = true;
	sh_info("received %s: stopping gracefully", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	uv_timer_stop(&s->stats_timer);
	uv_timer_stop(&s->maint_timer);
	if (s->http) {
		agg_http_stop(s->http);
		s->http = NULL;
	}
	agg_ingest_log_stats(s->ingest);
	s->stopping_parts = 1 + (s->correlate != NULL) + (s->capture != NULL) + (s->control != NULL);
	if (s->correlate)
		agg_correlate_stop(s->correlate, correlate_stopped_cb, s);
	/* the capture store pushes commands through the control plane: it goes first */
	if (s->capture)
		agg_capture_stop(s->capture, capture_stopped_cb, s);
	if (s->control)
		agg_control_stop(s->control, control_stopped_cb, s);
	agg_ingest_stop(s->ingest, ingest_stopped_cb, s);
}

static void stats_cb(uv_timer_t *t)
{
	struct serve *s = t->data;

	agg_ingest_log_stats(s->ingest);
}

static void maint_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			  void *arg)
{
	if (status != 0 && status != -ECANCELED)
		sh_warn("partition maintenance failed: %s", errmsg);
	else if (status == 0 && PQntuples(res) == 1 && atoi(PQgetvalue(res, 0, 0)) > 0)
		sh_info("created %s new partition(s)", PQgetvalue(res, 0, 0));
}

static void maint_cb(uv_timer_t *t)
{
	struct serve *s = t->data;
	char ret[16];
	const char *params[1] = { ret };

	snprintf(ret, sizeof(ret), "%d", s->o->cfg->retention_days);
	agg_db_query(s->maint_db, "SELECT sh_ensure_partitions(2, 3, $1::int)", 1, params,
		     maint_done_cb, s);
	/* processes are one row per (boot, pid, start): exited ones past
	 * retention go (the time-partitioned tables drop whole days) */
	agg_db_query(s->maint_db,
		     "WITH d AS (DELETE FROM processes WHERE exit_time < now() - $1::int * interval '1 day'"
		     " RETURNING 1) SELECT 0 - count(*) FROM d",
		     1, params, maint_done_cb, s);
	/* incidents whose events are gone with their partitions go too, and
	 * queue rows of such events (the correlator was off that long) */
	agg_db_query(s->maint_db,
		     "WITH i AS (DELETE FROM incidents WHERE last_ts < now() - $1::int * interval '1 day'"
		     " RETURNING incident_id),"
		     " h AS (DELETE FROM incident_hosts x USING i WHERE x.incident_id = i.incident_id"
		     " RETURNING 1),"
		     " s AS (DELETE FROM incident_suspects x USING i WHERE x.incident_id = i.incident_id"
		     " RETURNING 1),"
		     " q AS (DELETE FROM correlate_queue WHERE ts < now() - $1::int * interval '1 day'"
		     " RETURNING 1)"
		     " SELECT 0 - count(*) FROM i",
		     1, params, maint_done_cb, s);
}

int agg_serve(const struct agg_serve_opts *o)
{
	struct agg_correlate_opts co;
	struct agg_ingest_opts io;
	struct serve s;
	char control_url[512];
	uint64_t stats_ms;
	int rv;
	const struct sh_tls tls = { .cert = o->cfg->tls_cert,
				    .key = o->cfg->tls_key,
				    .ca = o->cfg->tls_ca };

	memset(&s, 0, sizeof(s));
	s.o = o;
	if ((rv = uv_loop_init(&s.loop)) != 0) {
		sh_err("could not create the event loop: %s", uv_strerror(rv));
		return -ENOMEM;
	}
	agg_ingest_opts_default(&io);
	io.listen_url = o->cfg->listen;
	io.tls = &tls;
	io.dsn = o->dsn;
	io.writers = o->cfg->writers;
	io.max_request_bytes = o->cfg->max_request_bytes;
	rv = agg_ingest_start(&s.loop, &io, &s.ingest);
	if (rv != 0) {
		uv_run(&s.loop, UV_RUN_NOWAIT);
		uv_loop_close(&s.loop);
		return rv;
	}
	s.maint_db = agg_db_new(&s.loop, o->dsn, "spikehound-maintenance");
	s.query_db = agg_db_new(&s.loop, o->dsn, "spikehound-query");
	if (!s.maint_db || !s.query_db ||
	    agg_query_init(&s.query, s.query_db, stats_json_cb, &s) != 0 ||
	    agg_capture_web_new(&s.loop, s.query_db, &s.capweb) != 0) {
		sh_err("out of memory");
		return -ENOMEM;
	}
	correlate_opts(o, &co);
	if ((rv = agg_correlate_start(&s.loop, &co, &s.correlate)) != 0) {
		sh_err("could not start the correlator: %s", strerror(-rv));
		return rv;
	}
	if (agg_config_control_url(o->cfg, control_url, sizeof(control_url)) != 0) {
		sh_info("control plane off: captures cannot be asked for");
	} else {
		struct agg_control_opts cto = { 0 };
		struct agg_capture_opts cpo = { 0 };

		cto.listen_url = control_url;
		cto.tls = &tls;
		cpo.dsn = o->dsn;
		cpo.before_ns = o->cfg->capture_before_ns;
		cpo.after_ns = o->cfg->capture_after_ns;
		cpo.max_bytes = o->cfg->capture_max_bytes;
		cpo.auto_min_duration_ns = o->cfg->capture_auto_min_ns;
		/* in the options 0 means the default, a negative value none */
		cpo.auto_healthy = o->cfg->capture_auto_healthy ? o->cfg->capture_auto_healthy : -1;
		cpo.auto_max_per_hour =
			o->cfg->capture_auto_per_hour ? o->cfg->capture_auto_per_hour : -1;
		cpo.auto_host_interval_ns = o->cfg->capture_auto_host_interval_ns
						    ? o->cfg->capture_auto_host_interval_ns
						    : -1;
		cpo.retention_days = o->cfg->capture_retention_days;
		if ((rv = agg_control_start(&s.loop, &cto, &s.control)) != 0) {
			sh_err("could not serve the control plane on \"%s\": %s (set control_listen)",
			       control_url, strerror(-rv));
			return rv;
		}
		if ((rv = agg_capture_start(&s.loop, &cpo, s.control, &s.capture)) != 0) {
			sh_err("could not start the capture store: %s", strerror(-rv));
			return rv;
		}
		agg_control_set_status_cb(s.control, agg_capture_status_cb, s.capture);
	}
	rv = agg_http_start(&s.loop, o->cfg->http, &s.http);
	if (rv == 0)
		rv = agg_query_register(&s.query, s.http);
	if (rv == 0 && s.capture)
		rv = agg_capture_register(s.capture, s.http);
	if (rv == 0)
		rv = agg_capture_web_register(s.capweb, s.http);
	if (rv == 0)
		rv = agg_webui_register(s.http);
	if (rv != 0) {
		sh_err("could not serve the query API on \"%s\": %s", o->cfg->http, strerror(-rv));
		return rv;
	}
	sh_info("query API on %s", o->cfg->http);
	uv_signal_init(&s.loop, &s.sigterm);
	uv_signal_init(&s.loop, &s.sigint);
	s.sigterm.data = s.sigint.data = &s;
	uv_signal_start(&s.sigterm, signal_cb, SIGTERM);
	uv_signal_start(&s.sigint, signal_cb, SIGINT);
	uv_timer_init(&s.loop, &s.stats_timer);
	uv_timer_init(&s.loop, &s.maint_timer);
	s.stats_timer.data = s.maint_timer.data = &s;
	stats_ms = (uint64_t)(o->cfg->stats_interval_ns / SH_NS_PER_MS);
	uv_timer_start(&s.stats_timer, stats_cb, stats_ms, stats_ms);
	uv_timer_start(&s.maint_timer, maint_cb, 3600 * 1000, 3600 * 1000);
	sh_info("spikehound-aggregator %s ready", SH_VERSION);

	uv_run(&s.loop, UV_RUN_DEFAULT);
	rv = uv_loop_close(&s.loop);
	if (rv != 0)
		sh_warn("event loop closed with handles still open: %s", uv_strerror(rv));
	return 0;
}
