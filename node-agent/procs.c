/* procs.c: keeps the inventory of live processes by rescanning /proc. A
 * known process costs one read of /proc/PID/stat per scan; only new (or
 * exec'd) processes have their status, cmdline, exe and cgroup read. Exited
 * records are freed one scan after they are reported, so memory follows
 * the live process count. */

/* uthash must not exit() when it cannot allocate: a failed add leaves the
 * record's hh.tbl NULL and we check for it. */
#define HASH_NONFATAL_OOM 1

#include "procs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "hostinfo.h"
#include "timeutil.h"

#define PF_KTHREAD 0x00200000u

/* the hash key is the first 16 bytes of the record: pid, pad_, start_ticks */
#define KEYLEN (offsetof(struct agent_proc, start_ticks) + sizeof(uint64_t))
_Static_assert(offsetof(struct agent_proc, pid) == 0, "key starts the record");
_Static_assert(offsetof(struct agent_proc, start_ticks) == 8, "key has no hidden padding");
_Static_assert(KEYLEN == 16, "scan's lookup key is 16 bytes");

/* scratch layout inside p->buf */
#define CMD_OFF 0
#define CMD_CAP (AGENT_PROC_CMDLINE_MAX + 1)
#define EXE_OFF (CMD_OFF + CMD_CAP)
#define EXE_CAP PATH_MAX
#define MISC_OFF (EXE_OFF + EXE_CAP)
#define MISC_CAP 8192
#define BUF_SIZE (MISC_OFF + MISC_CAP)

/* what /proc/PID/stat tells us */
struct stat_info {
	char comm[64];
	int32_t ppid;
	uint64_t start_ticks;
	bool kthread;
};

int agent_procs_init(struct agent_procs *p, const char *proc_root)
{
	long tck = sysconf(_SC_CLK_TCK);
	int err;

	memset(p, 0, sizeof(*p));
	p->clk_tck = tck > 0 ? tck : 100;
	p->root = strdup(proc_root);
	p->buf = malloc(BUF_SIZE);
	if (!p->root || !p->buf) {
		err = -ENOMEM;
		goto cleanup;
	}
	err = agent_read_btime_ns(proc_root, &p->btime_ns);
	if (err)
		goto cleanup;
	return 0;
cleanup:
	agent_procs_fini(p);
	return err;
}

static void free_exited(struct agent_procs *p)
{
	for (size_t i = 0; i < p->n_exited; i++)
		free((void *)p->exited[i]);
	p->n_exited = 0;
}

void agent_procs_fini(struct agent_procs *p)
{
	struct agent_proc *r, *tmp;

	HASH_ITER(hh, p->table, r, tmp) {
		HASH_DEL(p->table, r);
		free(r);
	}
	free_exited(p);
	free(p->started);
	free(p->changed);
	free(p->exited);
	free(p->all);
	free(p->buf);
	free(p->root);
	memset(p, 0, sizeof(*p));
}

static int reserve(const struct agent_proc ***arr, size_t *cap, size_t need)
{
	const struct agent_proc **n;
	size_t c = *cap ? *cap : 64;

	if (need <= *cap)
		return 0;
	while (c < need)
		c *= 2;
	n = realloc(*arr, c * sizeof(*n));
	if (!n)
		return -ENOMEM;
	*arr = n;
	*cap = c;
	return 0;
}

/* Parses /proc/PID/stat. comm is between the first '(' and the LAST ')':
 * it may itself contain spaces and parentheses. Returns 0 or -EINVAL. */
static int parse_stat(const char *buf, struct stat_info *si)
{
	const char *open = strchr(buf, '('), *close = strrchr(buf, ')'), *s;
	size_t len;
	int field;

	if (!open || !close || close < open)
		return -EINVAL;
	len = (size_t)(close - open - 1);
	if (len >= sizeof(si->comm))
		len = sizeof(si->comm) - 1;
	memcpy(si->comm, open + 1, len);
	si->comm[len] = '\0';

	/* fields after ')' start at 3 (state); we want 4 (ppid), 9 (flags)
	 * and 22 (starttime) */
	s = close + 1;
	for (field = 3; field <= 22; field++) {
		const char *tok;
		char *end;

		while (*s == ' ')
			s++;
		if (!*s || *s == '\n')
			return -EINVAL;
		tok = s;
		while (*s && *s != ' ' && *s != '\n')
			s++;
		errno = 0;
		if (field == 4) {
			long v = strtol(tok, &end, 10);

			if (errno || end != s || v < 0 || v > INT32_MAX)
				return -EINVAL;
			si->ppid = (int32_t)v;
		} else if (field == 9) {
			unsigned long v = strtoul(tok, &end, 10);

			if (errno || end != s)
				return -EINVAL;
			si->kthread = (v & PF_KTHREAD) != 0;
		} else if (field == 22) {
			if (*tok < '0' || *tok > '9')
				return -EINVAL;
			si->start_ticks = strtoull(tok, &end, 10);
			if (errno || end != s)
				return -EINVAL;
		}
	}
	/* sanitized here so it compares equal to the stored comm next scan */
	agent_utf8_sanitize(si->comm);
	return 0;
}

/* Real uid: first number of the "Uid:" line of /proc/PID/status. */
static uint32_t parse_uid(const char *buf)
{
	const char *l = strstr(buf, "\nUid:");
	unsigned long v;
	char *end;

	if (!l)
		return UINT32_MAX;
	l += 5;
	errno = 0;
	v = strtoul(l, &end, 10);
	if (errno || end == l || v > UINT32_MAX)
		return UINT32_MAX;
	return (uint32_t)v;
}

/* Joins the NUL-separated argv in buf[0..n) with single spaces, in place;
 * trailing NULs (argv terminator, setproctitle padding) are dropped. */
static size_t join_cmdline(char *buf, size_t n)
{
	while (n > 0 && buf[n - 1] == '\0')
		n--;
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n] = '\0';
	return n;
}

/* The cgroup v2 path ("0::/path"), else the first line's (v1) path, moved
 * to the start of buf. */
static size_t pick_cgroup(char *buf)
{
	char *line = buf, *path = NULL, *nl;
	size_t len;

	for (; line && *line; line = nl ? nl + 1 : NULL) {
		char *c1, *c2;

		nl = strchr(line, '\n');
		if (strncmp(line, "0::", 3) == 0) {
			path = line + 3;
			break;
		}
		if (!path) {
			c1 = strchr(line, ':');
			c2 = c1 ? strchr(c1 + 1, ':') : NULL;
			if (c2 && (!nl || c2 < nl))
				path = c2 + 1;
		}
	}
	if (!path) {
		buf[0] = '\0';
		return 0;
	}
	nl = strchr(path, '\n');
	len = nl ? (size_t)(nl - path) : strlen(path);
	memmove(buf, path, len);
	buf[len] = '\0';
	return len;
}

/* Builds a record for a process not seen before: reads status, cmdline,
 * exe and cgroup relative to the /proc directory fd. Returns NULL only
 * when out of memory. */
static struct agent_proc *load_proc(struct agent_procs *p, int dfd, int32_t pid,
				    const struct stat_info *si)
{
	char *cmd = p->buf + CMD_OFF, *exe = p->buf + EXE_OFF, *misc = p->buf + MISC_OFF;
	size_t cmd_len = 0, exe_len = 0, cg_len = 0;
	struct agent_proc *r;
	char rel[32];
	uint32_t uid = UINT32_MAX;
	ssize_t n;
	char *s;

	snprintf(rel, sizeof(rel), "%d/status", pid);
	if (sh_read_fileat(dfd, rel, misc, MISC_CAP) > 0)
		uid = parse_uid(misc);

	snprintf(rel, sizeof(rel), "%d/cmdline", pid);
	n = sh_read_fileat(dfd, rel, cmd, CMD_CAP);
	cmd_len = n > 0 ? join_cmdline(cmd, (size_t)n) : 0;
	cmd[cmd_len] = '\0';

	exe[0] = '\0';
	if (!si->kthread) {
		snprintf(rel, sizeof(rel), "%d/exe", pid);
		n = readlinkat(dfd, rel, exe, EXE_CAP - 1);
		exe_len = n > 0 ? (size_t)n : 0;
		exe[exe_len] = '\0';
	}

	snprintf(rel, sizeof(rel), "%d/cgroup", pid);
	cg_len = sh_read_fileat(dfd, rel, misc, MISC_CAP) > 0 ? pick_cgroup(misc) : 0;
	misc[cg_len] = '\0';

	r = calloc(1, sizeof(*r) + exe_len + 1 + cmd_len + 1 + cg_len + 1);
	if (!r)
		return NULL;
	r->pid = pid;
	r->start_ticks = si->start_ticks;
	r->ppid = si->ppid;
	r->uid = uid;
	r->kthread = si->kthread;
	r->start_time_ns = p->btime_ns +
			   (int64_t)(si->start_ticks * (uint64_t)SH_NS_PER_SEC / (uint64_t)p->clk_tck);
	memcpy(r->comm, si->comm, sizeof(r->comm));

	s = (char *)(r + 1);
	memcpy(s, exe, exe_len + 1);
	agent_utf8_sanitize(s);
	r->exe = s;
	s += exe_len + 1;
	memcpy(s, cmd, cmd_len + 1);
	agent_utf8_sanitize(s);
	r->cmdline = s;
	s += cmd_len + 1;
	memcpy(s, misc, cg_len + 1);
	agent_utf8_sanitize(s);
	r->cgroup = s;
	return r;
}

/* Adds r to the table; false (and r untouched) when uthash is out of memory. */
static bool table_add(struct agent_procs *p, struct agent_proc *r)
{
	HASH_ADD(hh, p->table, pid, KEYLEN, r);
	return r->hh.tbl != NULL;
}

/* One read(2) of a /proc/PID file: procfs generates stat whole on the
 * first read, so this saves the EOF read sh_read_fileat would do (a third
 * of the syscalls of a steady-state scan). Returns length or -errno. */
static ssize_t read_once(int dfd, const char *rel, char *buf, size_t cap)
{
	ssize_t n;
	int fd;

	fd = openat(dfd, rel, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	do {
		n = read(fd, buf, cap - 1);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		n = -errno;
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return n;
}

static int32_t parse_pid(const char *name)
{
	long v = 0;

	if (name[0] < '1' || name[0] > '9')
		return -1;
	for (const char *c = name; *c; c++) {
		if (*c < '0' || *c > '9')
			return -1;
		v = v * 10 + (*c - '0');
		if (v > INT32_MAX)
			return -1;
	}
	return (int32_t)v;
}

/* The comm of a known process changed: for a user process that means exec
 * (or PR_SET_NAME), so reload it into a fresh record. Kernel threads
 * (kworker names carry their current work queue) are only renamed. */
static void refresh(struct agent_procs *p, int dfd, struct agent_proc *old,
		    const struct stat_info *si, size_t *n_changed)
{
	struct agent_proc *r;

	if (old->kthread || si->kthread) {
		memcpy(old->comm, si->comm, sizeof(old->comm));
		return;
	}
	if (reserve(&p->changed, &p->cap_changed, *n_changed + 1) < 0) {
		p->stats.alloc_failures++;
		return;
	}
	r = load_proc(p, dfd, old->pid, si);
	if (!r) {
		p->stats.alloc_failures++;
		return;
	}
	r->gen_ = p->gen;
	/* add the new record before deleting the old one (same key: uthash
	 * allows it briefly), so a failed add loses nothing */
	if (!table_add(p, r)) {
		free(r);
		p->stats.alloc_failures++;
		return;
	}
	HASH_DEL(p->table, old);
	free(old);
	p->changed[(*n_changed)++] = r;
}

int agent_procs_scan(struct agent_procs *p, int64_t now_wall_ns, struct agent_proc_delta *delta)
{
	char *statbuf = p->buf + MISC_OFF;
	size_t n_started = 0, n_changed = 0, n_gone = 0;
	struct agent_proc *r, *tmp;
	struct dirent *de;
	DIR *dir;
	int dfd;

	memset(delta, 0, sizeof(*delta));
	free_exited(p);
	dir = opendir(p->root);
	if (!dir)
		return -errno;
	dfd = dirfd(dir);
	p->gen++;

	while ((de = readdir(dir))) {
		struct {
			int32_t pid;
			uint32_t pad;
			uint64_t start_ticks;
		} key = { 0 };
		struct stat_info si = { 0 };
		char rel[32];
		int32_t pid = parse_pid(de->d_name);

		if (pid < 0)
			continue;
		snprintf(rel, sizeof(rel), "%d/stat", pid);
		if (read_once(dfd, rel, statbuf, MISC_CAP) <= 0)
			continue; /* exited since readdir */
		if (parse_stat(statbuf, &si) < 0)
			continue;
		key.pid = pid;
		key.start_ticks = si.start_ticks;
		HASH_FIND(hh, p->table, &key, KEYLEN, r);
		if (r) {
			r->gen_ = p->gen;
			r->ppid = si.ppid;
			if (strncmp(r->comm, si.comm, sizeof(r->comm)) != 0)
				refresh(p, dfd, r, &si, &n_changed);
			continue;
		}
		if (reserve(&p->started, &p->cap_started, n_started + 1) < 0) {
			p->stats.alloc_failures++;
			continue;
		}
		r = load_proc(p, dfd, pid, &si);
		if (!r) {
			p->stats.alloc_failures++;
			continue;
		}
		r->gen_ = p->gen;
		if (!table_add(p, r)) {
			free(r);
			p->stats.alloc_failures++;
			continue;
		}
		p->started[n_started++] = r;
	}
	closedir(dir);

	/* exit pass: whatever this scan did not see is gone */
	HASH_ITER(hh, p->table, r, tmp) {
		if (r->gen_ != p->gen)
			n_gone++;
	}
	if (n_gone && reserve(&p->exited, &p->cap_exited, n_gone) < 0) {
		/* keep them in the table: the next scan reports them, with a
		 * later exit time */
		p->stats.alloc_failures++;
	} else {
		HASH_ITER(hh, p->table, r, tmp) {
			if (r->gen_ == p->gen)
				continue;
			HASH_DEL(p->table, r);
			r->exit_time_ns = now_wall_ns;
			p->exited[p->n_exited++] = r;
		}
	}

	p->stats.scans++;
	p->stats.started += n_started;
	p->stats.changed += n_changed;
	p->stats.exited += p->n_exited;
	delta->initial = p->stats.scans == 1;
	delta->started = p->started;
	delta->n_started = n_started;
	delta->changed = p->changed;
	delta->n_changed = n_changed;
	delta->exited = p->exited;
	delta->n_exited = p->n_exited;
	return 0;
}

static int cmp_pid(const void *a, const void *b)
{
	const struct agent_proc *x = *(const struct agent_proc *const *)a;
	const struct agent_proc *y = *(const struct agent_proc *const *)b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

int agent_procs_snapshot(struct agent_procs *p, const struct agent_proc *const **procs, size_t *n)
{
	size_t count = HASH_COUNT(p->table), i = 0;
	struct agent_proc *r, *tmp;

	if (reserve(&p->all, &p->cap_all, count ? count : 1) < 0)
		return -ENOMEM;
	HASH_ITER(hh, p->table, r, tmp) {
		p->all[i++] = r;
	}
	qsort(p->all, count, sizeof(*p->all), cmp_pid);
	*procs = p->all;
	*n = count;
	return 0;
}

size_t agent_procs_count(const struct agent_procs *p)
{
	return HASH_COUNT(p->table);
}

void agent_proc_to_process(const struct agent_proc *r, Spikehound__Process *out)
{
	spikehound__process__init(out);
	out->pid = r->pid;
	out->ppid = r->ppid;
	/* protobuf-c's string fields are char *; nothing writes through them */
	out->comm = (char *)r->comm;
	out->exe = (char *)r->exe;
	out->cmdline = (char *)r->cmdline;
	out->cgroup = (char *)r->cgroup;
	out->start_time_ns = r->start_time_ns;
	out->exit_time_ns = r->exit_time_ns;
	out->uid = r->uid;
}

/* agent_proc_cgroup returns pid's cgroup path for the v1 controller ctrl (the
 * v2 path when ctrl has no v1 hierarchy), malloc'd, or NULL. */
char *agent_proc_cgroup(uint32_t pid, const char *ctrl)
{
	char path[64], line[4096], *v2 = NULL, *found = NULL;
	size_t clen = strlen(ctrl);
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%u/cgroup", pid);
	f = fopen(path, "re");
	if (!f)
		return NULL;
	while (!found && fgets(line, sizeof(line), f)) {
		char *ctrls = strchr(line, ':'), *p;

		if (!ctrls || !(p = strchr(ctrls + 1, ':')))
			continue;
		*p++ = '\0';
		p[strcspn(p, "\n")] = '\0';
		ctrls++;
		if (ctrls[0] == '\0') {
			if (!v2)
				v2 = strdup(p);
			continue;
		}
		for (char *c = ctrls; c && *c; c = strchr(c, ',') ? strchr(c, ',') + 1 : NULL)
			if (strncmp(c, ctrl, clen) == 0 && (c[clen] == ',' || c[clen] == '\0')) {
				found = strdup(p);
				break;
			}
	}
	fclose(f);
	if (found) {
		free(v2);
		return found;
	}
	return v2;
}
