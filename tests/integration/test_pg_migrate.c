/* test_pg_migrate.c: the embedded migrations against a real PostgreSQL (the
 * "pg" fixture): applied once, recorded, refused when tampered with or when
 * the database is newer, serialized between concurrent aggregators; and
 * the daily partitions. Works in a database of its own,
 * spikehound_test_migrate_<pid>, dropped at the end. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <libpq-fe.h>

#include "migrate.h"

static char admin_dsn[1024];
static char dbname[64], dbname2[64];
static PGconn *conn;

/* read_dsn reads the fixture's DSN; false (with the reason printed) when
 * there is none, so the test is skipped. */
static bool read_dsn(void)
{
	const char *path = getenv("SH_TEST_DSN_FILE");
	FILE *f;

	if (!path || !*path) {
		printf("SKIP: SH_TEST_DSN_FILE is not set (run through ctest: fixture \"pg\")\n");
		return false;
	}
	f = fopen(path, "r");
	if (!f) {
		printf("SKIP: no PostgreSQL fixture: cannot open \"%s\": %s\n", path,
		       strerror(errno));
		return false;
	}
	if (!fgets(admin_dsn, sizeof(admin_dsn), f))
		admin_dsn[0] = '\0';
	fclose(f);
	admin_dsn[strcspn(admin_dsn, "\n")] = '\0';
	if (!admin_dsn[0]) {
		printf("SKIP: \"%s\" is empty\n", path);
		return false;
	}
	return true;
}

/* connect_db connects to database db of the fixture's server. */
static PGconn *connect_db(const char *db)
{
	const char *keys[] = { "dbname", "dbname", NULL };
	const char *vals[] = { admin_dsn, db, NULL };
	PGconn *c = PQconnectdbParams(keys, vals, 1);

	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("could not connect to \"%s\": %s", db, PQerrorMessage(c));
	return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		fail_msg("\"%s\" failed: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
}

/* query_int runs a query returning one integer. */
static long query_int(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);
	long v;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		fail_msg("\"%s\" failed: %s", sql, PQresultErrorMessage(res));
	v = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return v;
}

static int count_embedded(void)
{
	int n = 0;

	while (sh_migrations[n].name)
		n++;
	return n;
}

static void create_db(const char *name)
{
	PGconn *admin = connect_db("spikehound");
	char sql[128];

	exec_ok(admin, "SET client_min_messages = warning");
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", name);
	exec_ok(admin, sql);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	exec_ok(admin, sql);
	PQfinish(admin);
}

static void drop_db(const char *name)
{
	PGconn *admin = connect_db("spikehound");
	char sql[128];

	exec_ok(admin, "SET client_min_messages = warning");
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
	exec_ok(admin, sql);
	PQfinish(admin);
}

static int setup(void **state)
{
	snprintf(dbname, sizeof(dbname), "spikehound_test_migrate_%d", (int)getpid());
	snprintf(dbname2, sizeof(dbname2), "spikehound_test_migrate_%d_b", (int)getpid());
	create_db(dbname);
	conn = connect_db(dbname);
	return 0;
}

static int teardown(void **state)
{
	PQfinish(conn);
	conn = NULL;
	drop_db(dbname);
	drop_db(dbname2);
	return 0;
}

static void test_apply_all(void **state)
{
	static const char *const tables[] = { "schema_migrations", "hosts", "boots",
					      "summaries", "summaries_default", "processes",
					      "spike_events", "spike_events_default" };
	char err[512], sql[256];
	int applied = -1, n = count_embedded();

	assert_true(n >= 1);
	assert_int_equal(agg_migrate(conn, err, sizeof(err), &applied), 0);
	assert_string_equal(err, "");
	assert_int_equal(applied, n);
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_tables WHERE tablename = '%s'",
			 tables[i]);
		if (query_int(conn, sql) != 1)
			fail_msg("table \"%s\" is missing", tables[i]);
	}
	assert_int_equal(query_int(conn, "SELECT count(*) FROM pg_proc WHERE proname = 'sh_ensure_partitions'"),
			 1);
	assert_int_equal(query_int(conn, "SELECT count(*) FROM schema_migrations"), n);
	assert_int_equal(query_int(conn, "SELECT count(*) FROM schema_migrations WHERE checksum ~ '^[0-9a-f]{64}$' AND applied_at <= now()"),
			 n);
	assert_int_equal(query_int(conn, "SELECT count(*) FROM schema_migrations WHERE name = '001_init.sql'"),
			 1);
	/* the lock is released and no transaction is left open */
	assert_int_equal(PQtransactionStatus(conn), PQTRANS_IDLE);
	assert_int_equal(query_int(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"),
			 0);
}

static void test_second_run_applies_nothing(void **state)
{
	char err[512];
	int applied = -1;

	assert_int_equal(agg_migrate(conn, err, sizeof(err), &applied), 0);
	assert_int_equal(applied, 0);
	assert_int_equal(agg_migrate(conn, err, sizeof(err), NULL), 0);
}

static void test_tampered_checksum_refused(void **state)
{
	char err[512], saved[128], sql[256];
	PGresult *res;
	int applied = -1;

	res = PQexec(conn, "SELECT checksum FROM schema_migrations WHERE name = '001_init.sql'");
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	snprintf(saved, sizeof(saved), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);

	exec_ok(conn, "UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE name = '001_init.sql'");
	assert_int_equal(agg_migrate(conn, err, sizeof(err), &applied), -EBADMSG);
	assert_int_equal(applied, 0);
	assert_non_null(strstr(err, "\"001_init.sql\""));
	assert_non_null(strstr(err, "never be edited"));
	assert_int_equal(PQtransactionStatus(conn), PQTRANS_IDLE);

	snprintf(sql, sizeof(sql), "UPDATE schema_migrations SET checksum = '%s' WHERE name = '001_init.sql'",
		 saved);
	exec_ok(conn, sql);
	assert_int_equal(agg_migrate(conn, err, sizeof(err), &applied), 0);
	assert_int_equal(applied, 0);
}

static void test_newer_schema_refused(void **state)
{
	char err[512];
	int applied = -1;

	exec_ok(conn, "INSERT INTO schema_migrations (name, checksum) VALUES ('999_from_the_future.sql', repeat('a', 64))");
	assert_int_equal(agg_migrate(conn, err, sizeof(err), &applied), -EPROTO);
	assert_non_null(strstr(err, "\"999_from_the_future.sql\""));
	assert_non_null(strstr(err, "newer"));
	exec_ok(conn, "DELETE FROM schema_migrations WHERE name = '999_from_the_future.sql'");
	assert_int_equal(agg_migrate(conn, err, sizeof(err), &applied), 0);
}

static void test_extra_and_failing_migrations(void **state)
{
	int n = count_embedded(), applied = -1;
	struct sh_migration *list = calloc((size_t)n + 2, sizeof(*list));
	char err[512];

	assert_non_null(list);
	memcpy(list, sh_migrations, (size_t)n * sizeof(*list));

	/* a later migration is applied alone, then the embedded set is older */
	list[n] = (struct sh_migration){ "900_test_extra.sql",
					 "CREATE TABLE test_extra (a integer);\n" };
	assert_int_equal(agg_migrate_list(conn, list, err, sizeof(err), &applied), 0);
	assert_int_equal(applied, 1);
	assert_int_equal(query_int(conn, "SELECT count(*) FROM pg_tables WHERE tablename = 'test_extra'"),
			 1);
	assert_int_equal(agg_migrate(conn, err, sizeof(err), &applied), -EPROTO);
	assert_non_null(strstr(err, "\"900_test_extra.sql\""));
	exec_ok(conn, "DROP TABLE test_extra");
	exec_ok(conn, "DELETE FROM schema_migrations WHERE name = '900_test_extra.sql'");

	/* a failing migration is rolled back whole and not recorded */
	list[n] = (struct sh_migration){ "901_test_bad.sql",
					 "CREATE TABLE test_bad (a integer);\n"
					 "SELECT no_such_column FROM test_bad;\n" };
	assert_int_equal(agg_migrate_list(conn, list, err, sizeof(err), &applied), -EIO);
	assert_int_equal(applied, 0);
	assert_non_null(strstr(err, "\"901_test_bad.sql\""));
	assert_non_null(strstr(err, "line 2"));
	assert_non_null(strstr(err, "no_such_column"));
	assert_int_equal(query_int(conn, "SELECT count(*) FROM pg_tables WHERE tablename = 'test_bad'"),
			 0);
	assert_int_equal(query_int(conn, "SELECT count(*) FROM schema_migrations WHERE name = '901_test_bad.sql'"),
			 0);
	assert_int_equal(PQtransactionStatus(conn), PQTRANS_IDLE);

	/* transaction control inside a migration is refused */
	list[n] = (struct sh_migration){ "902_test_commit.sql",
					 "CREATE TABLE test_commit (a integer); COMMIT;\n" };
	assert_int_equal(agg_migrate_list(conn, list, err, sizeof(err), &applied), -EPROTO);
	assert_non_null(strstr(err, "COMMIT"));
	exec_ok(conn, "DROP TABLE IF EXISTS test_commit");

	/* a list out of order is a bug in the binary */
	list[n] = (struct sh_migration){ "000_test_first.sql", "SELECT 1" };
	assert_int_equal(agg_migrate_list(conn, list, err, sizeof(err), &applied), -EINVAL);
	free(list);

	assert_int_equal(agg_migrate(conn, err, sizeof(err), &applied), 0);
	assert_int_equal(applied, 0);
}

static void test_missing_middle_refused(void **state)
{
	int n = count_embedded(), applied = -1;
	struct sh_migration *list = calloc((size_t)n + 3, sizeof(*list));
	char err[512];

	assert_non_null(list);
	memcpy(list, sh_migrations, (size_t)n * sizeof(*list));
	list[n] = (struct sh_migration){ "910_test_a.sql", "SELECT 1;" };
	list[n + 1] = (struct sh_migration){ "911_test_b.sql", "SELECT 2;" };
	exec_ok(conn, "INSERT INTO schema_migrations (name, checksum) VALUES ('911_test_b.sql', encode(sha256('SELECT 2;'::bytea), 'hex'))");
	assert_int_equal(agg_migrate_list(conn, list, err, sizeof(err), &applied), -EPROTO);
	assert_non_null(strstr(err, "\"910_test_a.sql\" is not applied"));
	exec_ok(conn, "DELETE FROM schema_migrations WHERE name = '911_test_b.sql'");
	free(list);
}

struct racer {
	const char *db;
	int rc;
	int applied;
	char err[512];
};

static void *race_cb(void *arg)
{
	struct racer *r = arg;
	const char *keys[] = { "dbname", "dbname", NULL };
	const char *vals[] = { admin_dsn, r->db, NULL };
	PGconn *c = PQconnectdbParams(keys, vals, 1);

	if (PQstatus(c) != CONNECTION_OK)
		r->rc = -ECONNREFUSED;
	else
		r->rc = agg_migrate(c, r->err, sizeof(r->err), &r->applied);
	PQfinish(c);
	return NULL;
}

static void test_concurrent_aggregators(void **state)
{
	struct racer r[4];
	pthread_t t[4];
	int total = 0;

	create_db(dbname2);
	memset(r, 0, sizeof(r));
	for (int i = 0; i < 4; i++) {
		r[i].db = dbname2;
		assert_int_equal(pthread_create(&t[i], NULL, race_cb, &r[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		if (r[i].rc != 0)
			fail_msg("racer %d: %d: %s", i, r[i].rc, r[i].err);
		total += r[i].applied;
	}
	assert_int_equal(total, count_embedded());
	drop_db(dbname2);
}

static void test_partitions(void **state)
{
	char err[512];
	int created;

	created = agg_partitions_ensure(conn, 2, 3, 30, err, sizeof(err));
	if (created < 0)
		fail_msg("agg_partitions_ensure: %d: %s", created, err);
	assert_int_equal(created, 2 * (2 + 3 + 1)); /* 2 tables x 6 days */
	assert_int_equal(agg_partitions_ensure(conn, 2, 3, 30, err, sizeof(err)), 0);
	assert_int_equal(query_int(conn, "SELECT count(*) FROM pg_tables WHERE tablename = 'summaries_' || to_char(current_date + 3, 'YYYYMMDD')"),
			 1);
	assert_int_equal(query_int(conn, "SELECT count(*) FROM pg_tables WHERE tablename = 'spike_events_' || to_char(current_date - 2, 'YYYYMMDD')"),
			 1);
	/* a wider window creates only the new days */
	assert_int_equal(agg_partitions_ensure(conn, 2, 5, 30, err, sizeof(err)), 4);
	/* rows land in their day's partition */
	exec_ok(conn, "INSERT INTO spike_events (host_id, boot_id, seq, ts, duration_ns, kind) VALUES (gen_random_uuid(), gen_random_uuid(), 1, now(), 1000, 'test')");
	assert_int_equal(query_int(conn, "SELECT count(*) FROM ONLY spike_events_default"), 0);
	exec_ok(conn, "DELETE FROM spike_events");

	/* retention: partitions that ended more than retention days ago go */
	assert_int_equal(agg_partitions_ensure(conn, 0, 0, 1, err, sizeof(err)), 0);
	assert_int_equal(query_int(conn, "SELECT count(*) FROM pg_tables WHERE tablename = 'summaries_' || to_char(current_date - 2, 'YYYYMMDD')"),
			 0);
	assert_int_equal(query_int(conn, "SELECT count(*) FROM pg_tables WHERE tablename = 'summaries_' || to_char(current_date - 1, 'YYYYMMDD')"),
			 1);

	assert_int_equal(agg_partitions_ensure(conn, 3, 1, 2, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "invalid partition window"));
	assert_int_equal(agg_partitions_ensure(conn, -1, 1, 2, err, sizeof(err)), -EINVAL);
}

static void test_partitions_without_schema(void **state)
{
	PGconn *c;
	char err[512];

	create_db(dbname2);
	c = connect_db(dbname2);
	assert_int_equal(agg_partitions_ensure(c, 1, 1, 7, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "are the migrations applied?"));
	PQfinish(c);
	drop_db(dbname2);
}

static void test_closed_connection(void **state)
{
	PGconn *c = connect_db(dbname);
	char err[512];
	int applied = 7;

	exec_ok(c, "BEGIN");
	assert_int_equal(agg_migrate(c, err, sizeof(err), &applied), -EBUSY);
	assert_int_equal(applied, 0);
	exec_ok(c, "ROLLBACK");
	PQfinish(c);
	assert_int_equal(agg_migrate(NULL, err, sizeof(err), &applied), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_apply_all),
		cmocka_unit_test(test_second_run_applies_nothing),
		cmocka_unit_test(test_tampered_checksum_refused),
		cmocka_unit_test(test_newer_schema_refused),
		cmocka_unit_test(test_extra_and_failing_migrations),
		cmocka_unit_test(test_missing_middle_refused),
		cmocka_unit_test(test_concurrent_aggregators),
		cmocka_unit_test(test_partitions),
		cmocka_unit_test(test_partitions_without_schema),
		cmocka_unit_test(test_closed_connection),
	};

	if (!read_dsn())
		return 77;
	return cmocka_run_group_tests(tests, setup, teardown);
}
