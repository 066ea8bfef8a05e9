/* aggserve.h: the aggregator's event loop: ingest, query API, periodic
 * housekeeping and graceful shutdown on SIGTERM/SIGINT. */
#ifndef AGG_SERVE_H
#define AGG_SERVE_H

#include "aggconfig.h"

/* struct agg_serve_opts: borrowed for the duration of agg_serve. */
struct agg_serve_opts {
	const struct agg_config *cfg;
	const char *dsn; /* the database to use (embedded or given) */
};

/* agg_serve runs the loop until SIGTERM or SIGINT, then stops gracefully
 * (stop accepting, commit, acknowledge) and returns 0, or a negative errno
 * when it could not start. */
int agg_serve(const struct agg_serve_opts *o);

#endif
