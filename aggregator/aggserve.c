/* aggserve.c: the aggregator's event loop. One libuv loop owns all state:
 * ingest (nng under uv_poll), the query API, housekeeping timers and the
 * signal handlers that start a graceful stop. */
#include "aggserve.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "db.h"
#include "ingest.h"
#include "log.h"
#include "timeutil.h"

struct serve {
	const struct agg_serve_opts *o;
	uv_loop_t loop;
	uv_signal_t sigterm, sigint;
	uv_timer_t stats_timer, maint_timer;
	struct agg_ingest *ingest;
	struct agg_db *maint_db;
	bool stopping;
};

static void closed_cb(uv_handle_t *h)
{
	(void)h;
}

static void ingest_stopped_cb(void *arg)
{
	struct serve *s = arg;

	s->ingest = NULL;
	sh_info("ingest stopped: every received request was answered");
	uv_close((uv_handle_t *)&s->sigterm, closed_cb);
	uv_close((uv_handle_t *)&s->sigint, closed_cb);
	uv_close((uv_handle_t *)&s->stats_timer, closed_cb);
	uv_close((uv_handle_t *)&s->maint_timer, closed_cb);
	agg_db_close(s->maint_db);
	s->maint_db = NULL;
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
	agg_ingest_log_stats(s->ingest);
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
}

int agg_serve(const struct agg_serve_opts *o)
{
	struct agg_ingest_opts io;
	struct serve s;
	uint64_t stats_ms;
	int rv;

	memset(&s, 0, sizeof(s));
	s.o = o;
	if ((rv = uv_loop_init(&s.loop)) != 0) {
		sh_err("could not create the event loop: %s", uv_strerror(rv));
		return -ENOMEM;
	}
	agg_ingest_opts_default(&io);
	io.listen_url = o->cfg->listen;
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
