/* support.c: helpers shared by the integration tests. */
#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int sht_fixture_dsn(char *dsn, size_t len)
{
	const char *path = getenv("SH_TEST_DSN_FILE");
	FILE *f;
	size_t n;

	if (!path) {
		printf("SKIP: SH_TEST_DSN_FILE is not set (run through ctest, fixture \"pg\")\n");
		return SHT_SKIP;
	}
	f = fopen(path, "r");
	if (!f) {
		printf("SKIP: no PostgreSQL fixture (%s: %s)\n", path, strerror(errno));
		return SHT_SKIP;
	}
	n = fread(dsn, 1, len - 1, f);
	fclose(f);
	dsn[n] = '\0';
	while (n && (dsn[n - 1] == '\n' || dsn[n - 1] == ' '))
		dsn[--n] = '\0';
	return 0;
}

int sht_fresh_db(const char *prefix, char *dsn, size_t len)
{
	char base[1024], sql[256], name[128];
	PGconn *c;
	PGresult *r;
	int rv;

	if ((rv = sht_fixture_dsn(base, sizeof(base))) != 0)
		return rv;
	snprintf(name, sizeof(name), "%s_%d", prefix, (int)getpid());
	c = PQconnectdb(base);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "could not connect to \"%s\": %s", base, PQerrorMessage(c));
		PQfinish(c);
		return -1;
	}
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", name);
	PQclear(PQexec(c, sql));
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	r = PQexec(c, sql);
	rv = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
	if (rv)
		fprintf(stderr, "could not create database %s: %s", name, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
	snprintf(dsn, len, "%s dbname=%s", base, name);
	return rv;
}

pid_t sht_spawn(char *const argv[], const char *logpath)
{
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execv(argv[0], argv);
		fprintf(stderr, "could not execute \"%s\": %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

int sht_wait_log(const char *logpath, const char *needle, int timeout_ms)
{
	static char buf[1 << 20];

	for (int waited = 0; waited <= timeout_ms; waited += 50) {
		FILE *f = fopen(logpath, "r");

		if (f) {
			size_t n = fread(buf, 1, sizeof(buf) - 1, f);

			fclose(f);
			buf[n] = '\0';
			if (strstr(buf, needle))
				return 0;
		}
		usleep(50 * 1000);
	}
	return -1;
}

int sht_stop(pid_t pid, int sig, int timeout_ms)
{
	int status;

	if (pid <= 0)
		return -1;
	kill(pid, sig);
	for (int waited = 0; waited < timeout_ms; waited += 20) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		if (r < 0)
			return -1;
		usleep(20 * 1000);
	}
	fprintf(stderr, "pid %d did not exit after signal %d: killing it\n", (int)pid, sig);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

int sht_query_text(const char *dsn, const char *sql, char *out, size_t len)
{
	PGconn *c = PQconnectdb(dsn);
	PGresult *r;
	int rv = -1;

	if (len)
		out[0] = '\0';
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "could not connect: %s", PQerrorMessage(c));
		PQfinish(c);
		return -1;
	}
	r = PQexec(c, sql);
	if (PQresultStatus(r) == PGRES_TUPLES_OK) {
		rv = 0;
		if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
			snprintf(out, len, "%s", PQgetvalue(r, 0, 0));
	} else {
		fprintf(stderr, "query failed: %s: %s", sql, PQerrorMessage(c));
	}
	PQclear(r);
	PQfinish(c);
	return rv;
}

int64_t sht_query_i64(const char *dsn, const char *sql)
{
	char v[64];

	if (sht_query_text(dsn, sql, v, sizeof(v)) != 0 || !v[0])
		return -1;
	return strtoll(v, NULL, 10);
}

int sht_free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &l) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

int sht_mkdtemp(const char *prefix, char *out, size_t len)
{
	snprintf(out, len, "/tmp/%sXXXXXX", prefix);
	return mkdtemp(out) ? 0 : -1;
}

void sht_rm_rf(const char *path)
{
	pid_t pid;

	if (!path || strncmp(path, "/tmp/", 5) != 0)
		return;
	pid = fork();
	if (pid == 0) {
		execlp("rm", "rm", "-rf", "--", path, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

const char *sht_find_chromium(void)
{
	static const char *const paths[] = { "/usr/bin/chromium", "/usr/bin/chromium-browser", NULL };
	const char *env = getenv("SH_TEST_CHROMIUM");

	if (env)
		return access(env, X_OK) == 0 ? env : NULL;
	for (int i = 0; paths[i]; i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}
