/* pgembed.h: the embedded PostgreSQL cluster the aggregator runs in its data
 * directory when it is given no DSN (DESIGN.md, "Aggregator").
 *
 * Layout under the aggregator's data directory:
 *     pg/data            the cluster (initdb'd on first start)
 *     pg/run             the Unix socket directory (or /tmp/spikehound-pg-
 *                        <hash>/ when that path is too long for a socket)
 *     pg/postgresql.log  the server log (and initdb/pg_ctl output)
 *
 * The server listens on its Unix socket only (listen_addresses = ''), with
 * trust authentication for local connections; the socket is mode 0700, so
 * only the cluster's owner (and root) can connect. When the caller is root,
 * PostgreSQL runs as an unprivileged user (default "spikehound", created by
 * deploy/install-deps.sh): pg/ is chowned to it and initdb and pg_ctl are
 * exec'ed as that user. Every parent directory of pg/ must be searchable
 * by that user.
 *
 * Everything here BLOCKS (fork/exec/waitpid and blocking libpq): call it
 * before the event loop starts and after it ends, never from the loop.
 */
#ifndef AGG_PGEMBED_H
#define AGG_PGEMBED_H

#include <stdbool.h>
#include <stddef.h>

/* AGG_PGEMBED_DBNAME is the database created in the cluster. */
#define AGG_PGEMBED_DBNAME "spikehound"

/* struct agg_pgembed_opts configures agg_pgembed_start. Strings are borrowed
 * for the duration of the call only; NULL or 0 selects the default. */
struct agg_pgembed_opts {
	const char *data_dir; /* required: the aggregator's data directory */
	const char *bindir;   /* PostgreSQL binaries; default: the newest
			       * /usr/lib/postgresql/<ver>/bin with initdb
			       * (the cluster's own version if it exists) */
	const char *run_as;   /* user to run PostgreSQL as; default
			       * "spikehound" as root, else the current user
			       * (who is then the only accepted value) */
	int port;	      /* socket port number; default 5432 */
	const char *log_file; /* default <data_dir>/pg/postgresql.log */
};

/* struct agg_pgembed is a running embedded cluster (opaque). */
struct agg_pgembed;

/* agg_pgembed_start makes sure the cluster in o->data_dir/pg exists (initdb
 * on first use), writes its settings, starts it with pg_ctl (or reuses a
 * server already running on that data directory) and creates the database
 * "spikehound" if missing. On success returns 0 and *out, which the caller
 * owns and releases with agg_pgembed_stop. On failure returns a negative
 * errno, sets *out to NULL and writes a message into err (including the
 * last lines of the server log when the server did not start). Blocks for
 * up to about a minute. */
int agg_pgembed_start(const struct agg_pgembed_opts *o, struct agg_pgembed **out, char *err,
		      size_t errlen);

/* agg_pgembed_dsn returns the libpq connection string of the "spikehound"
 * database, e.g. "host=/var/lib/spikehound/pg/run port=5432
 * dbname=spikehound user=spikehound". Borrowed: valid until
 * agg_pgembed_stop. */
const char *agg_pgembed_dsn(const struct agg_pgembed *pg);

/* agg_pgembed_socket_dir returns the directory holding the server's Unix
 * socket (borrowed, valid until agg_pgembed_stop). */
const char *agg_pgembed_socket_dir(const struct agg_pgembed *pg);

/* agg_pgembed_stop stops the server with pg_ctl stop -w, in "fast" mode
 * (disconnect clients, roll back their transactions) or else "smart" mode
 * (wait for clients to disconnect), then frees pg in every case. A server
 * that is no longer running counts as stopped. Returns 0 or a negative
 * errno (the reason is logged). NULL is a no-op. Blocks. */
int agg_pgembed_stop(struct agg_pgembed *pg, bool fast);

#endif
