/* acct.c: per-process CPU accounting versus scheduler runtime (incident E):
 * parsers for /proc/PID/stat and schedstat, the per-process state and the
 * divergence rule. See acct.h for the rule. */
#include "acct.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uthash.h>

#define NS_PER_SEC 1000000000LL

enum dir { DIR_NONE = 0, DIR_BEHIND = -1, DIR_AHEAD = 1 };

struct proc_state {
	int32_t pid;
	uint64_t start_ticks;
	uint64_t seen; /* rank generation that last listed it */
	char comm[AGENT_ACCT_COMM_LEN];
	uint32_t threads;
	/* cheap counters at the last rank */
	bool rank_valid;
	int64_t rank_stat, rank_sched, rank_delta;
	/* full sample at the last check */
	bool have_prev;
	int64_t prev_ns, prev_stat, prev_sched, last_dsched;
	uint64_t prev_sig;
	/* the current streak of diverging checks */
	int dir;
	unsigned streak;
	bool frozen;	 /* stat did not move in any check of the streak */
	bool reported;	 /* the streak was flagged */
	bool jump_armed; /* a flagged "behind" streak is going on */
	int64_t streak_from, streak_stat, streak_sched;
	UT_hash_handle hh;
};

struct agent_acct {
	struct agent_acct_opts o;
	struct proc_state *procs;
	uint64_t gen;
	bool checked;
	int64_t last_check_ns;
};

int agent_acct_new(const struct agent_acct_opts *opts, struct agent_acct **out)
{
	struct agent_acct *a = calloc(1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	if (opts)
		a->o = *opts;
	if (a->o.interval_ns <= 0)
		a->o.interval_ns = 5 * NS_PER_SEC;
	if (!a->o.checks)
		a->o.checks = 3;
	if (a->o.min_ratio <= 0)
		a->o.min_ratio = 0.5;
	if (a->o.min_diff_ns <= 0)
		a->o.min_diff_ns = NS_PER_SEC / 2;
	if (!a->o.top_n)
		a->o.top_n = 50;
	*out = a;
	return 0;
}

void agent_acct_free(struct agent_acct *a)
{
	struct proc_state *p, *tmp;

	if (!a)
		return;
	HASH_ITER(hh, a->procs, p, tmp)
	{
		HASH_DEL(a->procs, p);
		free(p);
	}
	free(a);
}

size_t agent_acct_tracked(const struct agent_acct *a)
{
	return HASH_COUNT(a->procs);
}

bool agent_acct_due(const struct agent_acct *a, int64_t now_ns)
{
	/* a tick's jitter must not skip a whole interval */
	return !a->checked || now_ns - a->last_check_ns >= a->o.interval_ns - a->o.interval_ns / 10;
}

const char *agent_acct_pattern_name(enum agent_acct_pattern p)
{
	switch (p) {
	case AGENT_ACCT_FROZEN:
		return "stat_frozen";
	case AGENT_ACCT_BEHIND:
		return "stat_behind_sched";
	case AGENT_ACCT_AHEAD:
		return "stat_ahead_of_sched";
	case AGENT_ACCT_JUMP:
		return "stat_jump";
	}
	return "unknown";
}

static void reset_streak(struct proc_state *p)
{
	p->dir = DIR_NONE;
	p->streak = 0;
	p->frozen = false;
	p->reported = false;
	p->jump_armed = false;
	p->streak_stat = p->streak_sched = 0;
}

/* state_for finds pid's state, starting over when the pid was reused. */
static struct proc_state *state_for(struct agent_acct *a, const struct agent_acct_sample *s)
{
	struct proc_state *p;

	HASH_FIND_INT(a->procs, &s->pid, p);
	if (p && p->start_ticks != s->start_ticks) {
		HASH_DEL(a->procs, p);
		free(p);
		p = NULL;
	}
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p)
			return NULL;
		p->pid = s->pid;
		p->start_ticks = s->start_ticks;
		HASH_ADD_INT(a->procs, pid, p);
	}
	memcpy(p->comm, s->comm, sizeof(p->comm));
	p->comm[sizeof(p->comm) - 1] = '\0';
	p->threads = s->threads;
	return p;
}

static int by_rank_desc(const void *x, const void *y)
{
	const struct proc_state *a = *(struct proc_state *const *)x;
	const struct proc_state *b = *(struct proc_state *const *)y;

	if (a->rank_delta != b->rank_delta)
		return a->rank_delta < b->rank_delta ? 1 : -1;
	return a->pid < b->pid ? -1 : a->pid > b->pid;
}

static bool sticky(const struct agent_acct *a, const struct proc_state *p)
{
	return p->streak > 0 || p->jump_armed || p->last_dsched > a->o.min_diff_ns;
}

size_t agent_acct_rank(struct agent_acct *a, const struct agent_acct_sample *all, size_t n,
		       int32_t *pids, size_t max)
{
	struct proc_state *p, *tmp, **busy;
	size_t nbusy = 0, out = 0;
	int64_t floor_ns;

	a->gen++;
	for (size_t i = 0; i < n; i++) {
		int64_t ds, dr;

		p = state_for(a, &all[i]);
		if (!p)
			continue;
		p->seen = a->gen;
		ds = all[i].stat_ns - p->rank_stat;
		dr = all[i].sched_ns - p->rank_sched;
		p->rank_delta = p->rank_valid ? (ds > dr ? ds : dr) : 0;
		p->rank_stat = all[i].stat_ns;
		p->rank_sched = all[i].sched_ns;
		p->rank_valid = true;
	}
	HASH_ITER(hh, a->procs, p, tmp)
	{
		if (p->seen != a->gen) { /* exited */
			HASH_DEL(a->procs, p);
			free(p);
		}
	}
	busy = calloc(HASH_COUNT(a->procs) + 1, sizeof(*busy));
	if (!busy)
		return 0;
	/* "using CPU": 1% of the interval's worth of the smallest divergence
	 * that counts, at least */
	floor_ns = a->o.min_diff_ns / 10;
	HASH_ITER(hh, a->procs, p, tmp)
	{
		if (p->rank_delta >= floor_ns || sticky(a, p))
			busy[nbusy++] = p;
	}
	qsort(busy, nbusy, sizeof(*busy), by_rank_desc);
	/* the busiest first, then whoever is under suspicion */
	for (size_t i = 0; i < nbusy && out < max; i++) {
		if (i < a->o.top_n && busy[i]->rank_delta >= floor_ns) {
			pids[out++] = busy[i]->pid;
			busy[i] = NULL;
		}
	}
	for (size_t i = 0; i < nbusy && out < max; i++)
		if (busy[i] && sticky(a, busy[i]))
			pids[out++] = busy[i]->pid;
	free(busy);
	return out;
}

static void finding(const struct proc_state *p, enum agent_acct_pattern pat, int64_t from,
		    int64_t to, int64_t dstat, int64_t dsched, unsigned checks,
		    agent_acct_found_cb cb, void *arg)
{
	struct agent_acct_finding f;

	memset(&f, 0, sizeof(f));
	f.pid = p->pid;
	f.threads = p->threads;
	memcpy(f.comm, p->comm, sizeof(f.comm));
	f.pattern = pat;
	f.from_ns = from;
	f.to_ns = to;
	f.stat_ns = dstat;
	f.sched_ns = dsched;
	f.checks = checks;
	if (cb)
		cb(arg, &f);
}

/* judge applies one check's deltas to p's streak; returns findings made. */
static size_t judge(struct agent_acct *a, struct proc_state *p, int64_t now, int64_t dstat,
		    int64_t dsched, agent_acct_found_cb cb, void *arg)
{
	int64_t diff = dstat - dsched, adiff = diff < 0 ? -diff : diff;
	bool diverges = adiff > a->o.min_diff_ns && (double)adiff > a->o.min_ratio * (double)dsched;
	int dir = diff < 0 ? DIR_BEHIND : DIR_AHEAD;
	size_t found = 0;

	if (!diverges) {
		reset_streak(p);
		return 0;
	}
	if (dir == DIR_AHEAD && p->jump_armed) {
		/* the catch-up after a flagged freeze */
		finding(p, AGENT_ACCT_JUMP, p->prev_ns, now, dstat, dsched, 1, cb, arg);
		found++;
		reset_streak(p);
	}
	if (p->streak && p->dir == dir) {
		p->streak++;
		p->streak_stat += dstat;
		p->streak_sched += dsched;
		p->frozen &= dstat == 0;
	} else {
		reset_streak(p);
		p->dir = dir;
		p->streak = 1;
		p->streak_from = p->prev_ns;
		p->streak_stat = dstat;
		p->streak_sched = dsched;
		p->frozen = dstat == 0;
	}
	if (p->streak >= a->o.checks && !p->reported) {
		enum agent_acct_pattern pat = dir == DIR_AHEAD ? AGENT_ACCT_AHEAD
					      : p->frozen      ? AGENT_ACCT_FROZEN
							       : AGENT_ACCT_BEHIND;

		finding(p, pat, p->streak_from, now, p->streak_stat, p->streak_sched, p->streak, cb,
			arg);
		found++;
		p->reported = true;
		p->jump_armed = dir == DIR_BEHIND;
	}
	return found;
}

size_t agent_acct_check(struct agent_acct *a, int64_t now_ns, const struct agent_acct_sample *s,
			size_t n, agent_acct_found_cb cb, void *arg)
{
	size_t found = 0;

	a->checked = true;
	a->last_check_ns = now_ns;
	for (size_t i = 0; i < n; i++) {
		struct proc_state *p = state_for(a, &s[i]);
		int64_t dt, dstat, dsched;

		if (!p)
			continue;
		dt = now_ns - p->prev_ns;
		dstat = s[i].stat_ns - p->prev_stat;
		dsched = s[i].sched_ns - p->prev_sched;
		if (!p->have_prev || dt < a->o.interval_ns / 2 || dt > a->o.interval_ns * 5 / 2 ||
		    dstat < 0 || dsched < 0) {
			/* first look, a gap (not examined for a while) or nonsense:
			 * a new baseline */
			reset_streak(p);
			p->last_dsched = 0;
		} else if (s[i].threads_sig != p->prev_sig) {
			/* a thread came or went: its runtime is in one sum only */
			p->last_dsched = dsched;
		} else {
			p->last_dsched = dsched;
			found += judge(a, p, now_ns, dstat, dsched, cb, arg);
		}
		p->have_prev = true;
		p->prev_ns = now_ns;
		p->prev_stat = s[i].stat_ns;
		p->prev_sched = s[i].sched_ns;
		p->prev_sig = s[i].threads_sig;
	}
	return found;
}

/* ---- parsers and readers ---- */

int agent_acct_parse_stat(const char *text, long clk_tck, struct agent_acct_sample *s)
{
	const char *open = strchr(text, '('), *close = strrchr(text, ')'), *p;
	unsigned long long v[20];
	size_t clen;
	char *end;
	long pid;

	if (!open || !close || close < open || clk_tck <= 0)
		return -EINVAL;
	pid = strtol(text, &end, 10);
	if (end == text || pid <= 0 || pid > INT32_MAX)
		return -EINVAL;
	/* fields 3.. after the comm: state, then numbers; keep up to field 22 */
	p = close + 1;
	while (*p == ' ')
		p++;
	if (!*p)
		return -EINVAL;
	p++; /* state */
	for (int i = 0; i < 19; i++) {
		while (*p == ' ')
			p++;
		if (*p == '-') /* signed fields (priority, nice) */
			p++;
		v[i] = strtoull(p, &end, 10);
		if (end == p)
			return -EINVAL;
		p = end;
	}
	/* v[0] is field 4 (ppid): field k is v[k - 4] */
	memset(s, 0, sizeof(*s));
	s->pid = (int32_t)pid;
	clen = (size_t)(close - open - 1);
	if (clen >= sizeof(s->comm))
		clen = sizeof(s->comm) - 1;
	memcpy(s->comm, open + 1, clen);
	s->comm[clen] = '\0';
	s->stat_ns = (int64_t)((v[14 - 4] + v[15 - 4]) * (NS_PER_SEC / clk_tck));
	s->threads = (uint32_t)v[20 - 4];
	s->start_ticks = v[22 - 4];
	return 0;
}

int agent_acct_parse_schedstat(const char *text, int64_t *run_ns)
{
	char *end;
	unsigned long long v = strtoull(text, &end, 10);

	if (end == text || (*end != ' ' && *end != '\n' && *end != '\0'))
		return -EINVAL;
	*run_ns = (int64_t)v;
	return 0;
}

/* read_text reads a small file into buf (NUL-terminated). */
static int read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return errno == ESRCH ? -ENOENT : -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return errno == ESRCH ? -ENOENT : -errno;
	buf[n] = '\0';
	return 0;
}

int agent_acct_read_cheap(const char *proc_root, int32_t pid, long clk_tck,
			  struct agent_acct_sample *s)
{
	char path[4096 + 64], buf[1024];
	int rv;

	snprintf(path, sizeof(path), "%s/%d/stat", proc_root, (int)pid);
	if ((rv = read_text(path, buf, sizeof(buf))) != 0)
		return rv;
	if ((rv = agent_acct_parse_stat(buf, clk_tck, s)) != 0)
		return rv;
	snprintf(path, sizeof(path), "%s/%d/schedstat", proc_root, (int)pid);
	if ((rv = read_text(path, buf, sizeof(buf))) != 0)
		return rv;
	return agent_acct_parse_schedstat(buf, &s->sched_ns);
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* mix spreads a tid over 64 bits so the sum of a set identifies the set. */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

int agent_acct_read_full(const char *proc_root, int32_t pid, long clk_tck,
			 struct agent_acct_sample *s)
{
	char path[4096 + 64], buf[256], sbuf[1024];
	struct dirent *de;
	int64_t sum = 0;
	uint64_t sig = 0, count = 0;
	DIR *dir;
	int rv;

	snprintf(path, sizeof(path), "%s/%d/stat", proc_root, (int)pid);
	if ((rv = read_text(path, sbuf, sizeof(sbuf))) != 0)
		return rv;
	if ((rv = agent_acct_parse_stat(sbuf, clk_tck, s)) != 0)
		return rv;
	snprintf(path, sizeof(path), "%s/%d/task", proc_root, (int)pid);
	dir = opendir(path);
	if (!dir)
		return errno == ENOENT || errno == ESRCH ? -ENOENT : -errno;
	while ((de = readdir(dir)) != NULL) {
		int64_t run;

		if (!all_digits(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%d/task/%s/schedstat", proc_root, (int)pid,
			 de->d_name);
		if (read_text(path, buf, sizeof(buf)) != 0 ||
		    agent_acct_parse_schedstat(buf, &run) != 0)
			continue; /* the thread exited meanwhile */
		sum += run;
		sig += mix(strtoull(de->d_name, NULL, 10));
		count++;
	}
	closedir(dir);
	if (!count)
		return -ENOENT;
	s->sched_ns = sum;
	s->threads_sig = sig ^ (count << 56);
	return 0;
}

int agent_acct_scan(const char *proc_root, long clk_tck, struct agent_acct_sample **out,
		    size_t *n)
{
	struct agent_acct_sample *v = NULL;
	size_t len = 0, cap = 0;
	struct dirent *de;
	DIR *dir = opendir(proc_root);

	if (!dir)
		return -errno;
	while ((de = readdir(dir)) != NULL) {
		struct agent_acct_sample s;
		long pid;

		if (!all_digits(de->d_name))
			continue;
		pid = strtol(de->d_name, NULL, 10);
		if (pid <= 0 || pid > INT32_MAX)
			continue;
		if (agent_acct_read_cheap(proc_root, (int32_t)pid, clk_tck, &s) != 0)
			continue;
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			struct agent_acct_sample *nv = realloc(v, ncap * sizeof(*nv));

			if (!nv) {
				free(v);
				closedir(dir);
				return -ENOMEM;
			}
			v = nv;
			cap = ncap;
		}
		v[len++] = s;
	}
	closedir(dir);
	*out = v;
	*n = len;
	return 0;
}
