/* test_pgembed.c: the embedded PostgreSQL cluster for real, in a temporary
 * directory: first start (initdb), migrations over its DSN, reuse of a
 * running server and of an existing cluster, a stale postmaster.pid, the
 * /tmp socket directory for a data directory too long for a socket path,
 * the server log in start errors, and bad options. Needs PostgreSQL server
 * binaries and, as root, the "spikehound" user; otherwise it is skipped. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <limits.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <libpq-fe.h>

#include "fsutil.h"
#include "migrate.h"
#include "pgembed.h"

static char tmp[PATH_MAX];
static char agg_dir[PATH_MAX + 8];
static struct agg_pgembed *pg1, *pg2;

/* can_run tells whether PostgreSQL can run here, printing why not. */
static bool can_run(void)
{
	glob_t g;
	bool found;

	if (getenv("SH_PG_BINDIR") && *getenv("SH_PG_BINDIR"))
		return true;
	found = glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) == 0;
	if (found)
		globfree(&g);
	if (!found) {
		printf("SKIP: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin\n");
		return false;
	}
	if (geteuid() == 0 && !getpwnam("spikehound")) {
		printf("SKIP: running as root and user \"spikehound\" does not exist (run deploy/install-deps.sh)\n");
		return false;
	}
	return true;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path) < 0 ? -1 : 0;
}

static void opts_for(struct agg_pgembed_opts *o, const char *data_dir)
{
	memset(o, 0, sizeof(*o));
	o->data_dir = data_dir;
	o->bindir = getenv("SH_PG_BINDIR");
}

static PGconn *connect_dsn(const char *dsn)
{
	PGconn *c = PQconnectdb(dsn);

	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("could not connect to \"%s\": %s", dsn, PQerrorMessage(c));
	return c;
}

static char *query_text(PGconn *c, const char *sql, char *buf, size_t cap)
{
	PGresult *res = PQexec(c, sql);

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		fail_msg("\"%s\" failed: %s", sql, PQresultErrorMessage(res));
	snprintf(buf, cap, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return buf;
}

static void exec_ok(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("\"%s\" failed: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
}

/* count_in_file counts the occurrences of needle in a file. */
static int count_in_file(const char *path, const char *needle)
{
	static char buf[1 << 20];
	int n = 0;

	if (sh_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	for (const char *p = buf; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static int setup(void **state)
{
	char real[PATH_MAX];

	snprintf(tmp, sizeof(tmp), "/tmp/sh-pgembed-XXXXXX");
	if (!mkdtemp(tmp))
		return -1;
	chmod(tmp, 0755); /* the cluster's user must be able to search it */
	if (!realpath(tmp, real))
		return -1;
	snprintf(tmp, sizeof(tmp), "%s", real);
	snprintf(agg_dir, sizeof(agg_dir), "%s/agg", tmp);
	return 0;
}

static int teardown(void **state)
{
	agg_pgembed_stop(pg2, true);
	agg_pgembed_stop(pg1, true);
	pg1 = pg2 = NULL;
	if (tmp[0])
		nftw(tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static void test_start_migrate_reuse_stop(void **state)
{
	struct agg_pgembed_opts o;
	char err[4096], buf[PATH_MAX + 64], path[PATH_MAX + 64];
	const char *dsn;
	PGconn *c;
	int applied = -1, n = 0;
	struct stat st;

	while (sh_migrations[n].name)
		n++;
	opts_for(&o, agg_dir);
	if (agg_pgembed_start(&o, &pg1, err, sizeof(err)) != 0)
		fail_msg("agg_pgembed_start: %s", err);
	dsn = agg_pgembed_dsn(pg1);
	snprintf(buf, sizeof(buf), "host=%s/pg/run port=5432 dbname=spikehound", agg_dir);
	assert_non_null(strstr(dsn, buf));
	snprintf(path, sizeof(path), "%s/pg/run/.s.PGSQL.5432", agg_dir);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	snprintf(path, sizeof(path), "%s/pg/run", agg_dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 077, 0);
	if (geteuid() == 0) {
		struct passwd *pw = getpwnam("spikehound");

		assert_non_null(strstr(dsn, "user=spikehound"));
		snprintf(path, sizeof(path), "%s/pg/data", agg_dir);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_uid, pw->pw_uid);
	}

	c = connect_dsn(dsn);
	assert_int_equal(agg_migrate(c, err, sizeof(err), &applied), 0);
	assert_int_equal(applied, n);
	assert_string_equal(query_text(c, "SHOW synchronous_commit", buf, sizeof(buf)), "on");
	assert_string_equal(query_text(c, "SHOW fsync", buf, sizeof(buf)), "on");
	assert_string_equal(query_text(c, "SHOW listen_addresses", buf, sizeof(buf)), "");
	assert_string_equal(query_text(c, "SHOW max_connections", buf, sizeof(buf)), "50");
	assert_string_equal(query_text(c, "SHOW unix_socket_permissions", buf, sizeof(buf)),
			    "0700");
	assert_string_equal(query_text(c, "SHOW server_encoding", buf, sizeof(buf)), "UTF8");
	exec_ok(c, "INSERT INTO hosts (host_id, hostname) VALUES ('0b0e8b1c-7a4f-4d38-9a52-3f3d2f0a1b2c', 'pgembed-test')");
	PQfinish(c);

	/* a second start while it runs reuses the running server */
	if (agg_pgembed_start(&o, &pg2, err, sizeof(err)) != 0)
		fail_msg("agg_pgembed_start (running): %s", err);
	assert_string_equal(agg_pgembed_dsn(pg2), dsn);
	assert_int_equal(agg_pgembed_stop(pg2, true), 0);
	pg2 = NULL;
	assert_int_equal(PQping(dsn), PQPING_NO_RESPONSE);
	/* stopping what is already stopped is fine */
	assert_int_equal(agg_pgembed_stop(pg1, true), 0);
	pg1 = NULL;

	/* the existing cluster is started again, not re-created */
	if (agg_pgembed_start(&o, &pg1, err, sizeof(err)) != 0)
		fail_msg("agg_pgembed_start (again): %s", err);
	c = connect_dsn(agg_pgembed_dsn(pg1));
	assert_int_equal(agg_migrate(c, err, sizeof(err), &applied), 0);
	assert_int_equal(applied, 0);
	assert_string_equal(query_text(c, "SELECT hostname FROM hosts", buf, sizeof(buf)),
			    "pgembed-test");
	PQfinish(c);
	snprintf(path, sizeof(path), "%s/pg/postgresql.log", agg_dir);
	assert_int_equal(count_in_file(path, "The files belonging to this database system"), 1);
	snprintf(path, sizeof(path), "%s/pg/data/postgresql.conf", agg_dir);
	assert_int_equal(count_in_file(path, "include 'spikehound.conf'"), 1);
	assert_int_equal(agg_pgembed_stop(pg1, false), 0);
	pg1 = NULL;
}

static void test_stale_pidfile(void **state)
{
	struct agg_pgembed_opts o;
	char err[4096], path[PATH_MAX + 64], pidfile[4096], *nl;
	struct stat st;
	pid_t dead;
	FILE *f;

	/* a postmaster.pid left by a crash names a process that is gone */
	opts_for(&o, agg_dir);
	if (agg_pgembed_start(&o, &pg1, err, sizeof(err)) != 0)
		fail_msg("agg_pgembed_start: %s", err);
	snprintf(path, sizeof(path), "%s/pg/data/postmaster.pid", agg_dir);
	assert_true(sh_read_file(path, pidfile, sizeof(pidfile)) > 0);
	assert_int_equal(agg_pgembed_stop(pg1, true), 0);
	pg1 = NULL;
	dead = fork();
	if (dead == 0)
		_exit(0);
	assert_true(dead > 0);
	assert_int_equal(waitpid(dead, NULL, 0), dead);
	nl = strchr(pidfile, '\n');
	assert_non_null(nl);
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "%d%s", (int)dead, nl);
	fclose(f);
	snprintf(path, sizeof(path), "%s/pg/data", agg_dir);
	assert_int_equal(stat(path, &st), 0);
	snprintf(path, sizeof(path), "%s/pg/data/postmaster.pid", agg_dir);
	assert_int_equal(chown(path, st.st_uid, st.st_gid), 0);

	if (agg_pgembed_start(&o, &pg1, err, sizeof(err)) != 0)
		fail_msg("agg_pgembed_start (stale pid): %s", err);
	assert_int_equal(PQping(agg_pgembed_dsn(pg1)), PQPING_OK);
	assert_int_equal(agg_pgembed_stop(pg1, true), 0);
	pg1 = NULL;
}

static void test_start_failure_shows_log(void **state)
{
	struct agg_pgembed_opts o;
	char err[4096], path[PATH_MAX + 64];
	FILE *f;

	snprintf(path, sizeof(path), "%s/pg/data/postgresql.conf", agg_dir);
	f = fopen(path, "a");
	assert_non_null(f);
	fprintf(f, "spikehound_no_such_setting = 1\n");
	fclose(f);
	opts_for(&o, agg_dir);
	assert_int_equal(agg_pgembed_start(&o, &pg1, err, sizeof(err)), -EIO);
	assert_null(pg1);
	assert_non_null(strstr(err, "could not start PostgreSQL"));
	assert_non_null(strstr(err, "spikehound_no_such_setting"));
	printf("expected failure: %s\n", err);
}

static void test_long_path_socket_fallback(void **state)
{
	struct agg_pgembed_opts o;
	char dir[PATH_MAX], err[4096], sock[256], path[PATH_MAX + 64];
	PGconn *c;
	int n;

	n = snprintf(dir, sizeof(dir), "%s/", tmp);
	for (int i = 0; i < 3; i++)
		n += snprintf(dir + n, sizeof(dir) - (size_t)n,
			      "a-rather-long-directory-name-to-overflow-sun-path-%d/", i);
	snprintf(dir + n, sizeof(dir) - (size_t)n, "data");
	assert_true(strlen(dir) > 107);
	opts_for(&o, dir);
	o.port = 5433;
	if (agg_pgembed_start(&o, &pg1, err, sizeof(err)) != 0)
		fail_msg("agg_pgembed_start (long path): %s", err);
	snprintf(sock, sizeof(sock), "%s", agg_pgembed_socket_dir(pg1));
	assert_int_equal(strncmp(sock, "/tmp/spikehound-pg-", 19), 0);
	assert_non_null(strstr(agg_pgembed_dsn(pg1), "port=5433"));
	c = connect_dsn(agg_pgembed_dsn(pg1));
	PQfinish(c);
	snprintf(path, sizeof(path), "%s/pg/data/PG_VERSION", dir);
	assert_int_equal(access(path, F_OK), 0);
	assert_int_equal(agg_pgembed_stop(pg1, true), 0);
	pg1 = NULL;
	assert_int_equal(access(sock, F_OK), -1); /* the fallback is removed */
}

static void test_bad_options(void **state)
{
	struct agg_pgembed_opts o;
	struct agg_pgembed *pg = (void *)1;
	char err[4096], dir[PATH_MAX + 64];

	assert_int_equal(agg_pgembed_start(NULL, &pg, err, sizeof(err)), -EINVAL);
	assert_null(pg);
	opts_for(&o, "");
	assert_int_equal(agg_pgembed_start(&o, &pg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no data directory"));

	snprintf(dir, sizeof(dir), "%s/bad", tmp);
	opts_for(&o, dir);
	o.bindir = "/nonexistent/bin";
	assert_int_equal(agg_pgembed_start(&o, &pg, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "\"/nonexistent/bin\""));

	opts_for(&o, dir);
	o.port = 70000;
	assert_int_equal(agg_pgembed_start(&o, &pg, err, sizeof(err)), -EINVAL);

	snprintf(dir, sizeof(dir), "%s/it's", tmp);
	opts_for(&o, dir);
	assert_int_equal(agg_pgembed_start(&o, &pg, err, sizeof(err)), -EINVAL);

	snprintf(dir, sizeof(dir), "%s/bad", tmp);
	opts_for(&o, dir);
	o.run_as = "no_such_user_spikehound";
	assert_int_equal(agg_pgembed_start(&o, &pg, err, sizeof(err)),
			 geteuid() == 0 ? -ENOENT : -EPERM);
	assert_non_null(strstr(err, "\"no_such_user_spikehound\""));

	if (geteuid() == 0) {
		o.run_as = "root";
		assert_int_equal(agg_pgembed_start(&o, &pg, err, sizeof(err)), -EPERM);
		assert_non_null(strstr(err, "refusing"));

		/* a data directory the cluster's user cannot reach */
		snprintf(dir, sizeof(dir), "%s/private", tmp);
		assert_int_equal(mkdir(dir, 0700), 0);
		snprintf(dir, sizeof(dir), "%s/private/agg", tmp);
		opts_for(&o, dir);
		assert_int_equal(agg_pgembed_start(&o, &pg, err, sizeof(err)), -EACCES);
		assert_non_null(strstr(err, "cannot access"));
		printf("expected failure: %s\n", err);
	}
	assert_null(pg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_migrate_reuse_stop),
		cmocka_unit_test(test_stale_pidfile),
		cmocka_unit_test(test_start_failure_shows_log),
		cmocka_unit_test(test_long_path_socket_fallback),
		cmocka_unit_test(test_bad_options),
	};

	if (!can_run())
		return 77;
	return cmocka_run_group_tests(tests, setup, teardown);
}
