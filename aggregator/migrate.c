/* migrate.c: applies the embedded sql/ migrations (one transaction each,
 * recorded with a checksum in schema_migrations, serialized by a session
 * advisory lock) and keeps the daily partitions. Blocking libpq, run at
 * startup before the event loop.
 *
 * The checksum is the hex SHA-256 of the migration's bytes, computed by the
 * server (sha256(bytea), PostgreSQL 11+) from a binary parameter, so no
 * client encoding can change it.
 */
#include "migrate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define SUM_LEN 64 /* hex SHA-256 */

#ifndef SH_VERSION
#define SH_VERSION "(unknown version)"
#endif

static void errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	n = strlen(err); /* libpq messages end in a newline */
	while (n > 0 && err[n - 1] == '\n')
		err[--n] = '\0';
}

/* pq_error returns the primary message of a failed result (borrowed). */
static const char *pq_error(PGconn *conn, const PGresult *res)
{
	const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

	return m ? m : PQerrorMessage(conn);
}

/* pq_errno maps a failed command to a negative errno. */
static int pq_errno(PGconn *conn)
{
	return PQstatus(conn) == CONNECTION_OK ? -EIO : -ECONNRESET;
}

/* advisory runs pg_advisory_lock or pg_advisory_unlock on our key. */
static int advisory(PGconn *conn, const char *fn, char *err, size_t errlen)
{
	char key[32], sql[64];
	const char *params[] = { key };
	PGresult *res;
	int rc = 0;

	snprintf(key, sizeof(key), "%lld", (long long)AGG_MIGRATE_LOCK_KEY);
	snprintf(sql, sizeof(sql), "SELECT %s($1::bigint)", fn);
	res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		errf(err, errlen, "could not take the migration lock: %s", pq_error(conn, res));
		rc = pq_errno(conn);
	}
	PQclear(res);
	return rc;
}

/* exec_cmd runs one parameterless statement expecting no rows. */
static int exec_cmd(PGconn *conn, const char *sql, const char *what, char *err, size_t errlen)
{
	PGresult *res = PQexec(conn, sql);
	int rc = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		errf(err, errlen, "could not %s: %s", what, pq_error(conn, res));
		rc = pq_errno(conn);
	}
	PQclear(res);
	return rc;
}

/* line_of turns a 1-based character position in sql into a line number. */
static int line_of(const char *sql, const char *pos)
{
	long chars = pos ? strtol(pos, NULL, 10) : 0;
	int line = 1;

	for (const unsigned char *p = (const unsigned char *)sql; *p && chars > 1; p++) {
		if ((*p & 0xc0) == 0x80)
			continue; /* UTF-8 continuation byte: same character */
		if (*p == '\n')
			line++;
		chars--;
	}
	return pos ? line : 0;
}

/* checksum stores the hex SHA-256 of sql in out (SUM_LEN + 1 bytes). */
static int checksum(PGconn *conn, const char *name, const char *sql, char *out, char *err,
		    size_t errlen)
{
	const char *values[] = { sql };
	int lengths[] = { (int)strlen(sql) };
	int formats[] = { 1 };
	PGresult *res;
	int rc = 0;

	res = PQexecParams(conn, "SELECT encode(sha256($1::bytea), 'hex')", 1, NULL, values,
			   lengths, formats, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
	    PQgetlength(res, 0, 0) != SUM_LEN) {
		errf(err, errlen, "could not compute the checksum of migration \"%s\": %s", name,
		     pq_error(conn, res));
		rc = pq_errno(conn);
	} else {
		memcpy(out, PQgetvalue(res, 0, 0), SUM_LEN + 1);
	}
	PQclear(res);
	return rc;
}

/* apply_one runs one migration and records it, in one transaction. */
static int apply_one(PGconn *conn, const struct sh_migration *m, const char *sum, char *err,
		     size_t errlen)
{
	const char *params[] = { m->name, sum };
	PGresult *res;
	int rc;

	/* notices ("... does not exist, skipping") are not news; warnings are */
	rc = exec_cmd(conn, "BEGIN; SET LOCAL client_min_messages = warning",
		      "begin a transaction", err, errlen);
	if (rc < 0)
		return rc;
	res = PQexec(conn, m->sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK &&
	    PQresultStatus(res) != PGRES_EMPTY_QUERY) {
		const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
		const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);

		if (pos)
			errf(err, errlen, "migration \"%s\" failed at line %d: %s%s%s", m->name,
			     line_of(m->sql, pos), pq_error(conn, res), detail ? ": " : "",
			     detail ? detail : "");
		else
			errf(err, errlen, "migration \"%s\" failed: %s%s%s", m->name,
			     pq_error(conn, res), detail ? ": " : "", detail ? detail : "");
		PQclear(res);
		return pq_errno(conn);
	}
	PQclear(res);
	if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
		errf(err, errlen,
		     "migration \"%s\" ended its transaction itself; migrations must not contain BEGIN, COMMIT or ROLLBACK",
		     m->name);
		return -EPROTO;
	}
	res = PQexecParams(conn, "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
			   2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		errf(err, errlen, "could not record migration \"%s\": %s", m->name,
		     pq_error(conn, res));
		PQclear(res);
		return pq_errno(conn);
	}
	PQclear(res);
	return exec_cmd(conn, "COMMIT", "commit a migration", err, errlen);
}

static int find_name(const struct sh_migration *list, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(list[i].name, name) == 0)
			return i;
	return -1;
}

int agg_migrate_list(PGconn *conn, const struct sh_migration *list, char *err, size_t errlen,
		     int *applied)
{
	PGresult *rec = NULL;
	char (*sums)[SUM_LEN + 1] = NULL;
	bool *done = NULL, locked = false;
	int n = 0, count = 0, rc = 0;

	if (err && errlen)
		err[0] = '\0';
	if (applied)
		*applied = 0;
	if (!conn || !list)
		return -EINVAL;
	if (PQstatus(conn) != CONNECTION_OK) {
		errf(err, errlen, "could not migrate: the connection is not open: %s",
		     PQerrorMessage(conn));
		return -ECONNRESET;
	}
	if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
		errf(err, errlen, "could not migrate: the connection is busy or inside a transaction");
		return -EBUSY;
	}
	for (; list[n].name; n++) {
		if (!list[n].sql || (n > 0 && strcmp(list[n - 1].name, list[n].name) >= 0)) {
			errf(err, errlen,
			     "embedded migration \"%s\" is out of order, duplicated or empty",
			     list[n].name);
			return -EINVAL;
		}
	}
	sums = calloc((size_t)n + 1, sizeof(*sums));
	done = calloc((size_t)n + 1, sizeof(*done));
	if (!sums || !done) {
		rc = -ENOMEM;
		errf(err, errlen, "out of memory");
		goto cleanup;
	}
	rc = advisory(conn, "pg_advisory_lock", err, errlen);
	if (rc < 0)
		goto cleanup;
	locked = true;

	rc = exec_cmd(conn,
		      "BEGIN; SET LOCAL client_min_messages = warning;"
		      " CREATE TABLE IF NOT EXISTS schema_migrations ("
		      " name text PRIMARY KEY,"
		      " checksum text NOT NULL,"
		      " applied_at timestamptz NOT NULL DEFAULT now()); COMMIT",
		      "create table \"schema_migrations\"", err, errlen);
	if (rc < 0)
		goto cleanup;
	rec = PQexec(conn, "SELECT name, checksum FROM schema_migrations ORDER BY name");
	if (PQresultStatus(rec) != PGRES_TUPLES_OK) {
		errf(err, errlen, "could not read \"schema_migrations\": %s", pq_error(conn, rec));
		rc = pq_errno(conn);
		goto cleanup;
	}
	for (int i = 0; i < n; i++) {
		rc = checksum(conn, list[i].name, list[i].sql, sums[i], err, errlen);
		if (rc < 0)
			goto cleanup;
	}

	/* what the database has must be exactly a prefix of what we carry */
	for (int r = 0; r < PQntuples(rec); r++) {
		const char *name = PQgetvalue(rec, r, 0), *sum = PQgetvalue(rec, r, 1);
		int i = find_name(list, n, name);

		if (i < 0) {
			errf(err, errlen,
			     "the database has migration \"%s\", which this binary does not know: its schema is newer than this spikehound " SH_VERSION,
			     name);
			rc = -EPROTO;
			goto cleanup;
		}
		if (strcmp(sum, sums[i]) != 0) {
			errf(err, errlen,
			     "migration \"%s\" was edited after it was applied (embedded checksum %.12s, recorded %.12s): landed migrations must never be edited",
			     name, sums[i], sum);
			rc = -EBADMSG;
			goto cleanup;
		}
		done[i] = true;
	}
	for (int i = 0; i < n; i++) {
		for (int j = i + 1; !done[i] && j < n; j++) {
			if (done[j]) {
				errf(err, errlen,
				     "migration \"%s\" is not applied but the later \"%s\" is",
				     list[i].name, list[j].name);
				rc = -EPROTO;
				goto cleanup;
			}
		}
	}

	for (int i = 0; i < n; i++) {
		if (done[i])
			continue;
		rc = apply_one(conn, &list[i], sums[i], err, errlen);
		if (rc < 0)
			goto cleanup;
		sh_info("applied migration \"%s\"", list[i].name);
		count++;
	}

cleanup:
	if (applied)
		*applied = count; /* those before a failure stay applied */
	PQclear(rec);
	if (PQstatus(conn) == CONNECTION_OK) {
		if (PQtransactionStatus(conn) != PQTRANS_IDLE)
			PQclear(PQexec(conn, "ROLLBACK"));
		if (locked)
			(void)advisory(conn, "pg_advisory_unlock", NULL, 0);
	}
	free(sums);
	free(done);
	return rc;
}

int agg_migrate(PGconn *conn, char *err, size_t errlen, int *applied)
{
	return agg_migrate_list(conn, sh_migrations, err, errlen, applied);
}

int agg_partitions_ensure(PGconn *conn, int days_back, int days_ahead, int retention_days,
			  char *err, size_t errlen)
{
	char back[16], ahead[16], keep[16];
	const char *params[] = { back, ahead, keep };
	PGresult *res;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!conn || days_back < 0 || days_ahead < 0 || retention_days < days_back ||
	    days_back > 3660 || days_ahead > 3660) {
		errf(err, errlen,
		     "invalid partition window: %d days back, %d ahead, %d days retention",
		     days_back, days_ahead, retention_days);
		return -EINVAL;
	}
	snprintf(back, sizeof(back), "%d", days_back);
	snprintf(ahead, sizeof(ahead), "%d", days_ahead);
	snprintf(keep, sizeof(keep), "%d", retention_days);
	res = PQexecParams(conn, "SELECT sh_ensure_partitions($1::integer, $2::integer, $3::integer)",
			   3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		errf(err, errlen, "could not ensure partitions: %s%s", pq_error(conn, res),
		     state && strcmp(state, "42883") == 0 ? " (are the migrations applied?)" : "");
		PQclear(res);
		return pq_errno(conn);
	}
	rc = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return rc;
}
