/* support.h: helpers shared by the integration tests: a fresh database on
 * the "pg" fixture's cluster, child processes (the real daemons) with their
 * logs, and small blocking queries for assertions. */
#ifndef SHT_SUPPORT_H
#define SHT_SUPPORT_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SHT_SKIP 77

/* sht_fresh_db creates database "<prefix>_<pid>" on the fixture cluster and
 * writes a DSN for it into dsn. Returns 0, SHT_SKIP when there is no
 * fixture (the reason is printed), or -1. */
int sht_fresh_db(const char *prefix, char *dsn, size_t len);

/* sht_fixture_dsn writes the fixture's own DSN into dsn; 0 or SHT_SKIP. */
int sht_fixture_dsn(char *dsn, size_t len);

/* sht_spawn starts argv (argv[0] is a path) with stdout and stderr
 * appended to logpath. Returns the pid or -1. */
pid_t sht_spawn(char *const argv[], const char *logpath);

/* sht_wait_log waits until logpath contains needle (after offset bytes);
 * returns 0, or -1 after timeout_ms. */
int sht_wait_log(const char *logpath, const char *needle, int timeout_ms);

/* sht_stop sends sig to pid and reaps it (waits at most timeout_ms, then
 * SIGKILLs). Returns the exit status as from waitpid, or -1. */
int sht_stop(pid_t pid, int sig, int timeout_ms);

/* sht_query_i64 runs sql on dsn and returns the first column of the first
 * row as a number (or -1 on error, printed). */
int64_t sht_query_i64(const char *dsn, const char *sql);

/* sht_query_text runs sql on dsn and copies the first column of the first
 * row into out ("" when there is no row or it is NULL). Returns 0, or -1
 * on error (printed). */
int sht_query_text(const char *dsn, const char *sql, char *out, size_t len);

/* sht_find_chromium returns the path of a headless-capable Chromium, or
 * NULL; $SH_TEST_CHROMIUM overrides the search (a path that is not
 * executable: as if absent, to test the SKIP path). */
const char *sht_find_chromium(void);

/* sht_free_port returns a TCP port on 127.0.0.1 that was free a moment ago. */
int sht_free_port(void);

/* sht_mkdtemp creates a temp directory "/tmp/<prefix>XXXXXX" into out. */
int sht_mkdtemp(const char *prefix, char *out, size_t len);

/* sht_rm_rf removes a directory tree (best effort). */
void sht_rm_rf(const char *path);

#endif
