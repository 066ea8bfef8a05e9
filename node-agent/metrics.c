/* metrics.c: samples per-second host metrics from /proc into a
 * MetricSecond. Runs every second for the life of the agent, so it reuses
 * one read buffer, parses in place, and never allocates once warmed up. */
#include "metrics.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"

#define BUF_INIT (64 * 1024)
#define BUF_MAX (16 * 1024 * 1024)

enum { PSI_CPU, PSI_MEM, PSI_IO };

int agent_metrics_init(struct agent_metrics *m, const char *proc_root)
{
	memset(m, 0, sizeof(*m));
	m->root = strdup(proc_root);
	m->buf = malloc(BUF_INIT);
	m->path = malloc(PATH_MAX);
	if (!m->root || !m->buf || !m->path) {
		agent_metrics_fini(m);
		return -ENOMEM;
	}
	m->cap = BUF_INIT;
	return 0;
}

void agent_metrics_fini(struct agent_metrics *m)
{
	free(m->root);
	free(m->buf);
	free(m->path);
	memset(m, 0, sizeof(*m));
}

/* Reads m->root/rel into m->buf, growing the buffer (rarely: a file that
 * outgrew it) so the whole file fits, up to BUF_MAX. Returns the length or
 * a negative errno. */
static ssize_t slurp(struct agent_metrics *m, const char *rel)
{
	ssize_t n;

	if (snprintf(m->path, PATH_MAX, "%s/%s", m->root, rel) >= PATH_MAX)
		return -ENAMETOOLONG;
	for (;;) {
		char *nb;

		n = sh_read_file(m->path, m->buf, m->cap);
		if (n < 0 || (size_t)n < m->cap - 1 || m->cap >= BUF_MAX)
			return n;
		nb = realloc(m->buf, m->cap * 2);
		if (!nb)
			return n; /* parse what fits */
		m->buf = nb;
		m->cap *= 2;
	}
}

/* Cuts the next line out of *cur (NUL-terminating it in place); NULL at
 * the end of the buffer. */
static char *next_line(char **cur)
{
	char *line = *cur, *nl;

	if (!line || !*line)
		return NULL;
	nl = strchr(line, '\n');
	if (nl) {
		*nl = '\0';
		*cur = nl + 1;
	} else {
		*cur = NULL;
	}
	return line;
}

/* Parses an unsigned decimal after optional blanks; advances *p. Returns
 * 0 or -EINVAL (no digits, or overflow). */
static int parse_u64(const char **p, uint64_t *v)
{
	const char *s = *p;
	uint64_t x = 0;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (x > (UINT64_MAX - d) / 10)
			return -EINVAL;
		x = x * 10 + d;
	}
	*v = x;
	*p = s;
	return 0;
}

/* Parses a non-negative decimal with an optional fraction ("12.34"),
 * locale-free; advances *p. Returns 0 or -EINVAL. */
static int parse_fixed(const char **p, double *v)
{
	const char *s;
	uint64_t ip, fp = 0;
	double scale = 1;

	if (parse_u64(p, &ip) < 0)
		return -EINVAL;
	s = *p;
	if (*s == '.') {
		s++;
		for (; *s >= '0' && *s <= '9'; s++) {
			if (scale < 1e15) {
				fp = fp * 10 + (uint64_t)(*s - '0');
				scale *= 10;
			}
		}
	}
	*v = (double)ip + (double)fp / scale;
	*p = s;
	return 0;
}

/* "name value" with name exactly key: parse value. */
static int key_u64(const char *line, const char *key, uint64_t *v)
{
	size_t k = strlen(key);
	const char *p = line + k;

	if (strncmp(line, key, k) != 0 || (*p != ' ' && *p != '\t'))
		return -ENOENT;
	return parse_u64(&p, v);
}

static uint64_t delta(uint64_t cur, uint64_t prev)
{
	return cur >= prev ? cur - prev : 0;
}

struct stat_gauges {
	uint32_t running, blocked;
};

static int read_stat(struct agent_metrics *m, struct agent_metrics_counters *c,
		     struct stat_gauges *g)
{
	bool have_cpu = false, have_ctxt = false, have_forks = false, have_intr = false;
	char *cur, *line;
	uint64_t v;
	ssize_t n;

	n = slurp(m, "stat");
	if (n < 0)
		return (int)n;
	cur = m->buf;
	while ((line = next_line(&cur))) {
		if (strncmp(line, "cpu ", 4) == 0) {
			uint64_t f[8] = { 0 };
			const char *p = line + 4;
			int i;

			for (i = 0; i < 8; i++)
				if (parse_u64(&p, &f[i]) < 0)
					break;
			if (i < 4) /* user nice system idle: every kernel has these */
				return -EINVAL;
			c->cpu = (struct agent_metrics_cpu){ f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7] };
			have_cpu = true;
		} else if (key_u64(line, "ctxt", &c->ctxt) == 0) {
			have_ctxt = true;
		} else if (key_u64(line, "processes", &c->forks) == 0) {
			have_forks = true;
		} else if (key_u64(line, "intr", &c->intr) == 0) {
			have_intr = true;
		} else if (key_u64(line, "procs_running", &v) == 0) {
			g->running = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
		} else if (key_u64(line, "procs_blocked", &v) == 0) {
			g->blocked = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
		}
	}
	if (!have_cpu || !have_ctxt || !have_forks || !have_intr)
		return -EINVAL;
	c->stat_ok = true;
	return 0;
}

static int read_loadavg(struct agent_metrics *m, float *load1)
{
	const char *p;
	double v;
	ssize_t n;

	n = slurp(m, "loadavg");
	if (n < 0)
		return (int)n;
	p = m->buf;
	if (parse_fixed(&p, &v) < 0)
		return -EINVAL;
	*load1 = (float)v;
	return 0;
}

/* One /proc/pressure file: "some avg10=.. avg60=.. avg300=.. total=..",
 * then (except cpu on older kernels) the same for "full". */
static int read_psi(struct agent_metrics *m, const char *rel, float *some10, float *full10,
		    uint64_t *some_total)
{
	bool have_some = false;
	char *cur, *line;
	ssize_t n;

	*some10 = -1;
	if (full10)
		*full10 = -1;
	n = slurp(m, rel);
	if (n < 0)
		return (int)n;
	cur = m->buf;
	while ((line = next_line(&cur))) {
		bool some = strncmp(line, "some ", 5) == 0;
		const char *a, *t;
		double avg;
		uint64_t total;

		if (!some && strncmp(line, "full ", 5) != 0)
			continue;
		a = strstr(line, "avg10=");
		t = strstr(line, "total=");
		if (!a || !t)
			return -EINVAL;
		a += 6;
		t += 6;
		if (parse_fixed(&a, &avg) < 0 || parse_u64(&t, &total) < 0)
			return -EINVAL;
		if (some) {
			*some10 = (float)avg;
			*some_total = total;
			have_some = true;
		} else if (full10) {
			*full10 = (float)avg;
		}
	}
	if (!have_some) {
		*some10 = -1;
		if (full10)
			*full10 = -1;
		return -EINVAL;
	}
	return 0;
}

static int read_meminfo(struct agent_metrics *m, Spikehound__MetricSecond *out)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
		{ "MemTotal:", offsetof(Spikehound__MetricSecond, mem_total_kb) },
		{ "MemFree:", offsetof(Spikehound__MetricSecond, mem_free_kb) },
		{ "MemAvailable:", offsetof(Spikehound__MetricSecond, mem_available_kb) },
		{ "Cached:", offsetof(Spikehound__MetricSecond, mem_cached_kb) },
		{ "SReclaimable:", offsetof(Spikehound__MetricSecond, slab_reclaimable_kb) },
		{ "SUnreclaim:", offsetof(Spikehound__MetricSecond, slab_unreclaimable_kb) },
	};
	const size_t nkeys = sizeof(keys) / sizeof(keys[0]);
	size_t found = 0;
	char *cur, *line;
	ssize_t n;

	n = slurp(m, "meminfo");
	if (n < 0)
		return (int)n;
	cur = m->buf;
	while (found < nkeys && (line = next_line(&cur))) {
		for (size_t i = 0; i < nkeys; i++) {
			size_t k = strlen(keys[i].key);
			const char *p = line + k;
			uint64_t v;

			if (strncmp(line, keys[i].key, k) != 0)
				continue;
			if (parse_u64(&p, &v) < 0)
				return -EINVAL;
			memcpy((char *)out + keys[i].off, &v, sizeof(v));
			found++;
			break;
		}
	}
	return found ? 0 : -EINVAL;
}

/* True when name (len bytes) is base, or base plus a zone suffix: kernels
 * before 4.8 counted reclaim per zone (pgscan_direct_normal, ...) and
 * allocstall is per zone since 4.x (allocstall_normal, ...). */
static bool name_is(const char *name, size_t len, const char *base)
{
	static const char *const zones[] = { "_dma", "_dma32", "_normal", "_movable",
					     "_high", "_device" };
	size_t b = strlen(base);

	if (len < b || memcmp(name, base, b) != 0)
		return false;
	if (len == b)
		return true;
	for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
		if (len - b == strlen(zones[i]) && memcmp(name + b, zones[i], len - b) == 0)
			return true;
	return false;
}

static int read_vmstat(struct agent_metrics *m, struct agent_metrics_counters *c)
{
	struct {
		const char *base;
		uint64_t *dst;
	} keys[] = {
		{ "pgscan_direct", &c->pgscan_direct },	  { "pgscan_kswapd", &c->pgscan_kswapd },
		{ "pgsteal_direct", &c->pgsteal_direct }, { "pgsteal_kswapd", &c->pgsteal_kswapd },
		{ "allocstall", &c->allocstall },	  { "compact_stall", &c->compact_stall },
	};
	char *cur, *line;
	bool any = false;
	ssize_t n;

	n = slurp(m, "vmstat");
	if (n < 0)
		return (int)n;
	cur = m->buf;
	while ((line = next_line(&cur))) {
		const char *sp = strchr(line, ' ');
		size_t len;

		/* cheap reject: all wanted names start with 'p', 'a' or 'c' */
		if (!sp || (line[0] != 'p' && line[0] != 'a' && line[0] != 'c'))
			continue;
		len = (size_t)(sp - line);
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			uint64_t v;

			if (!name_is(line, len, keys[i].base))
				continue;
			if (parse_u64(&sp, &v) < 0)
				return -EINVAL;
			*keys[i].dst += v;
			any = true;
			break;
		}
	}
	if (!any)
		return -EINVAL;
	c->vmstat_ok = true;
	return 0;
}

static int read_dentry(struct agent_metrics *m, Spikehound__MetricSecond *out)
{
	uint64_t f[5] = { 0 };
	const char *p;
	ssize_t n;
	int i;

	n = slurp(m, "sys/fs/dentry-state");
	if (n < 0)
		return (int)n;
	p = m->buf;
	for (i = 0; i < 5; i++)
		if (parse_u64(&p, &f[i]) < 0)
			break;
	if (i < 2)
		return -EINVAL;
	out->dentry_nr = f[0];
	out->dentry_unused = f[1];
	out->dentry_negative = f[4]; /* 0 on kernels before 5.x, which had a dummy here */
	return 0;
}

static int read_softirqs(struct agent_metrics *m, struct agent_metrics_counters *c)
{
	char *cur, *line;
	ssize_t n;

	n = slurp(m, "softirqs");
	if (n < 0)
		return (int)n;
	cur = m->buf;
	while ((line = next_line(&cur))) {
		const char *p = line;
		uint64_t sum = 0, v;

		while (*p == ' ')
			p++;
		if (strncmp(p, "NET_RX:", 7) != 0)
			continue;
		p += 7;
		while (parse_u64(&p, &v) == 0)
			sum += v;
		c->net_rx = sum;
		c->softirq_ok = true;
		return 0;
	}
	return -EINVAL;
}

static float pct(uint64_t part, uint64_t total)
{
	return total ? (float)(100.0 * (double)part / (double)total) : 0.0f;
}

int agent_metrics_sample(struct agent_metrics *m, int64_t wall_ns, Spikehound__MetricSecond *out)
{
	static const char *const psi_files[3] = { "pressure/cpu", "pressure/memory", "pressure/io" };
	struct agent_metrics_counters cur = { 0 };
	const struct agent_metrics_counters *prev = &m->prev;
	struct stat_gauges g = { 0 };
	float some10[3], full10[3];
	int err, serr;

	spikehound__metric_second__init(out);
	out->time_ns = wall_ns;

	serr = read_stat(m, &cur, &g);
	if (serr < 0) {
		cur.stat_ok = false;
		m->read_errors++;
	}
	if (read_loadavg(m, &out->load1) < 0)
		m->read_errors++;
	for (int i = 0; i < 3; i++) {
		/* absent (old kernel, CONFIG_PSI=n) or refused (psi=0 on the
		 * kernel command line) is not an error */
		err = read_psi(m, psi_files[i], &some10[i], i == PSI_CPU ? NULL : &full10[i],
			       &cur.psi_some_us[i]);
		cur.psi_ok[i] = err == 0;
		if (err < 0)
			some10[i] = full10[i] = -1;
		if (err < 0 && err != -ENOENT && err != -EOPNOTSUPP)
			m->read_errors++;
	}
	if (read_meminfo(m, out) < 0)
		m->read_errors++;
	if (read_vmstat(m, &cur) < 0) {
		cur.vmstat_ok = false;
		m->read_errors++;
	}
	if (read_dentry(m, out) < 0)
		m->read_errors++;
	if (read_softirqs(m, &cur) < 0) {
		cur.softirq_ok = false;
		m->read_errors++;
	}

	out->procs_running = g.running;
	out->procs_blocked = g.blocked;
	out->psi_cpu_some_avg10 = some10[PSI_CPU];
	out->psi_mem_some_avg10 = some10[PSI_MEM];
	out->psi_mem_full_avg10 = full10[PSI_MEM];
	out->psi_io_some_avg10 = some10[PSI_IO];
	out->psi_io_full_avg10 = full10[PSI_IO];

	if (cur.stat_ok && prev->stat_ok) {
		const struct agent_metrics_cpu *a = &prev->cpu, *b = &cur.cpu;
		uint64_t user = delta(b->user, a->user) + delta(b->nice, a->nice);
		uint64_t sys = delta(b->system, a->system), idle = delta(b->idle, a->idle);
		uint64_t iowait = delta(b->iowait, a->iowait), irq = delta(b->irq, a->irq);
		uint64_t softirq = delta(b->softirq, a->softirq), steal = delta(b->steal, a->steal);
		uint64_t total = user + sys + idle + iowait + irq + softirq + steal;

		out->cpu_user_pct = pct(user, total);
		out->cpu_sys_pct = pct(sys, total);
		out->cpu_irq_pct = pct(irq, total);
		out->cpu_softirq_pct = pct(softirq, total);
		out->cpu_iowait_pct = pct(iowait, total);
		out->cpu_steal_pct = pct(steal, total);
		out->cpu_idle_pct = pct(idle, total);
		out->ctxt = delta(cur.ctxt, prev->ctxt);
		out->forks = delta(cur.forks, prev->forks);
		out->intr = delta(cur.intr, prev->intr);
	}
	if (cur.psi_ok[PSI_CPU] && prev->psi_ok[PSI_CPU])
		out->psi_cpu_some_us = delta(cur.psi_some_us[PSI_CPU], prev->psi_some_us[PSI_CPU]);
	if (cur.psi_ok[PSI_MEM] && prev->psi_ok[PSI_MEM])
		out->psi_mem_some_us = delta(cur.psi_some_us[PSI_MEM], prev->psi_some_us[PSI_MEM]);
	if (cur.psi_ok[PSI_IO] && prev->psi_ok[PSI_IO])
		out->psi_io_some_us = delta(cur.psi_some_us[PSI_IO], prev->psi_some_us[PSI_IO]);
	if (cur.vmstat_ok && prev->vmstat_ok) {
		out->pgscan_direct = delta(cur.pgscan_direct, prev->pgscan_direct);
		out->pgscan_kswapd = delta(cur.pgscan_kswapd, prev->pgscan_kswapd);
		out->pgsteal_direct = delta(cur.pgsteal_direct, prev->pgsteal_direct);
		out->pgsteal_kswapd = delta(cur.pgsteal_kswapd, prev->pgsteal_kswapd);
		out->allocstall = delta(cur.allocstall, prev->allocstall);
		out->compact_stall = delta(cur.compact_stall, prev->compact_stall);
	}
	if (cur.softirq_ok && prev->softirq_ok)
		out->softirq_net_rx = delta(cur.net_rx, prev->net_rx);

	m->prev = cur;
	return serr;
}
