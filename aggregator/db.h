/* db.h: one asynchronous libpq connection driven by the aggregator's libuv
 * loop (PQsocket under uv_poll; nothing here blocks the loop).
 *
 * Jobs run one at a time in submission order. A job's callback runs exactly
 * once, on the loop thread: with status 0 and the last PGresult of the job,
 * or with a negative errno and an error message. When the connection is lost,
 * the running and every queued job fail with -ECONNRESET and the connection
 * is re-established in the background with backoff; agg_db_ready() tells
 * whether it is up. A statement the server refuses fails its job with
 * -EINVAL when the data was at fault (SQLSTATE class 22 or 23), else -EIO.
 */
#ifndef AGG_DB_H
#define AGG_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct agg_db;

/* agg_db_cb receives a job's outcome. res is borrowed (valid only during the
 * call; NULL on failure); errmsg is borrowed and "" on success. */
typedef void (*agg_db_cb)(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			  void *arg);

/* agg_db_new creates a connection object for dsn on loop and starts
 * connecting. dsn is copied. Returns NULL on allocation failure. */
struct agg_db *agg_db_new(uv_loop_t *loop, const char *dsn, const char *name);

/* agg_db_set_setup sets SQL (copied; several statements allowed) run on
 * every new connection before any job, e.g. to create temp tables. */
int agg_db_set_setup(struct agg_db *db, const char *sql);

/* agg_db_last_error returns the last connection error ("" when none);
 * borrowed, valid until the next call into db. */
const char *agg_db_last_error(const struct agg_db *db);

/* agg_db_ready tells whether the connection is up (jobs may still queue when
 * it is not: they fail with -ECONNRESET if it cannot be made). */
bool agg_db_ready(const struct agg_db *db);

/* agg_db_idle tells whether no job is running or queued. */
bool agg_db_idle(const struct agg_db *db);

/* agg_db_query runs one statement with text parameters (copied). */
int agg_db_query(struct agg_db *db, const char *sql, int nparams, const char *const *params,
		 agg_db_cb cb, void *arg);

/* struct agg_db_copy is one COPY ... FROM STDIN step of a transaction. */
struct agg_db_copy {
	const char *sql;  /* "COPY st_x (a, b) FROM STDIN" */
	const char *data; /* text-format rows; borrowed until the callback */
	size_t len;
};

/* agg_db_copy_txn runs, in one transaction: begin_sql (may be NULL: plain
 * BEGIN), each COPY step, then final_sql (several statements allowed, no
 * parameters; it must end the transaction with COMMIT). The step array and
 * the data it points to are borrowed until the callback. */
int agg_db_copy_txn(struct agg_db *db, const char *begin_sql, const struct agg_db_copy *steps,
		    int nsteps, const char *final_sql, agg_db_cb cb, void *arg);

/* agg_db_close fails queued jobs with -ECANCELED, closes the connection and
 * frees db once its handles are closed (run the loop to finish). */
void agg_db_close(struct agg_db *db);

#endif
