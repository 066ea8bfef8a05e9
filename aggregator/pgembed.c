/* pgembed.c: the embedded PostgreSQL cluster (initdb, settings, pg_ctl
 * start/stop, database creation) run in the aggregator's data directory
 * when no DSN is configured. Blocking by design: it runs before the event
 * loop starts and after it ends.
 *
 * initdb and pg_ctl are run with fork + execve, never through a shell, with
 * a small fixed environment; as root the child drops to the run_as user
 * (setgroups, setgid, setuid) before it execs. Files inside the cluster's
 * directories (settings, socket directory) are also written by such a
 * child, as that user, never by root. Between fork and exec the child only
 * makes async-signal-safe calls and reports a failure through a
 * close-on-exec pipe, then leaves with _exit (no atexit handlers run).
 */
#include "pgembed.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsutil.h" /* sh_mkdir_p, sh_read_file */
#include "log.h"

#define PG_DEFAULT_PORT 5432
#define PG_DEFAULT_USER "spikehound"
#define PG_START_TIMEOUT "60"
#define PG_STOP_TIMEOUT "60"
#define PG_CONF_NAME "spikehound.conf"
#define PG_CONF_INCLUDE "include '" PG_CONF_NAME "'"
#define PG_TAIL_BYTES 1536
#define PG_READY_WAIT_MS 60000

/* pg_ctl status exit codes */
#define PGCTL_STATUS_RUNNING 0
#define PGCTL_STATUS_STOPPED 3
#define PGCTL_STATUS_NODATA 4

struct agg_pgembed {
	char *pg_dir;	 /* <data_dir>/pg */
	char *pgdata;	 /* <data_dir>/pg/data */
	char *sock_dir;	 /* <data_dir>/pg/run or the /tmp fallback */
	bool sock_fallback;
	char *log_file;
	char *bindir;
	char *user; /* OS user the server runs as = its superuser */
	char *home;
	uid_t uid;
	gid_t gid;
	bool switch_user; /* we are root: children drop to uid/gid */
	gid_t *groups;
	int ngroups;
	int port;
	char *dsn;
	char *envp[8]; /* child environment, built once */
};

/* what a child reports through its pipe when it fails before exec */
enum child_step { STEP_SIGNALS = 1, STEP_SETGROUPS, STEP_SETGID, STEP_SETUID, STEP_CHDIR,
		  STEP_STDIN, STEP_LOG, STEP_OP, STEP_EXEC };

/* struct child_op is work a child does as the cluster's user instead of
 * exec'ing: root never writes into directories that user controls, where a
 * planted symlink could redirect it. fn may only make async-signal-safe
 * calls; it returns 0 or an errno value. */
struct child_op {
	int (*fn)(void *arg);
	void *arg;
	const char *what; /* for messages: "create directory" */
	const char *path;
};

struct child_report {
	int step;
	int err;
};

static const char *step_name(int step)
{
	switch (step) {
	case STEP_SIGNALS: return "reset signals";
	case STEP_SETGROUPS: return "set supplementary groups";
	case STEP_SETGID: return "set group id";
	case STEP_SETUID: return "set user id";
	case STEP_CHDIR: return "change directory";
	case STEP_STDIN: return "open /dev/null";
	case STEP_LOG: return "open log file";
	default: return "execute";
	}
}

static void errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : s;
}

static void pgembed_free(struct agg_pgembed *pg)
{
	if (!pg)
		return;
	free(pg->pg_dir);
	free(pg->pgdata);
	free(pg->sock_dir);
	free(pg->log_file);
	free(pg->bindir);
	free(pg->user);
	free(pg->home);
	free(pg->groups);
	free(pg->dsn);
	for (size_t i = 0; i < sizeof(pg->envp) / sizeof(pg->envp[0]); i++)
		free(pg->envp[i]);
	free(pg);
}

/* ---- log tail ---------------------------------------------------------- */

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : 0;
}

/* log_tail copies the last lines of path written at or after offset `from`
 * into buf ("(empty)" if there are none). */
static void log_tail(const char *path, off_t from, char *buf, size_t cap)
{
	off_t size = file_size(path), start;
	ssize_t n;
	size_t len = 0;
	char *p;
	int fd;

	snprintf(buf, cap, "(empty)");
	if (cap < 16)
		return;
	if (size <= from)
		return;
	start = size - from > (off_t)(cap - 1) ? size - (off_t)(cap - 1) : from;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		snprintf(buf, cap, "(could not open: %s)", strerror(errno));
		return;
	}
	while (len < cap - 1) {
		n = pread(fd, buf + len, cap - 1 - len, start + (off_t)len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	p = buf;
	if (start > from) { /* started mid-line: drop the partial first line */
		char *nl = strchr(p, '\n');

		if (nl)
			p = nl + 1;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	if (p != buf)
		memmove(buf, p, strlen(p) + 1);
	if (!buf[0])
		snprintf(buf, cap, "(empty)");
}

/* ---- running children -------------------------------------------------- */

static void child_fail(int fd, int step, int e)
{
	struct child_report r = { step, e };
	ssize_t n;

	do
		n = write(fd, &r, sizeof(r));
	while (n < 0 && errno == EINTR);
	_exit(127);
}

/* child_main runs in the forked child: async-signal-safe calls only. It
 * runs op, or execs argv with stdout and stderr appended to the log. */
static void child_main(const struct agg_pgembed *pg, char *const argv[], const struct child_op *op,
		       bool quiet, int rfd)
{
	struct sigaction sa;
	sigset_t none;
	int fd, e;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		(void)sigaction(sig, &sa, NULL); /* fails harmlessly for KILL/STOP */
	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
		child_fail(rfd, STEP_SIGNALS, errno);
	if (pg->switch_user) {
		if (setgroups((size_t)pg->ngroups, pg->groups) < 0)
			child_fail(rfd, STEP_SETGROUPS, errno);
		if (setgid(pg->gid) < 0)
			child_fail(rfd, STEP_SETGID, errno);
		if (setuid(pg->uid) < 0)
			child_fail(rfd, STEP_SETUID, errno);
		if (geteuid() == 0 || getuid() == 0)
			child_fail(rfd, STEP_SETUID, EPERM);
	}
	if (op) {
		e = op->fn(op->arg);
		if (e)
			child_fail(rfd, STEP_OP, e);
		_exit(0);
	}
	if (chdir(pg->pg_dir) < 0)
		child_fail(rfd, STEP_CHDIR, errno);
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd < 0 || dup2(fd, STDIN_FILENO) < 0 || (quiet && dup2(fd, STDOUT_FILENO) < 0))
		child_fail(rfd, STEP_STDIN, errno);
	fd = open(pg->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0 || (!quiet && dup2(fd, STDOUT_FILENO) < 0) || dup2(fd, STDERR_FILENO) < 0)
		child_fail(rfd, STEP_LOG, errno);
	/* the postmaster lives on: it must not inherit our sockets and files */
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
		for (int i = 3; i < 4096; i++)
			(void)fcntl(i, F_SETFD, FD_CLOEXEC);
	}
	execve(argv[0], argv, pg->envp);
	child_fail(rfd, STEP_EXEC, errno);
}

static int op_access(void *path);

/* run_child runs, as the cluster's user, either argv (argv[0] an absolute
 * path; stdout, unless quiet, and stderr appended to the log file), storing
 * its exit status in *status, or op (argv NULL). Returns 0, or a negative errno with
 * err set when the child could not start, op failed or it was killed. */
static int run_child(const struct agg_pgembed *pg, char *const argv[], const struct child_op *op,
		     bool quiet, int *status, char *err, size_t errlen)
{
	const char *what = argv ? argv[0] : op->path;
	struct child_report r = { 0, 0 };
	int pfd[2], wst, e;
	ssize_t n;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0) {
		e = errno;
		errf(err, errlen, "could not create pipe: %s", strerror(e));
		return -e;
	}
	fflush(NULL); /* nothing buffered may be written twice */
	pid = fork();
	if (pid < 0) {
		e = errno;
		close(pfd[0]);
		close(pfd[1]);
		errf(err, errlen, "could not fork for \"%s\": %s", what, strerror(e));
		return -e;
	}
	if (pid == 0) {
		close(pfd[0]);
		child_main(pg, argv, op, quiet, pfd[1]);
		_exit(127); /* not reached */
	}
	close(pfd[1]);
	do
		n = read(pfd[0], &r, sizeof(r));
	while (n < 0 && errno == EINTR);
	close(pfd[0]);
	while (waitpid(pid, &wst, 0) < 0) {
		if (errno != EINTR) {
			e = errno;
			errf(err, errlen, "could not wait for \"%s\": %s", what, strerror(e));
			return -e;
		}
	}
	if (n == (ssize_t)sizeof(r) && r.step) {
		if (r.step == STEP_OP && op->fn == op_access)
			errf(err, errlen,
			     "user \"%s\" cannot access \"%s\": %s (every parent directory must be searchable by that user)",
			     pg->user, op->path, strerror(r.err));
		else if (r.step == STEP_OP)
			errf(err, errlen, "could not %s \"%s\" as user \"%s\": %s", op->what,
			     op->path, pg->user, strerror(r.err));
		else if (r.step == STEP_LOG)
			errf(err, errlen, "could not open log file \"%s\" as user \"%s\": %s",
			     pg->log_file, pg->user, strerror(r.err));
		else
			errf(err, errlen, "could not %s to run \"%s\" as user \"%s\": %s",
			     step_name(r.step), what, pg->user, strerror(r.err));
		return r.err > 0 ? -r.err : -EIO;
	}
	if (WIFSIGNALED(wst)) {
		errf(err, errlen, "\"%s\" was terminated by signal %d", what, WTERMSIG(wst));
		return -EINTR;
	}
	if (status)
		*status = WEXITSTATUS(wst);
	else if (WEXITSTATUS(wst) != 0)
		return -EIO;
	return 0;
}

/* run_op runs op as the cluster's user. */
static int run_op(const struct agg_pgembed *pg, int (*fn)(void *), void *arg, const char *what,
		  const char *path, char *err, size_t errlen)
{
	struct child_op op = { fn, arg, what, path };

	return run_child(pg, NULL, &op, false, NULL, err, errlen);
}

/* ---- operations run as the cluster's user (async-signal-safe only) ----- */

/* op_access checks that a directory is usable by the cluster's user. */
static int op_access(void *path)
{
	return access(path, R_OK | W_OK | X_OK) < 0 ? errno : 0;
}

/* op_private_dir makes a directory only its owner (the cluster's user) may
 * use, or checks that an existing one is such a directory. */
static int op_private_dir(void *arg)
{
	const char *path = arg;
	struct stat st;

	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return errno;
	if (lstat(path, &st) < 0)
		return errno;
	if (!S_ISDIR(st.st_mode))
		return ENOTDIR;
	if (st.st_uid != geteuid())
		return EPERM;
	if ((st.st_mode & 077) && chmod(path, 0700) < 0)
		return errno;
	return 0;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* struct file_job is a file op_write_file replaces atomically. */
struct file_job {
	const char *path, *tmp, *dir;
	const char *data;
	size_t len;
};

static int op_write_file(void *arg)
{
	const struct file_job *j = arg;
	int fd, e;

	(void)unlink(j->tmp);
	fd = open(j->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno;
	e = write_all(fd, j->data, j->len);
	if (!e && fsync(fd) < 0)
		e = errno;
	if (close(fd) < 0 && !e)
		e = errno;
	if (!e && rename(j->tmp, j->path) < 0)
		e = errno;
	if (e) {
		(void)unlink(j->tmp);
		return e;
	}
	fd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	return 0;
}

/* struct include_job: op_include_settings makes path include our settings
 * file (last, so our settings win); buf is scratch space. */
struct include_job {
	const char *path;
	char *buf;
	size_t cap;
};

static int op_include_settings(void *arg)
{
	static const char line[] =
		"\n# spikehound: settings managed by the aggregator\n" PG_CONF_INCLUDE "\n";
	const struct include_job *j = arg;
	size_t len = 0, inc = sizeof(PG_CONF_INCLUDE) - 1;
	ssize_t n;
	int fd, e = 0;

	fd = open(j->path, O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno;
	while (len < j->cap - 1) {
		n = read(fd, j->buf + len, j->cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			e = errno;
			close(fd);
			return e;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	j->buf[len] = '\0';
	for (const char *p = j->buf; *p;) {
		const char *nl = strchr(p, '\n');

		if (strncmp(p, PG_CONF_INCLUDE, inc) == 0) {
			close(fd);
			return 0;
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	e = write_all(fd, line, sizeof(line) - 1);
	if (!e && fsync(fd) < 0)
		e = errno;
	close(fd);
	return e;
}

/* pg_ctl_run runs bindir/pg_ctl with the given arguments (NULL-terminated,
 * at most 14; quiet: its stdout is discarded) and returns its exit status
 * or a negative errno. */
static int pg_ctl_run(const struct agg_pgembed *pg, bool quiet, char *err, size_t errlen, ...)
{
	char *argv[16];
	char path[PATH_MAX];
	int argc = 0, st = 0, rc;
	va_list ap;

	snprintf(path, sizeof(path), "%s/pg_ctl", pg->bindir);
	argv[argc++] = path;
	va_start(ap, errlen);
	for (char *a; argc < 15 && (a = va_arg(ap, char *));)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	rc = run_child(pg, argv, NULL, quiet, &st, err, errlen);
	return rc < 0 ? rc : st;
}

/* ---- setup helpers ----------------------------------------------------- */

/* path_ok rejects characters pg_ctl (which quotes paths in a shell command
 * line for the postmaster) and postgresql.conf list syntax cannot carry. */
static bool path_ok(const char *p)
{
	return !strpbrk(p, "\"'$`\\,\n\r");
}

static int resolve_user(struct agg_pgembed *pg, const char *run_as, char *err, size_t errlen)
{
	struct passwd pwd, *res = NULL;
	char buf[4096];
	int rc, n;

	if (geteuid() == 0) {
		const char *name = run_as && *run_as ? run_as : PG_DEFAULT_USER;

		rc = getpwnam_r(name, &pwd, buf, sizeof(buf), &res);
		if (!res) {
			errf(err, errlen,
			     "user \"%s\" to run PostgreSQL as does not exist%s%s (deploy/install-deps.sh creates it)",
			     name, rc ? ": " : "", rc ? strerror(rc) : "");
			return rc ? -rc : -ENOENT;
		}
		if (pwd.pw_uid == 0) {
			errf(err, errlen, "refusing to run PostgreSQL as user \"%s\": it is root",
			     name);
			return -EPERM;
		}
		pg->switch_user = true;
		n = 32;
		for (;;) {
			gid_t *g = realloc(pg->groups, (size_t)n * sizeof(*g));

			if (!g)
				return -ENOMEM;
			pg->groups = g;
			if (getgrouplist(pwd.pw_name, pwd.pw_gid, g, &n) >= 0)
				break;
			if (n > 65536)
				return -E2BIG;
			n *= 2;
		}
		pg->ngroups = n;
	} else {
		rc = getpwuid_r(geteuid(), &pwd, buf, sizeof(buf), &res);
		if (!res) {
			errf(err, errlen, "could not look up the current user (uid %u)%s%s",
			     (unsigned)geteuid(), rc ? ": " : "", rc ? strerror(rc) : "");
			return rc ? -rc : -ENOENT;
		}
		if (run_as && *run_as && strcmp(run_as, pwd.pw_name) != 0) {
			errf(err, errlen,
			     "cannot run PostgreSQL as user \"%s\": only root can switch users (running as \"%s\")",
			     run_as, pwd.pw_name);
			return -EPERM;
		}
	}
	pg->uid = pwd.pw_uid;
	pg->gid = pwd.pw_gid;
	pg->user = strdup(pwd.pw_name);
	pg->home = strdup(pwd.pw_dir && *pwd.pw_dir ? pwd.pw_dir : "/");
	if (!pg->user || !pg->home)
		return -ENOMEM;
	return 0;
}

static int build_env(struct agg_pgembed *pg)
{
	const char *tz = getenv("TZ");
	int i = 0;

	pg->envp[i++] = xasprintf("PATH=%s:/usr/bin:/bin", pg->bindir);
	pg->envp[i++] = xasprintf("HOME=%s", pg->home);
	pg->envp[i++] = xasprintf("USER=%s", pg->user);
	pg->envp[i++] = xasprintf("LOGNAME=%s", pg->user);
	pg->envp[i++] = strdup("LC_ALL=C");
	if (tz)
		pg->envp[i++] = xasprintf("TZ=%s", tz);
	for (int j = 0; j < i; j++)
		if (!pg->envp[j])
			return -ENOMEM;
	return 0;
}

/* bindir_version returns 100 * major + minor of a /usr/lib/postgresql/<v>/bin
 * or /usr/pgsql-<v>/bin path, or -1. */
static int bindir_version(const char *path)
{
	const char *p = strstr(path, "/postgresql/");
	long major, minor = 0;
	char *end;

	if (p)
		p += strlen("/postgresql/");
	else if ((p = strstr(path, "/pgsql-")))
		p += strlen("/pgsql-");
	else
		return -1;
	major = strtol(p, &end, 10);
	if (end == p || major <= 0 || major > 1000)
		return -1;
	if (*end == '.')
		minor = strtol(end + 1, &end, 10);
	if (*end != '/' || minor < 0 || minor > 99)
		return -1;
	return (int)(major * 100 + minor);
}

static bool has_server_binaries(const char *dir)
{
	char p[PATH_MAX];

	if (snprintf(p, sizeof(p), "%s/initdb", dir) >= (int)sizeof(p) || access(p, X_OK) < 0)
		return false;
	snprintf(p, sizeof(p), "%s/pg_ctl", dir);
	if (access(p, X_OK) < 0)
		return false;
	snprintf(p, sizeof(p), "%s/postgres", dir);
	return access(p, X_OK) == 0;
}

/* find_bindir picks the server binaries: the given directory, else those of
 * the existing cluster's major version, else the newest installed. */
static int find_bindir(struct agg_pgembed *pg, const char *want, char *err, size_t errlen)
{
	static const char *const patterns[] = { "/usr/lib/postgresql/*/bin/initdb",
						"/usr/pgsql-*/bin/initdb" };
	char path[PATH_MAX], ver[32];
	char *best = NULL;
	int best_v = -1;

	if (want && *want) {
		if (!has_server_binaries(want)) {
			errf(err, errlen,
			     "no PostgreSQL server binaries (initdb, pg_ctl, postgres) in \"%s\"",
			     want);
			return -ENOENT;
		}
		pg->bindir = strdup(want);
		return pg->bindir ? 0 : -ENOMEM;
	}
	snprintf(path, sizeof(path), "%s/PG_VERSION", pg->pgdata);
	if (sh_read_file(path, ver, sizeof(ver)) > 0) {
		ver[strcspn(ver, "\n")] = '\0';
		snprintf(path, sizeof(path), "/usr/lib/postgresql/%s/bin", ver);
		if (!has_server_binaries(path))
			snprintf(path, sizeof(path), "/usr/pgsql-%s/bin", ver);
		if (!has_server_binaries(path)) {
			errf(err, errlen,
			     "the cluster in \"%s\" is PostgreSQL %s but no server binaries of that version were found (install them or set the bindir)",
			     pg->pgdata, ver);
			return -ENOENT;
		}
		pg->bindir = strdup(path);
		return pg->bindir ? 0 : -ENOMEM;
	}
	for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
		glob_t g;

		if (glob(patterns[i], 0, NULL, &g) != 0)
			continue;
		for (size_t j = 0; j < g.gl_pathc; j++) {
			int v = bindir_version(g.gl_pathv[j]);
			char *slash = strrchr(g.gl_pathv[j], '/');

			if (v <= best_v || !slash)
				continue;
			*slash = '\0';
			if (!has_server_binaries(g.gl_pathv[j]))
				continue;
			free(best);
			best = strdup(g.gl_pathv[j]);
			best_v = v;
		}
		globfree(&g);
	}
	if (!best) {
		errf(err, errlen,
		     "no PostgreSQL server binaries found under /usr/lib/postgresql/*/bin (install postgresql, set the bindir, or configure a DSN)");
		return -ENOENT;
	}
	pg->bindir = best;
	return 0;
}

/* own_dir makes dir (mode 0700) if missing and, as root, gives it to the
 * cluster's user. Only for <data_dir>/pg, whose parent is the caller's. */
static int own_dir(const struct agg_pgembed *pg, const char *dir, char *err, size_t errlen)
{
	struct stat st;
	int e;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		e = errno;
		errf(err, errlen, "could not create directory \"%s\": %s", dir, strerror(e));
		return -e;
	}
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		errf(err, errlen, "\"%s\" is not a directory", dir);
		return -ENOTDIR;
	}
	if (pg->switch_user && (st.st_uid != pg->uid || st.st_gid != pg->gid) &&
	    lchown(dir, pg->uid, pg->gid) < 0) {
		e = errno;
		errf(err, errlen, "could not change owner of \"%s\" to \"%s\": %s", dir, pg->user,
		     strerror(e));
		return -e;
	}
	return 0;
}

static uint64_t fnv1a(const void *data, size_t len, uint64_t h)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* socket_fits tells whether dir's socket path fits in sun_path. */
static bool socket_fits(const char *dir, int port)
{
	struct sockaddr_un sun;
	int n = snprintf(NULL, 0, "%s/.s.PGSQL.%d", dir, port);

	return n > 0 && (size_t)n < sizeof(sun.sun_path);
}

/* choose_socket_dir uses <pg_dir>/run, or when its socket path would be too
 * long, /tmp/spikehound-pg-<hash of data dir and user>; either must be a
 * directory of the cluster's user, closed to others. */
static int choose_socket_dir(struct agg_pgembed *pg, char *err, size_t errlen)
{
	uint64_t h;

	pg->sock_dir = xasprintf("%s/run", pg->pg_dir);
	if (!pg->sock_dir)
		return -ENOMEM;
	if (!socket_fits(pg->sock_dir, pg->port)) {
		free(pg->sock_dir);
		h = fnv1a(pg->pgdata, strlen(pg->pgdata), 0xcbf29ce484222325ULL);
		h = fnv1a(&pg->uid, sizeof(pg->uid), h);
		pg->sock_dir = xasprintf("/tmp/spikehound-pg-%016llx", (unsigned long long)h);
		if (!pg->sock_dir)
			return -ENOMEM;
		pg->sock_fallback = true;
		sh_debug("socket path under \"%s\" is too long; using \"%s\"", pg->pg_dir,
			 pg->sock_dir);
	}
	return run_op(pg, op_private_dir, pg->sock_dir, "make private directory", pg->sock_dir,
		      err, errlen);
}

/* ensure_include makes postgresql.conf include our settings file. */
static int ensure_include(const struct agg_pgembed *pg, char *err, size_t errlen)
{
	struct include_job j = { NULL, NULL, 1 << 20 };
	char path[PATH_MAX];
	int rc;

	snprintf(path, sizeof(path), "%s/postgresql.conf", pg->pgdata);
	j.path = path;
	j.buf = malloc(j.cap);
	if (!j.buf)
		return -ENOMEM;
	rc = run_op(pg, op_include_settings, &j, "update", path, err, errlen);
	free(j.buf);
	return rc;
}

/* write_settings (re)writes the settings file, read at the next start. */
static int write_settings(const struct agg_pgembed *pg, char *err, size_t errlen)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	struct file_job job;
	char *conf;
	int rc;

	conf = xasprintf(
		"# %s: written by spikehound-aggregator at every start; edits are lost.\n"
		"# A small always-on service: Unix socket only, durable commits.\n"
		"listen_addresses = ''\n"
		"port = %d\n"
		"unix_socket_directories = '%s'\n"
		"unix_socket_permissions = 0700\n"
		"max_connections = 50\n"
		"shared_buffers = 128MB\n"
		"work_mem = 8MB\n"
		"maintenance_work_mem = 64MB\n"
		"effective_cache_size = 512MB\n"
		"fsync = on\n"
		"synchronous_commit = on\n"
		"full_page_writes = on\n"
		"max_wal_size = 1GB\n"
		"checkpoint_timeout = 10min\n"
		"timezone = 'UTC'\n"
		"log_timezone = 'UTC'\n"
		"logging_collector = off\n"
		"log_line_prefix = '%%m [%%p] '\n"
		"log_min_messages = warning\n"
		"log_checkpoints = off\n"
		"autovacuum = on\n",
		PG_CONF_NAME, pg->port, pg->sock_dir);
	if (!conf)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/%s", pg->pgdata, PG_CONF_NAME);
	snprintf(tmp, sizeof(tmp), "%s/%s.tmp", pg->pgdata, PG_CONF_NAME);
	job = (struct file_job){ path, tmp, pg->pgdata, conf, strlen(conf) };
	rc = run_op(pg, op_write_file, &job, "write", path, err, errlen);
	free(conf);
	return rc;
}

static int run_initdb(const struct agg_pgembed *pg, char *err, size_t errlen)
{
	char initdb[PATH_MAX], user_arg[300], tail[PG_TAIL_BYTES];
	char *argv[] = { initdb, "-D", pg->pgdata, user_arg, "--auth-local=trust",
			 "--auth-host=reject", "-E", "UTF8", "--no-locale", "--no-instructions",
			 NULL };
	off_t from = file_size(pg->log_file);
	int st = 0, rc;

	snprintf(initdb, sizeof(initdb), "%s/initdb", pg->bindir);
	snprintf(user_arg, sizeof(user_arg), "--username=%s", pg->user);
	sh_info("creating the embedded PostgreSQL cluster in \"%s\"", pg->pgdata);
	rc = run_child(pg, argv, NULL, false, &st, err, errlen);
	if (rc < 0)
		return rc;
	if (st != 0) {
		log_tail(pg->log_file, from, tail, sizeof(tail));
		errf(err, errlen, "initdb failed for \"%s\" (exit status %d); last lines of \"%s\":\n%s",
		     pg->pgdata, st, pg->log_file, tail);
		return -EIO;
	}
	return 0;
}

/* read_pidfile reads the port and first socket directory of a running
 * server from postmaster.pid (PostgreSQL 10+ layout). */
static int read_pidfile(const struct agg_pgembed *pg, int *port, char *sockdir, size_t cap)
{
	char path[PATH_MAX], buf[4096];
	char *line, *save = NULL;
	int i = 1;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/postmaster.pid", pg->pgdata);
	n = sh_read_file(path, buf, sizeof(buf));
	if (n < 0)
		return (int)n;
	*port = 0;
	sockdir[0] = '\0';
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
		if (i == 4)
			*port = atoi(line);
		else if (i == 5)
			snprintf(sockdir, cap, "%s", line);
	}
	return *port > 0 && sockdir[0] ? 0 : -EINVAL;
}

static int conn_params(const struct agg_pgembed *pg, const char *dbname, PGconn **out)
{
	char port[16];
	const char *keys[] = { "host", "port", "dbname", "user", "connect_timeout",
			       "fallback_application_name", NULL };
	const char *vals[] = { pg->sock_dir, port, dbname, pg->user, "10",
			       "spikehound-aggregator", NULL };

	snprintf(port, sizeof(port), "%d", pg->port);
	*out = PQconnectdbParams(keys, vals, 0);
	return *out ? 0 : -ENOMEM;
}

static PGPing ping(const struct agg_pgembed *pg)
{
	char port[16];
	const char *keys[] = { "host", "port", "dbname", "user", "connect_timeout", NULL };
	const char *vals[] = { pg->sock_dir, port, "postgres", pg->user, "5", NULL };

	snprintf(port, sizeof(port), "%d", pg->port);
	return PQpingParams(keys, vals, 0);
}

/* wait_ready waits until an already running server accepts connections
 * (it may still be starting up or recovering). */
static int wait_ready(const struct agg_pgembed *pg, char *err, size_t errlen)
{
	PGPing p = PQPING_NO_RESPONSE;

	for (int waited = 0; waited < PG_READY_WAIT_MS; waited += 200) {
		p = ping(pg);
		if (p == PQPING_OK)
			return 0;
		if (p == PQPING_NO_ATTEMPT)
			break;
		usleep(200 * 1000);
	}
	errf(err, errlen,
	     "the server running on \"%s\" does not accept connections on socket directory \"%s\" port %d (%s)",
	     pg->pgdata, pg->sock_dir, pg->port,
	     p == PQPING_REJECT ? "it rejects them" : "no response");
	return -ETIMEDOUT;
}

/* adopt_running reuses a server already running on our data directory. */
static int adopt_running(struct agg_pgembed *pg, char *err, size_t errlen)
{
	char sockdir[PATH_MAX];
	int port = 0, rc;

	rc = read_pidfile(pg, &port, sockdir, sizeof(sockdir));
	if (rc < 0) {
		errf(err, errlen, "a server is running on \"%s\" but its postmaster.pid is unreadable",
		     pg->pgdata);
		return rc;
	}
	if (port != pg->port || strcmp(sockdir, pg->sock_dir) != 0) {
		char *s = strdup(sockdir);

		if (!s)
			return -ENOMEM;
		sh_warn("embedded PostgreSQL already running on \"%s\" with socket directory \"%s\" port %d; reusing it as is (restart it to apply the configured settings)",
			pg->pgdata, sockdir, port);
		free(pg->sock_dir);
		pg->sock_dir = s;
		pg->sock_fallback = false;
		pg->port = port;
	} else {
		sh_info("reusing the embedded PostgreSQL already running on \"%s\"", pg->pgdata);
	}
	return wait_ready(pg, err, errlen);
}

static int start_server(const struct agg_pgembed *pg, char *err, size_t errlen)
{
	char tail[PG_TAIL_BYTES];
	off_t from = file_size(pg->log_file);
	int rc;

	sh_info("starting the embedded PostgreSQL on \"%s\"", pg->pgdata);
	rc = pg_ctl_run(pg, false, err, errlen, "start", "-s", "-D", pg->pgdata, "-l",
			pg->log_file, "-w", "-t", PG_START_TIMEOUT, (char *)NULL);
	if (rc < 0)
		return rc;
	if (rc != 0) {
		log_tail(pg->log_file, from, tail, sizeof(tail));
		errf(err, errlen,
		     "could not start PostgreSQL on \"%s\" (pg_ctl exit status %d); last lines of \"%s\":\n%s",
		     pg->pgdata, rc, pg->log_file, tail);
		return -EIO;
	}
	return 0;
}

static int create_database(const struct agg_pgembed *pg, char *err, size_t errlen)
{
	const char *params[] = { AGG_PGEMBED_DBNAME };
	PGconn *conn = NULL;
	PGresult *res = NULL;
	int rc = 0;

	rc = conn_params(pg, "postgres", &conn);
	if (rc < 0)
		return rc;
	if (PQstatus(conn) != CONNECTION_OK) {
		errf(err, errlen, "could not connect to \"%s\": %s", pg->sock_dir,
		     PQerrorMessage(conn));
		rc = -ECONNREFUSED;
		goto cleanup;
	}
	res = PQexecParams(conn, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL, params,
			   NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		errf(err, errlen, "could not look up database \"%s\": %s", AGG_PGEMBED_DBNAME,
		     PQresultErrorMessage(res));
		rc = -EIO;
		goto cleanup;
	}
	if (PQntuples(res) > 0)
		goto cleanup;
	PQclear(res);
	sh_info("creating database \"%s\"", AGG_PGEMBED_DBNAME);
	res = PQexec(conn, "CREATE DATABASE " AGG_PGEMBED_DBNAME);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		if (state && strcmp(state, "42P04") == 0) /* created meanwhile */
			goto cleanup;
		errf(err, errlen, "could not create database \"%s\": %s", AGG_PGEMBED_DBNAME,
		     PQresultErrorMessage(res));
		rc = -EIO;
	}
cleanup:
	PQclear(res);
	PQfinish(conn);
	if (rc < 0 && err && errlen) { /* libpq messages end in a newline */
		size_t n = strlen(err);

		while (n > 0 && err[n - 1] == '\n')
			err[--n] = '\0';
	}
	return rc;
}

/* dsn_value appends key=value to a connection string, quoting the value. */
static void dsn_value(char *out, size_t cap, const char *key, const char *val)
{
	size_t n = strlen(out);
	bool quote = !*val || strpbrk(val, " '\\\t\n") != NULL;

	n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%s=%s", n ? " " : "", key,
			      quote ? "'" : "");
	for (const char *p = val; *p && n + 3 < cap; p++) {
		if (quote && (*p == '\'' || *p == '\\'))
			out[n++] = '\\';
		out[n++] = *p;
	}
	if (quote && n + 1 < cap)
		out[n++] = '\'';
	if (n < cap)
		out[n] = '\0';
}

static int build_dsn(struct agg_pgembed *pg)
{
	size_t cap = strlen(pg->sock_dir) * 2 + strlen(pg->user) * 2 + 128;
	char port[16];

	pg->dsn = calloc(1, cap);
	if (!pg->dsn)
		return -ENOMEM;
	snprintf(port, sizeof(port), "%d", pg->port);
	dsn_value(pg->dsn, cap, "host", pg->sock_dir);
	dsn_value(pg->dsn, cap, "port", port);
	dsn_value(pg->dsn, cap, "dbname", AGG_PGEMBED_DBNAME);
	dsn_value(pg->dsn, cap, "user", pg->user);
	return 0;
}

/* ---- public ------------------------------------------------------------ */

int agg_pgembed_start(const struct agg_pgembed_opts *o, struct agg_pgembed **out, char *err,
		      size_t errlen)
{
	struct agg_pgembed *pg = NULL;
	char real[PATH_MAX], version[PATH_MAX];
	bool started = false;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!o || !o->data_dir || !*o->data_dir) {
		errf(err, errlen, "no data directory given for the embedded PostgreSQL");
		return -EINVAL;
	}
	if (o->port < 0 || o->port > 65535) {
		errf(err, errlen, "invalid port %d", o->port);
		return -EINVAL;
	}
	pg = calloc(1, sizeof(*pg));
	if (!pg)
		return -ENOMEM;
	pg->port = o->port ? o->port : PG_DEFAULT_PORT;

	rc = sh_mkdir_p(o->data_dir, 0755);
	if (rc < 0) {
		errf(err, errlen, "could not create directory \"%s\": %s", o->data_dir,
		     strerror(-rc));
		goto fail;
	}
	if (!realpath(o->data_dir, real)) {
		rc = -errno;
		errf(err, errlen, "could not resolve \"%s\": %s", o->data_dir, strerror(-rc));
		goto fail;
	}
	pg->pg_dir = xasprintf("%s/pg", real);
	pg->pgdata = xasprintf("%s/pg/data", real);
	pg->log_file = o->log_file && *o->log_file ? strdup(o->log_file)
						   : xasprintf("%s/pg/postgresql.log", real);
	if (!pg->pg_dir || !pg->pgdata || !pg->log_file) {
		rc = -ENOMEM;
		goto fail;
	}
	if (!path_ok(pg->pgdata) || !path_ok(pg->log_file) || pg->log_file[0] != '/') {
		errf(err, errlen,
		     "unusable path \"%s\" or log file \"%s\": it must be absolute and contain none of \" ' $ ` \\ , or newlines",
		     pg->pgdata, pg->log_file);
		rc = -EINVAL;
		goto fail;
	}

	rc = resolve_user(pg, o->run_as, err, errlen);
	if (rc < 0)
		goto fail;
	rc = find_bindir(pg, o->bindir, err, errlen);
	if (rc < 0)
		goto fail;
	if (!path_ok(pg->bindir)) {
		errf(err, errlen, "unusable PostgreSQL binary directory \"%s\"", pg->bindir);
		rc = -EINVAL;
		goto fail;
	}
	rc = build_env(pg);
	if (rc < 0)
		goto fail;

	rc = own_dir(pg, pg->pg_dir, err, errlen);
	if (rc < 0)
		goto fail;
	rc = run_op(pg, op_access, pg->pg_dir, "access", pg->pg_dir, err, errlen);
	if (rc < 0)
		goto fail;
	rc = choose_socket_dir(pg, err, errlen);
	if (rc < 0)
		goto fail;

	snprintf(version, sizeof(version), "%s/PG_VERSION", pg->pgdata);
	if (access(version, F_OK) < 0) {
		rc = run_initdb(pg, err, errlen);
		if (rc < 0)
			goto fail;
	}
	rc = ensure_include(pg, err, errlen);
	if (rc < 0)
		goto fail;

	rc = pg_ctl_run(pg, true, err, errlen, "status", "-D", pg->pgdata, (char *)NULL);
	if (rc < 0)
		goto fail;
	if (rc == PGCTL_STATUS_RUNNING) {
		rc = adopt_running(pg, err, errlen);
	} else {
		rc = write_settings(pg, err, errlen);
		if (rc == 0)
			rc = start_server(pg, err, errlen);
		started = rc == 0;
	}
	if (rc < 0)
		goto fail;

	rc = create_database(pg, err, errlen);
	if (rc < 0)
		goto fail;
	rc = build_dsn(pg);
	if (rc < 0)
		goto fail;
	*out = pg;
	return 0;
fail:
	if (rc == -ENOMEM && err && errlen && !err[0])
		errf(err, errlen, "out of memory");
	if (started) {
		char ignored[256];

		(void)pg_ctl_run(pg, false, ignored, sizeof(ignored), "stop", "-s", "-D",
				 pg->pgdata, "-m", "fast", "-w", "-t", PG_STOP_TIMEOUT,
				 (char *)NULL);
	}
	pgembed_free(pg);
	return rc;
}

const char *agg_pgembed_dsn(const struct agg_pgembed *pg)
{
	return pg->dsn;
}

const char *agg_pgembed_socket_dir(const struct agg_pgembed *pg)
{
	return pg->sock_dir;
}

int agg_pgembed_stop(struct agg_pgembed *pg, bool fast)
{
	char err[512], tail[PG_TAIL_BYTES];
	off_t from;
	int rc;

	if (!pg)
		return 0;
	rc = pg_ctl_run(pg, true, err, sizeof(err), "status", "-D", pg->pgdata, (char *)NULL);
	if (rc == PGCTL_STATUS_STOPPED || rc == PGCTL_STATUS_NODATA) {
		rc = 0;
		goto cleanup;
	}
	from = file_size(pg->log_file);
	sh_info("stopping the embedded PostgreSQL on \"%s\" (%s)", pg->pgdata,
		fast ? "fast" : "smart");
	rc = pg_ctl_run(pg, false, err, sizeof(err), "stop", "-s", "-D", pg->pgdata, "-m",
			fast ? "fast" : "smart", "-w", "-t", PG_STOP_TIMEOUT, (char *)NULL);
	if (rc > 0 && fast) {
		sh_warn("PostgreSQL on \"%s\" did not stop in fast mode; stopping it in immediate mode (it recovers at the next start)",
			pg->pgdata);
		rc = pg_ctl_run(pg, false, err, sizeof(err), "stop", "-s", "-D", pg->pgdata,
				"-m", "immediate", "-w", "-t", PG_STOP_TIMEOUT, (char *)NULL);
	}
	if (rc < 0) {
		sh_err("could not stop PostgreSQL on \"%s\": %s", pg->pgdata, err);
	} else if (rc > 0) {
		log_tail(pg->log_file, from, tail, sizeof(tail));
		sh_err("could not stop PostgreSQL on \"%s\" (pg_ctl exit status %d); last lines of \"%s\":\n%s",
		       pg->pgdata, rc, pg->log_file, tail);
		rc = -EIO;
	}
cleanup:
	if (rc == 0 && pg->sock_fallback)
		(void)rmdir(pg->sock_dir); /* fails harmlessly while in use */
	pgembed_free(pg);
	return rc;
}
