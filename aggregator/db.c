/* db.c: one asynchronous libpq connection on the aggregator's libuv loop.
 *
 * The connection's socket is watched with a uv_poll handle; drive() advances
 * the current job as far as it can without blocking (send, flush, COPY data,
 * read results) and returns to the loop whenever libpq would block. Jobs run
 * one at a time in FIFO order. A lost connection fails the running and the
 * queued jobs with -ECONNRESET and reconnects with exponential backoff.
 */
#include "db.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define COPY_CHUNK (256 * 1024)
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

enum job_type { JOB_QUERY, JOB_TXN, JOB_SETUP };

enum job_phase {
	PH_SEND,     /* the current statement has to be sent */
	PH_COPYDATA, /* COPY IN accepted: put data, then the end marker */
	PH_RESULTS,  /* read results until libpq returns NULL */
	PH_ROLLBACK, /* a statement failed: ROLLBACK sent, draining */
};

struct job {
	struct job *next;
	enum job_type type;
	agg_db_cb cb;
	void *arg;
	/* JOB_QUERY / JOB_SETUP */
	char *sql;
	int nparams;
	char **params;
	/* JOB_TXN */
	const char *begin_sql;
	const struct agg_db_copy *steps;
	int nsteps;
	const char *final_sql;
	int step; /* -1: BEGIN, 0..nsteps-1: COPY, nsteps: final */
	size_t copy_off;
	bool copy_ended;
	/* progress */
	enum job_phase phase;
	PGresult *last;
	char *errmsg;
	bool data_error; /* SQLSTATE class 22 or 23: the data was refused */
};

struct agg_db {
	uv_loop_t *loop;
	char *dsn;
	char *name;
	char *setup_sql;
	PGconn *conn;
	bool connecting;
	bool ready;
	uv_poll_t *poll;
	int poll_fd;
	int poll_events;
	uv_timer_t retry_timer;
	int backoff_ms;
	struct job *head, *tail;
	struct job *cur;
	bool in_drive;
	int depth; /* > 0 while inside a function that may run callbacks */
	bool closing;
	int open_handles;
	char lasterr[512];
};

static void drive(struct agg_db *db);
static void start_connect(struct agg_db *db);

static void job_free(struct job *j)
{
	if (!j)
		return;
	free(j->sql);
	for (int i = 0; i < j->nparams; i++)
		free(j->params[i]);
	free(j->params);
	if (j->last)
		PQclear(j->last);
	free(j->errmsg);
	free(j);
}

static void maybe_free(struct agg_db *db)
{
	if (db->closing && db->depth == 0 && db->open_handles == 0) {
		free(db->dsn);
		free(db->name);
		free(db->setup_sql);
		free(db);
	}
}

static void handle_closed_cb(uv_handle_t *h)
{
	struct agg_db *db = h->data;

	if (h != (uv_handle_t *)&db->retry_timer)
		free(h);
	db->open_handles--;
	maybe_free(db);
}

static void poll_cb(uv_poll_t *h, int status, int events);

/* set_poll watches fd for events, replacing the handle when the fd changed. */
static void set_poll(struct agg_db *db, int fd, int events)
{
	if (db->poll && db->poll_fd != fd) {
		uv_poll_stop(db->poll);
		uv_close((uv_handle_t *)db->poll, handle_closed_cb);
		db->poll = NULL;
	}
	if (fd < 0)
		return;
	if (!db->poll) {
		db->poll = malloc(sizeof(*db->poll));
		if (!db->poll)
			return;
		if (uv_poll_init(db->loop, db->poll, fd) != 0) {
			free(db->poll);
			db->poll = NULL;
			return;
		}
		db->poll->data = db;
		db->open_handles++;
		db->poll_fd = fd;
		db->poll_events = 0;
	}
	if (events != db->poll_events) {
		uv_poll_start(db->poll, events, poll_cb);
		db->poll_events = events;
	}
}

static void finish_job(struct agg_db *db, struct job *j, int status, const char *errmsg)
{
	if (j->cb)
		j->cb(db, status, status == 0 ? j->last : NULL, errmsg ? errmsg : "", j->arg);
	job_free(j);
}

/* fail_all fails the running and queued jobs with status. */
static void fail_all(struct agg_db *db, int status, const char *msg)
{
	struct job *j = db->cur;

	db->cur = NULL;
	if (j)
		finish_job(db, j, status, msg);
	while ((j = db->head) != NULL) {
		db->head = j->next;
		if (!db->head)
			db->tail = NULL;
		finish_job(db, j, status, msg);
	}
}

static void retry_cb(uv_timer_t *t)
{
	struct agg_db *db = t->data;

	db->depth++;
	start_connect(db);
	db->depth--;
	maybe_free(db);
}

/* lose_connection drops the connection, fails every job and schedules a
 * reconnect. */
static void lose_connection(struct agg_db *db, const char *why)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "%s", why && *why ? why : "connection lost");
	/* libpq messages end with a newline */
	for (size_t n = strlen(msg); n && (msg[n - 1] == '\n' || msg[n - 1] == ' ');)
		msg[--n] = '\0';
	if (db->ready || !db->lasterr[0] || strcmp(db->lasterr, msg) != 0)
		sh_warn("database \"%s\": %s", db->name, msg);
	snprintf(db->lasterr, sizeof(db->lasterr), "%s", msg);
	set_poll(db, -1, 0);
	if (db->conn) {
		PQfinish(db->conn);
		db->conn = NULL;
	}
	db->ready = false;
	db->connecting = false;
	db->depth++;
	fail_all(db, -ECONNRESET, msg);
	db->depth--;
	if (db->closing)
		return; /* the caller's maybe_free() finishes */
	uv_timer_start(&db->retry_timer, retry_cb, db->backoff_ms, 0);
	db->backoff_ms = db->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : db->backoff_ms * 2;
}

static void connect_step(struct agg_db *db)
{
	PostgresPollingStatusType st = PQconnectPoll(db->conn);
	int fd = PQsocket(db->conn);

	switch (st) {
	case PGRES_POLLING_READING:
		set_poll(db, fd, UV_READABLE);
		return;
	case PGRES_POLLING_WRITING:
		set_poll(db, fd, UV_WRITABLE);
		return;
	case PGRES_POLLING_OK:
		if (PQsetnonblocking(db->conn, 1) != 0) {
			lose_connection(db, PQerrorMessage(db->conn));
			return;
		}
		db->connecting = false;
		db->ready = true;
		db->backoff_ms = BACKOFF_MIN_MS;
		if (db->lasterr[0])
			sh_info("database \"%s\": connected", db->name);
		db->lasterr[0] = '\0';
		set_poll(db, fd, UV_READABLE);
		if (db->setup_sql) {
			/* runs before anything queued meanwhile */
			struct job *j = calloc(1, sizeof(*j));

			if (!j || !(j->sql = strdup(db->setup_sql))) {
				free(j);
				lose_connection(db, "out of memory");
				return;
			}
			j->type = JOB_SETUP;
			j->next = db->head;
			db->head = j;
			if (!db->tail)
				db->tail = j;
		}
		drive(db);
		return;
	default:
		lose_connection(db, PQerrorMessage(db->conn));
		return;
	}
}

static void start_connect(struct agg_db *db)
{
	const char *keys[] = { "dbname", "fallback_application_name", NULL };
	const char *vals[] = { db->dsn, db->name, NULL };

	if (db->closing || db->conn)
		return;
	db->conn = PQconnectStartParams(keys, vals, 1);
	if (!db->conn) {
		lose_connection(db, "out of memory");
		return;
	}
	if (PQstatus(db->conn) == CONNECTION_BAD) {
		lose_connection(db, PQerrorMessage(db->conn));
		return;
	}
	db->connecting = true;
	connect_step(db);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
	struct agg_db *db = h->data;

	if (db->closing || h != db->poll)
		return;
	db->depth++;
	if (db->connecting)
		connect_step(db);
	else if (status < 0)
		lose_connection(db, uv_strerror(status));
	else
		drive(db);
	db->depth--;
	maybe_free(db);
}

/* send_current sends the statement the current job is at. Returns 0, or -1
 * when the connection failed (already handled). */
static int send_current(struct agg_db *db, struct job *j)
{
	int ok;

	if (j->type == JOB_QUERY) {
		ok = PQsendQueryParams(db->conn, j->sql, j->nparams, NULL,
				       (const char *const *)j->params, NULL, NULL, 0);
	} else if (j->type == JOB_SETUP) {
		ok = PQsendQuery(db->conn, j->sql);
	} else if (j->step < 0) {
		ok = PQsendQuery(db->conn, j->begin_sql ? j->begin_sql : "BEGIN");
	} else if (j->step < j->nsteps) {
		ok = PQsendQuery(db->conn, j->steps[j->step].sql);
		j->copy_off = 0;
		j->copy_ended = false;
	} else {
		ok = PQsendQuery(db->conn, j->final_sql);
	}
	if (!ok) {
		lose_connection(db, PQerrorMessage(db->conn));
		return -1;
	}
	j->phase = PH_RESULTS;
	return 0;
}

/* put_copy puts as much COPY data as libpq takes. Returns 1 when all data
 * and the end marker are queued, 0 when it must wait for writability, -1
 * when the connection failed (handled). */
static int put_copy(struct agg_db *db, struct job *j)
{
	const struct agg_db_copy *s = &j->steps[j->step];
	int r;

	while (j->copy_off < s->len) {
		size_t n = s->len - j->copy_off;

		if (n > COPY_CHUNK)
			n = COPY_CHUNK;
		r = PQputCopyData(db->conn, s->data + j->copy_off, (int)n);
		if (r < 0) {
			lose_connection(db, PQerrorMessage(db->conn));
			return -1;
		}
		if (r == 0)
			return 0;
		j->copy_off += n;
	}
	if (!j->copy_ended) {
		r = PQputCopyEnd(db->conn, NULL);
		if (r < 0) {
			lose_connection(db, PQerrorMessage(db->conn));
			return -1;
		}
		if (r == 0)
			return 0;
		j->copy_ended = true;
	}
	return 1;
}

static void set_job_error(struct job *j, const PGresult *res, const char *fallback)
{
	const char *msg = res ? PQresultErrorMessage(res) : fallback;
	size_t n;

	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if (j->errmsg)
		return; /* keep the first error */
	if (state && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0))
		j->data_error = true;
	j->errmsg = strdup(msg && *msg ? msg : fallback);
	if (!j->errmsg)
		return;
	n = strlen(j->errmsg);
	while (n && (j->errmsg[n - 1] == '\n' || j->errmsg[n - 1] == ' '))
		j->errmsg[--n] = '\0';
}

/* read_results consumes every result that is ready. Returns 1 when the
 * current statement is complete, 0 when it must wait, -1 on connection
 * failure (handled). */
static int read_results(struct agg_db *db, struct job *j)
{
	for (;;) {
		PGresult *res;
		ExecStatusType st;

		if (PQisBusy(db->conn))
			return 0;
		res = PQgetResult(db->conn);
		if (!res)
			return 1;
		st = PQresultStatus(res);
		if (st == PGRES_COPY_IN) {
			PQclear(res);
			j->phase = PH_COPYDATA;
			return 1;
		}
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
			set_job_error(j, res, "statement failed");
		if (j->last)
			PQclear(j->last);
		j->last = res;
	}
}

static void drive(struct agg_db *db)
{
	struct job *j;
	int r;

	if (!db->ready || db->in_drive)
		return;
	db->in_drive = true;
	db->depth++;
	if (PQflush(db->conn) < 0) {
		lose_connection(db, PQerrorMessage(db->conn));
		goto out;
	}
	if (!PQconsumeInput(db->conn)) {
		lose_connection(db, PQerrorMessage(db->conn));
		goto out;
	}
	for (;;) {
		if (db->closing || !db->ready)
			break;
		if (!db->cur) {
			PGresult *stray;

			/* nothing running: anything the server says now is a notice
			 * or an error about the idle connection */
			while (!PQisBusy(db->conn) && (stray = PQgetResult(db->conn)) != NULL)
				PQclear(stray);
			if (PQstatus(db->conn) == CONNECTION_BAD) {
				lose_connection(db, PQerrorMessage(db->conn));
				break;
			}
			if (!db->head) {
				set_poll(db, PQsocket(db->conn), UV_READABLE);
				break;
			}
			db->cur = db->head;
			db->head = db->cur->next;
			if (!db->head)
				db->tail = NULL;
			db->cur->next = NULL;
			db->cur->phase = PH_SEND;
			db->cur->step = db->cur->type == JOB_TXN ? -1 : 0;
		}
		j = db->cur;
		if (j->phase == PH_SEND && send_current(db, j) < 0)
			break;
		if (j->phase == PH_COPYDATA) {
			r = put_copy(db, j);
			if (r < 0)
				break;
			if (r == 1)
				j->phase = PH_RESULTS;
		}
		r = PQflush(db->conn);
		if (r < 0) {
			lose_connection(db, PQerrorMessage(db->conn));
			break;
		}
		if (r == 1 || (j->phase == PH_COPYDATA)) {
			set_poll(db, PQsocket(db->conn), UV_READABLE | UV_WRITABLE);
			break;
		}
		if (!PQconsumeInput(db->conn)) {
			lose_connection(db, PQerrorMessage(db->conn));
			break;
		}
		r = read_results(db, j);
		if (r < 0)
			break;
		if (r == 0) {
			set_poll(db, PQsocket(db->conn), UV_READABLE);
			break;
		}
		if (j->phase == PH_COPYDATA)
			continue; /* COPY IN accepted: send data */
		/* the current statement is complete */
		if (j->phase == PH_ROLLBACK) {
			db->cur = NULL;
			finish_job(db, j, j->data_error ? -EINVAL : -EIO,
				   j->errmsg ? j->errmsg : "transaction failed");
			continue;
		}
		if (j->errmsg) {
			if (j->type == JOB_TXN) {
				if (!PQsendQuery(db->conn, "ROLLBACK")) {
					lose_connection(db, PQerrorMessage(db->conn));
					break;
				}
				j->phase = PH_ROLLBACK;
				continue;
			}
			db->cur = NULL;
			if (j->type == JOB_SETUP) {
				sh_err("database \"%s\": session setup failed: %s", db->name, j->errmsg);
				job_free(j);
				continue;
			}
			finish_job(db, j, j->data_error ? -EINVAL : -EIO, j->errmsg);
			continue;
		}
		if (j->type == JOB_TXN && j->step < j->nsteps) {
			j->step++;
			j->phase = PH_SEND;
			continue;
		}
		db->cur = NULL;
		finish_job(db, j, 0, NULL);
	}
out:
	db->in_drive = false;
	db->depth--;
	maybe_free(db);
}

static void enqueue(struct agg_db *db, struct job *j)
{
	if (db->tail)
		db->tail->next = j;
	else
		db->head = j;
	db->tail = j;
	if (db->ready && !db->cur)
		drive(db);
}

struct agg_db *agg_db_new(uv_loop_t *loop, const char *dsn, const char *name)
{
	struct agg_db *db = calloc(1, sizeof(*db));

	if (!db)
		return NULL;
	db->loop = loop;
	db->dsn = strdup(dsn);
	db->name = strdup(name ? name : "spikehound");
	if (!db->dsn || !db->name) {
		free(db->dsn);
		free(db->name);
		free(db);
		return NULL;
	}
	db->poll_fd = -1;
	db->backoff_ms = BACKOFF_MIN_MS;
	uv_timer_init(loop, &db->retry_timer);
	db->retry_timer.data = db;
	db->open_handles = 1;
	db->depth++;
	start_connect(db);
	db->depth--;
	return db;
}

int agg_db_set_setup(struct agg_db *db, const char *sql)
{
	char *copy = sql ? strdup(sql) : NULL;

	if (sql && !copy)
		return -ENOMEM;
	free(db->setup_sql);
	db->setup_sql = copy;
	return 0;
}

bool agg_db_ready(const struct agg_db *db)
{
	return db->ready;
}

bool agg_db_idle(const struct agg_db *db)
{
	return !db->cur && !db->head;
}

const char *agg_db_last_error(const struct agg_db *db)
{
	return db->lasterr;
}

int agg_db_query(struct agg_db *db, const char *sql, int nparams, const char *const *params,
		 agg_db_cb cb, void *arg)
{
	struct job *j;

	if (db->closing)
		return -ECANCELED;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->type = JOB_QUERY;
	j->cb = cb;
	j->arg = arg;
	j->sql = strdup(sql);
	if (!j->sql)
		goto nomem;
	if (nparams > 0) {
		j->params = calloc((size_t)nparams, sizeof(char *));
		if (!j->params)
			goto nomem;
		j->nparams = nparams;
		for (int i = 0; i < nparams; i++) {
			if (params[i] && !(j->params[i] = strdup(params[i])))
				goto nomem;
		}
	}
	enqueue(db, j);
	return 0;
nomem:
	job_free(j);
	return -ENOMEM;
}

int agg_db_copy_txn(struct agg_db *db, const char *begin_sql, const struct agg_db_copy *steps,
		    int nsteps, const char *final_sql, agg_db_cb cb, void *arg)
{
	struct job *j;

	if (db->closing)
		return -ECANCELED;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->type = JOB_TXN;
	j->cb = cb;
	j->arg = arg;
	j->begin_sql = begin_sql;
	j->steps = steps;
	j->nsteps = nsteps;
	j->final_sql = final_sql;
	enqueue(db, j);
	return 0;
}

void agg_db_close(struct agg_db *db)
{
	if (!db || db->closing)
		return;
	db->closing = true;
	db->depth++;
	fail_all(db, -ECANCELED, "shutting down");
	db->depth--;
	uv_timer_stop(&db->retry_timer);
	uv_close((uv_handle_t *)&db->retry_timer, handle_closed_cb);
	set_poll(db, -1, 0);
	if (db->conn) {
		PQfinish(db->conn);
		db->conn = NULL;
	}
	db->ready = false;
	maybe_free(db);
}
