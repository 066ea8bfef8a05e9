/* fleet.c: builds the simulated fleet. Everything about a host is drawn
 * from its own random stream (seeded from the run seed and its index), and
 * which hosts a cause picks from the cause's own stream, so the same seed
 * gives the same fleet whatever else changes. */
#include "fleet.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "timeutil.h"

#define NS_H (3600 * SH_NS_PER_SEC)
#define NS_D (86400 * SH_NS_PER_SEC)
#define PID_MAX 4194304
#define STREAM_CAUSE 0x100000000ULL /* cause streams: above any host index */
#define STREAM_BURST 0x200000000ULL

#define PD(comm, exe, cmd, cg, uid, thr)                                                           \
	{                                                                                          \
		comm, exe, cmd, cg, uid, thr                                                       \
	}

/* On every host. The first two are pid 1 and the kthreadd parent. */
static const struct fsim_pdef base_defs[] = {
	PD("systemd", "/usr/lib/systemd/systemd", "/sbin/init", "/init.scope", 0, 1),
	PD("kthreadd", "", "", "/", 0, 1),
	PD("ksoftirqd/0", "", "", "/", 0, 1),
	PD("kswapd0", "", "", "/", 0, 1),
	PD("kcompactd0", "", "", "/", 0, 1),
	PD("systemd-journal", "/usr/lib/systemd/systemd-journald", "/lib/systemd/systemd-journald",
	   "/system.slice/systemd-journald.service", 0, 1),
	PD("systemd-udevd", "/usr/lib/systemd/systemd-udevd", "/lib/systemd/systemd-udevd",
	   "/system.slice/systemd-udevd.service", 0, 1),
	PD("systemd-logind", "/usr/lib/systemd/systemd-logind", "/lib/systemd/systemd-logind",
	   "/system.slice/systemd-logind.service", 0, 1),
	PD("dbus-daemon", "/usr/bin/dbus-daemon",
	   "/usr/bin/dbus-daemon --system --address=systemd: --nofork --nopidfile "
	   "--systemd-activation --syslog-only",
	   "/system.slice/dbus.service", 101, 1),
	PD("rsyslogd", "/usr/sbin/rsyslogd", "/usr/sbin/rsyslogd -n -iNONE",
	   "/system.slice/rsyslog.service", 0, 4),
	PD("cron", "/usr/sbin/cron", "/usr/sbin/cron -f", "/system.slice/cron.service", 0, 1),
	PD("sshd", "/usr/sbin/sshd", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",
	   "/system.slice/ssh.service", 0, 1),
	PD("chronyd", "/usr/sbin/chronyd", "/usr/sbin/chronyd -F 1", "/system.slice/chrony.service",
	   104, 1),
	PD("node_exporter", "/usr/local/bin/node_exporter",
	   "/usr/local/bin/node_exporter --collector.systemd --web.listen-address=:9100",
	   "/system.slice/node_exporter.service", 65534, 12),
	PD("agetty", "/usr/sbin/agetty", "/sbin/agetty -o -p -- \\u --noclear - linux",
	   "/system.slice/system-getty.slice/getty@tty1.service", 0, 1),
	PD("spikehound-agen", "/usr/bin/spikehound-agent",
	   "/usr/bin/spikehound-agent run --config /etc/spikehound/agent.conf",
	   "/system.slice/spikehound-agent.service", 0, 6),
};
#define N_BASE (sizeof(base_defs) / sizeof(base_defs[0]))
#define N_KTHREADS 4 /* base_defs[1..4] are kernel threads */

/* A role's processes: the first is the main one (the usual victim). */
struct role_set {
	const char *role;
	struct fsim_pdef defs[6];
	uint32_t copies[6]; /* how many of each (workers) */
};

static const struct role_set role_sets[] = {
	{"web",
	 {PD("nginx", "/usr/sbin/nginx", "nginx: worker process", "/system.slice/nginx.service", 33,
	     1),
	  PD("nginx", "/usr/sbin/nginx",
	     "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;",
	     "/system.slice/nginx.service", 0, 1),
	  PD("php-fpm8.2", "/usr/sbin/php-fpm8.2",
	     "php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)",
	     "/system.slice/php8.2-fpm.service", 0, 1),
	  PD("php-fpm8.2", "/usr/sbin/php-fpm8.2", "php-fpm: pool www",
	     "/system.slice/php8.2-fpm.service", 33, 1)},
	 {4, 1, 1, 6}},
	{"db",
	 {PD("postgres", "/usr/lib/postgresql/15/bin/postgres",
	     "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main -c "
	     "config_file=/etc/postgresql/15/main/postgresql.conf",
	     "/system.slice/system-postgresql.slice/postgresql@15-main.service", 111, 1),
	  PD("postgres", "/usr/lib/postgresql/15/bin/postgres", "postgres: 15/main: checkpointer ",
	     "/system.slice/system-postgresql.slice/postgresql@15-main.service", 111, 1),
	  PD("postgres", "/usr/lib/postgresql/15/bin/postgres", "postgres: 15/main: walwriter ",
	     "/system.slice/system-postgresql.slice/postgresql@15-main.service", 111, 1),
	  PD("postgres", "/usr/lib/postgresql/15/bin/postgres",
	     "postgres: 15/main: autovacuum launcher ",
	     "/system.slice/system-postgresql.slice/postgresql@15-main.service", 111, 1),
	  PD("postgres", "/usr/lib/postgresql/15/bin/postgres",
	     "postgres: 15/main: app appdb 10.1.4.23(51234) idle",
	     "/system.slice/system-postgresql.slice/postgresql@15-main.service", 111, 1),
	  PD("pgbouncer", "/usr/sbin/pgbouncer", "/usr/sbin/pgbouncer /etc/pgbouncer/pgbouncer.ini",
	     "/system.slice/pgbouncer.service", 111, 1)},
	 {1, 1, 1, 1, 12, 1}},
	{"cache",
	 {PD("redis-server", "/usr/bin/redis-server", "/usr/bin/redis-server 127.0.0.1:6379",
	     "/system.slice/redis-server.service", 112, 5),
	  PD("memcached", "/usr/bin/memcached",
	     "/usr/bin/memcached -m 4096 -p 11211 -u memcache -l 127.0.0.1",
	     "/system.slice/memcached.service", 113, 10)},
	 {1, 1}},
	{"batch",
	 {PD("java", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
	     "/usr/lib/jvm/java-17-openjdk-amd64/bin/java -Xms16g -Xmx16g -XX:+UseG1GC -jar "
	     "/opt/batch/worker.jar --queue jobs",
	     "/system.slice/batch-worker.service", 1001, 180),
	  PD("python3", "/usr/bin/python3.11", "/usr/bin/python3 /opt/batch/scheduler.py --loop",
	     "/system.slice/batch-scheduler.service", 1001, 3)},
	 {1, 1}},
};
#define N_ROLE_SETS (sizeof(role_sets) / sizeof(role_sets[0]))

/* Rare processes: each on this share of hosts. */
static const struct {
	struct fsim_pdef def;
	double share;
} rare_defs[] = {
	{PD("tcpdump", "/usr/bin/tcpdump", "tcpdump -i any -w /var/tmp/capture.pcap port 443",
	    "/user.slice/user-1000.slice/session-4.scope", 0, 1),
	 0.01},
	{PD("strace", "/usr/bin/strace", "strace -f -p 4242 -o /tmp/trace.out",
	    "/user.slice/user-1000.slice/session-7.scope", 0, 1),
	 0.005},
	{PD("rsync", "/usr/bin/rsync", "rsync -a --delete /var/backups/ backup01:/srv/backups/",
	    "/system.slice/backup.service", 0, 1),
	 0.02},
	{PD("stress-ng", "/usr/bin/stress-ng", "stress-ng --cpu 2 --timeout 3600s",
	    "/user.slice/user-1000.slice/session-2.scope", 1000, 3),
	 0.005},
	{PD("perf", "/usr/bin/perf", "perf record -F 99 -a -g -o /var/tmp/perf.data",
	    "/user.slice/user-1000.slice/session-3.scope", 0, 1),
	 0.005},
	{PD("tmux: server", "/usr/bin/tmux", "tmux new -s debug",
	    "/user.slice/user-1000.slice/session-5.scope", 1000, 1),
	 0.03},
};
#define N_RARE (sizeof(rare_defs) / sizeof(rare_defs[0]))

/* Background cron jobs (never causes): share of hosts, period, offset of
 * the period grid on the host clock (-1: random phase), lifetime. */
static const struct {
	struct fsim_pdef def;
	double share;
	int64_t period_s, grid_offset_s, lifetime_ms, jitter_ms;
} cron_defs[] = {
	{PD("run-parts", "/usr/bin/run-parts", "run-parts --report /etc/cron.hourly",
	    "/system.slice/cron.service", 0, 1),
	 1.0, 3600, 17 * 60, 2000, 900},
	{PD("debian-sa1", "/usr/bin/dash", "/bin/sh /usr/lib/sysstat/debian-sa1 1 1",
	    "/system.slice/cron.service", 0, 1),
	 0.4, 600, 5 * 60, 1500, 900},
	{PD("python3", "/usr/bin/python3.11", "/usr/bin/python3 /opt/inventory/collect.py --quiet",
	    "/system.slice/inventory.service", 0, 1),
	 0.1, 900, -1, 4000, 2000},
	{PD("logrotate", "/usr/sbin/logrotate", "/usr/sbin/logrotate /etc/logrotate.conf",
	    "/system.slice/logrotate.service", 0, 1),
	 1.0, 86400, 0, 3000, 60000},
};
#define N_CRON (sizeof(cron_defs) / sizeof(cron_defs[0]))

static const struct {
	uint32_t cpus;
	double weight;
} cpu_mix[] = {{4, 10}, {8, 25}, {16, 30}, {32, 20}, {64, 10}, {96, 5}};

static const char *const cpu_models[] = {
	"Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
	"AMD EPYC 7763 64-Core Processor",
	"Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
};

static int64_t mod_pos(int64_t a, int64_t m)
{
	int64_t r = a % m;

	return r < 0 ? r + m : r;
}

const char *fsim_proc_cmdline(const struct fsim_proc *p)
{
	return p->cmdline ? p->cmdline : p->def->cmdline;
}

struct fsim_proc *fsim_host_proc(struct fsim_host *h, int32_t pid)
{
	for (size_t i = 0; i < h->n_procs; i++)
		if (h->procs[i].pid == pid)
			return &h->procs[i];
	return NULL;
}

struct fsim_proc *fsim_host_find_comm(struct fsim_host *h, const char *comm)
{
	for (size_t i = 0; i < h->n_procs; i++)
		if (!h->procs[i].exit_ns && strcmp(h->procs[i].def->comm, comm) == 0)
			return &h->procs[i];
	return NULL;
}

static int32_t new_pid(struct fsim_host *h)
{
	int32_t pid;

	do {
		pid = h->next_pid++;
		if (h->next_pid >= PID_MAX)
			h->next_pid = 300;
	} while (fsim_host_proc(h, pid));
	return pid;
}

/* expand writes def's cmdline with strftime conversions done for host
 * clock time t_ns; NULL when there is nothing to expand (or ENOMEM). */
static char *expand(const char *tmpl, int64_t t_ns)
{
	char buf[4200];
	time_t secs = (time_t)(t_ns / SH_NS_PER_SEC);
	struct tm tm;

	if (!strchr(tmpl, '%'))
		return NULL;
	gmtime_r(&secs, &tm);
	if (strftime(buf, sizeof(buf), tmpl, &tm) == 0)
		return NULL;
	return strdup(buf);
}

struct fsim_proc *fsim_host_add_proc(struct fsim_host *h, const struct fsim_pdef *def, int32_t ppid,
				     int64_t t_ns)
{
	struct fsim_proc *p;

	if (h->n_procs == h->cap_procs) {
		size_t cap = h->cap_procs ? 2 * h->cap_procs : 32;
		struct fsim_proc *v = realloc(h->procs, cap * sizeof(*v));

		if (!v)
			return NULL;
		h->procs = v;
		h->cap_procs = cap;
	}
	p = &h->procs[h->n_procs];
	memset(p, 0, sizeof(*p));
	p->def = def;
	p->pid = new_pid(h);
	p->ppid = ppid;
	p->start_ns = t_ns + h->skew_ns;
	p->cmdline = expand(def->cmdline, p->start_ns);
	h->n_procs++;
	return p;
}

void fsim_host_remove_proc(struct fsim_host *h, int32_t pid)
{
	for (size_t i = 0; i < h->n_procs; i++) {
		if (h->procs[i].pid != pid)
			continue;
		free(h->procs[i].cmdline);
		h->procs[i] = h->procs[h->n_procs - 1];
		h->n_procs--;
		return;
	}
}

int fsim_host_push(struct fsim_host *h, uint8_t *buf, size_t len, uint64_t seq, int64_t release_ns,
		   enum fsim_out_kind kind)
{
	struct fsim_out *o;

	if (h->out_head + h->out_n == h->out_cap) {
		if (h->out_head > 0) {
			memmove(h->out, h->out + h->out_head, h->out_n * sizeof(*h->out));
			h->out_head = 0;
		}
		if (h->out_n == h->out_cap) {
			size_t cap = h->out_cap ? 2 * h->out_cap : 16;
			struct fsim_out *v = realloc(h->out, cap * sizeof(*v));

			if (!v) {
				free(buf);
				return -ENOMEM;
			}
			h->out = v;
			h->out_cap = cap;
		}
	}
	o = &h->out[h->out_head + h->out_n++];
	o->buf = buf;
	o->len = len;
	o->seq = seq;
	o->release_ns = release_ns;
	o->kind = kind;
	return 0;
}

size_t fsim_host_first_unreleased(const struct fsim_host *h, int64_t now_ns)
{
	size_t i = h->busy ? h->inflight : 0; /* those in flight were due */

	for (; i < h->out_n; i++)
		if (h->out[h->out_head + i].release_ns > now_ns)
			break;
	return i;
}

/* reseq repacks the AgentMessage of o with sequence number seq into a new
 * buffer; returns it, or NULL (ENOMEM or undecodable). */
static uint8_t *reseq(const struct fsim_out *o, uint64_t seq, size_t *len)
{
	Spikehound__AgentMessage *m = spikehound__agent_message__unpack(NULL, o->len, o->buf);
	uint8_t *buf = NULL;

	if (!m)
		return NULL;
	m->seq = seq;
	*len = spikehound__agent_message__get_packed_size(m);
	if ((buf = malloc(*len ? *len : 1)) != NULL)
		spikehound__agent_message__pack(m, buf);
	spikehound__agent_message__free_unpacked(m, NULL);
	return buf;
}

int fsim_host_insert(struct fsim_host *h, size_t pos, struct fsim_out *items, size_t n)
{
	size_t later = h->out_n - pos;
	uint8_t **bufs = NULL;
	size_t *lens = NULL;
	int err = -ENOMEM;

	if (pos > h->out_n)
		return -EINVAL;
	if (n == 0)
		return 0;
	/* room first, so that nothing below can fail after a change */
	if (h->out_head + h->out_n + n > h->out_cap) {
		if (h->out_head > 0) {
			memmove(h->out, h->out + h->out_head, h->out_n * sizeof(*h->out));
			h->out_head = 0;
		}
		if (h->out_n + n > h->out_cap) {
			size_t cap = h->out_cap ? h->out_cap : 16;
			struct fsim_out *v;

			while (cap < h->out_n + n)
				cap *= 2;
			if (!(v = realloc(h->out, cap * sizeof(*v))))
				return -ENOMEM;
			h->out = v;
			h->out_cap = cap;
		}
	}
	bufs = calloc(later + 1, sizeof(*bufs));
	lens = calloc(later + 1, sizeof(*lens));
	if (!bufs || !lens)
		goto cleanup;
	for (size_t i = 0; i < later; i++) {
		const struct fsim_out *o = &h->out[h->out_head + pos + i];

		if (!(bufs[i] = reseq(o, o->seq + n, &lens[i])))
			goto cleanup;
	}
	for (size_t i = 0; i < later; i++) {
		struct fsim_out *o = &h->out[h->out_head + pos + i];

		free(o->buf);
		o->buf = bufs[i];
		o->len = lens[i];
		o->seq += n;
		bufs[i] = NULL;
	}
	memmove(&h->out[h->out_head + pos + n], &h->out[h->out_head + pos],
		later * sizeof(*h->out));
	memcpy(&h->out[h->out_head + pos], items, n * sizeof(*items));
	h->out_n += n;
	h->seq += n;
	err = 0;
cleanup:
	for (size_t i = 0; bufs && i < later; i++)
		free(bufs[i]);
	free(bufs);
	free(lens);
	return err;
}

void fsim_host_drop(struct fsim_host *h, size_t i)
{
	struct fsim_out *o = &h->out[h->out_head + i];

	free(o->buf);
	if (i == 0) {
		h->out_head++;
	} else {
		memmove(o, o + 1, (h->out_n - i - 1) * sizeof(*o));
	}
	h->out_n--;
	if (h->out_n == 0)
		h->out_head = 0;
}

static int add_job(struct fsim_host *h, const struct fsim_pdef *def, int cause, bool spiking,
		   int64_t period, int64_t jitter, int64_t lifetime, int64_t phase, int32_t pid,
		   int64_t from_ns)
{
	struct fsim_job *v = realloc(h->jobs, (h->n_jobs + 1) * sizeof(*v)), *j;

	if (!v)
		return -ENOMEM;
	h->jobs = v;
	j = &h->jobs[h->n_jobs++];
	memset(j, 0, sizeof(*j));
	j->def = def;
	j->cause = cause;
	j->spiking = spiking;
	j->period_ns = period;
	j->jitter_ns = jitter;
	j->lifetime_ns = lifetime;
	j->phase_ns = mod_pos(phase, period);
	j->pid = pid;
	/* the first occurrence at or after from_ns */
	j->k = (from_ns - j->phase_ns + period - 1) / period;
	j->next_ns = j->phase_ns + j->k * period;
	if (jitter)
		j->next_ns += (int64_t)fsim_rng_range(&h->rng, -(double)jitter, (double)jitter);
	return 0;
}

static int init_host(struct fsim_fleet *f, struct fsim_host *h, uint32_t idx)
{
	const struct fsim_scenario *sc = f->sc;
	struct fsim_rng *r = &h->rng;
	const struct role_set *rs = NULL;
	double cw[sizeof(cpu_mix) / sizeof(cpu_mix[0])], ctot = 0;
	uint64_t a, b;
	int64_t uptime;
	struct fsim_proc *p;
	int32_t init_pid, kthreadd;

	h->idx = idx;
	fsim_rng_seed(r, f->seed, idx);
	a = fsim_hash(f->seed, 2 * (uint64_t)idx + 1);
	b = fsim_hash(f->seed ^ 0x5bd1e995ULL, 2 * (uint64_t)idx + 2);
	snprintf(h->host_id, sizeof(h->host_id), "%016" PRIx64 "%016" PRIx64, a, b);
	snprintf(h->hostname, sizeof(h->hostname), "sim-%05u", idx);
	/* a new boot per run: a rerun with the same seed is the same hosts
	 * rebooted, not a replay of sequence numbers already stored */
	a = fsim_hash(fsim_rng_next(r), (uint64_t)f->from_ns);
	b = fsim_hash(fsim_rng_next(r), (uint64_t)f->from_ns + 1);
	snprintf(h->boot_id, sizeof(h->boot_id), "%08x-%04x-4%03x-%04x-%012" PRIx64,
		 (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
		 (unsigned)(0x8000 | ((b >> 48) & 0x3fff)), (uint64_t)(b & 0xffffffffffffULL));
	h->kernel = fsim_rng_pick(r, sc->kernels.weights, sc->kernels.n, sc->kernels.total);
	h->cluster = fsim_rng_pick(r, sc->clusters.weights, sc->clusters.n, sc->clusters.total);
	h->rack = fsim_rng_pick(r, sc->racks.weights, sc->racks.n, sc->racks.total);
	h->role = fsim_rng_pick(r, sc->roles.weights, sc->roles.n, sc->roles.total);
	for (size_t i = 0; i < sizeof(cpu_mix) / sizeof(cpu_mix[0]); i++) {
		cw[i] = cpu_mix[i].weight;
		ctot += cw[i];
	}
	h->cpus = cpu_mix[fsim_rng_pick(r, cw, sizeof(cw) / sizeof(cw[0]), ctot)].cpus;
	h->memory_bytes = (uint64_t)h->cpus * (fsim_rng_below(r, 2) ? 8ULL : 4ULL) << 30;
	h->cpu_model = cpu_models[fsim_rng_below(r, sizeof(cpu_models) / sizeof(cpu_models[0]))];
	if (fsim_rng_unit(r) < sc->skew_outliers) {
		double s = fsim_rng_range(r, (double)SH_NS_PER_SEC, (double)sc->skew_outlier_ns);

		h->skew_ns = (int64_t)(fsim_rng_below(r, 2) ? s : -s);
	} else {
		h->skew_ns = (int64_t)fsim_rng_range(r, -(double)sc->skew_ns, (double)sc->skew_ns);
	}
	uptime = (int64_t)fsim_rng_range(r, (double)NS_D, 40.0 * NS_D);
	h->boot_ns = f->from_ns - uptime;
	h->phase_ns = (int64_t)(fsim_rng_unit(r) * 1e9); /* a fraction, see gen.c */
	h->cursor_ns = f->from_ns;
	h->next_pid = 1;

	/* processes: init, kernel threads, daemons, the role's, rare ones */
	p = fsim_host_add_proc(h, &base_defs[0], 0, h->boot_ns);
	if (!p)
		return -ENOMEM;
	init_pid = p->pid;
	p = fsim_host_add_proc(h, &base_defs[1], 0, h->boot_ns);
	if (!p)
		return -ENOMEM;
	kthreadd = p->pid;
	for (size_t i = 2; i < N_BASE; i++) {
		int64_t t = h->boot_ns + (int64_t)fsim_rng_range(r, 1e8, 8e9);
		bool kt = i <= N_KTHREADS;

		if (kt)
			h->next_pid = h->next_pid < 10 ? 10 : h->next_pid;
		if (!fsim_host_add_proc(h, &base_defs[i], kt ? kthreadd : init_pid, t))
			return -ENOMEM;
		if (i == N_KTHREADS)
			h->next_pid += 400 + (int32_t)fsim_rng_below(r, 300);
	}
	for (size_t i = 0; i < N_ROLE_SETS; i++)
		if (strcmp(role_sets[i].role, sc->roles.names[h->role]) == 0)
			rs = &role_sets[i];
	h->next_pid += 200 + (int32_t)fsim_rng_below(r, 3000);
	if (rs) {
		int64_t t = h->boot_ns + (int64_t)fsim_rng_range(r, 10e9, (double)uptime * 0.6);
		int32_t parent = init_pid;

		for (size_t i = 0; i < 6 && rs->defs[i].comm[0]; i++) {
			for (uint32_t c = 0; c < rs->copies[i]; c++) {
				p = fsim_host_add_proc(h, &rs->defs[i], parent,
						       t + (int64_t)i * 50000000);
				if (!p)
					return -ENOMEM;
				if (i == 0 && c == 0)
					h->main_pid = p->pid;
				if (i == 0 && strcmp(rs->role, "db") == 0)
					parent = p->pid; /* backends hang off the postmaster */
			}
		}
	} else {
		int64_t t = h->boot_ns + (int64_t)fsim_rng_range(r, 10e9, (double)uptime * 0.6);

		p = fsim_host_add_proc(h, &f->role_defs[h->role], init_pid, t);
		if (!p)
			return -ENOMEM;
		h->main_pid = p->pid;
	}
	for (size_t i = 0; i < N_RARE; i++) {
		if (fsim_rng_unit(r) >= rare_defs[i].share)
			continue;
		int64_t t = f->from_ns - (int64_t)fsim_rng_range(r, 60e9, 3.0 * NS_D);

		if (t < h->boot_ns)
			t = h->boot_ns + 60 * SH_NS_PER_SEC;
		if (!fsim_host_add_proc(h, &rare_defs[i].def, init_pid, t))
			return -ENOMEM;
	}
	for (size_t i = 0; i < N_CRON; i++) {
		int64_t period = cron_defs[i].period_s * SH_NS_PER_SEC, phase;

		if (fsim_rng_unit(r) >= cron_defs[i].share)
			continue;
		if (cron_defs[i].grid_offset_s >= 0)
			phase = cron_defs[i].grid_offset_s * SH_NS_PER_SEC - h->skew_ns;
		else
			phase = (int64_t)fsim_rng_range(r, 0, (double)period);
		if (add_job(h, &cron_defs[i].def, -1, false, period,
			    cron_defs[i].jitter_ms * SH_NS_PER_MS,
			    cron_defs[i].lifetime_ms * SH_NS_PER_MS, phase, 0, f->from_ns) != 0)
			return -ENOMEM;
	}
	for (int k = 0; k < FSIM_NKINDS; k++)
		h->noise_next[k] =
			f->noise_weight[k] > 0
				? f->from_ns + (int64_t)fsim_rng_exp(r, 3600e9 / f->noise_weight[k])
				: INT64_MAX;
	h->ms.user = -1; /* gen.c starts the levels on first use */
	return 0;
}

static bool host_has_comm(struct fsim_host *h, const char *comm)
{
	if (fsim_host_find_comm(h, comm))
		return true;
	for (size_t i = 0; i < h->n_jobs; i++)
		if (strcmp(h->jobs[i].def->comm, comm) == 0)
			return true;
	return false;
}

bool fsim_host_matches(const struct fsim_fleet *f, struct fsim_host *h, const struct fsim_cause *c)
{
	const struct fsim_scenario *sc = f->sc;

	if (c->sel_kernel && strcmp(sc->kernels.names[h->kernel], c->sel_kernel) != 0)
		return false;
	if (c->sel_label_key) {
		const char *v = strcmp(c->sel_label_key, "cluster") == 0
					? sc->clusters.names[h->cluster]
				: strcmp(c->sel_label_key, "rack") == 0 ? sc->racks.names[h->rack]
									: sc->roles.names[h->role];

		if (strcmp(v, c->sel_label_value) != 0)
			return false;
	}
	if (c->sel_process && !host_has_comm(h, c->sel_process))
		return false;
	return true;
}

/* shuffle puts a random permutation of v[0..n) in place (cause stream). */
static void shuffle(struct fsim_rng *r, uint32_t *v, uint32_t n)
{
	for (uint32_t i = n; i > 1; i--) {
		uint32_t j = (uint32_t)fsim_rng_below(r, i);
		uint32_t t = v[i - 1];

		v[i - 1] = v[j];
		v[j] = t;
	}
}

static uint32_t count_of(enum fsim_count_mode mode, double value, uint32_t n)
{
	double c = mode == FSIM_COUNT_ALL ? n : mode == FSIM_COUNT_PCT ? value * n + 0.5 : value;

	return c > n ? n : (uint32_t)c;
}

/* place_process gives cause ci's process (a periodic cause or a decoy) to
 * its hosts, and for a periodic cause picks those that spike. */
static int place_process(struct fsim_fleet *f, size_t ci, uint32_t *scratch)
{
	const struct fsim_cause *c = &f->sc->causes[ci];
	struct fsim_pdef *def = &f->cause_defs[ci];
	struct fsim_rng r;
	uint32_t n = 0, want, spiking = 0, chosen = 0;

	fsim_rng_seed(&r, f->seed, STREAM_CAUSE + ci);
	for (uint32_t i = 0; i < f->n_hosts; i++) {
		struct fsim_host *h = &f->hosts[i];

		if (c->with_cause >= 0 && h->hc[c->with_cause].spiking)
			continue; /* placed below, always */
		if (fsim_host_matches(f, h, c))
			scratch[n++] = i;
	}
	shuffle(&r, scratch, n);
	want = count_of(c->hosts_mode, c->hosts_value, n);
	if (c->type == FSIM_PERIODIC)
		spiking = (uint32_t)(c->spiking * want + 0.5);
	if (c->with_cause >= 0) {
		for (uint32_t i = 0; i < f->n_hosts; i++)
			if (f->hosts[i].hc[c->with_cause].spiking)
				scratch[want++] = i; /* scratch has room: disjoint from the n */
	}
	for (uint32_t k = 0; k < want; k++) {
		struct fsim_host *h = &f->hosts[scratch[k]];
		struct fsim_hcause *hc = &h->hc[ci];
		int64_t phase;
		int32_t pid = 0;

		hc->member = true;
		hc->spiking = k < spiking;
		hc->job = -1;
		chosen++;
		if (!c->lifetime_ns) {
			/* a daemon: running since boot or a while */
			int64_t t = h->boot_ns + (int64_t)fsim_rng_range(&h->rng, 5e9, 120e9);
			struct fsim_proc *p = fsim_host_add_proc(h, def, 1, t);

			if (!p)
				return -ENOMEM;
			pid = p->pid;
		}
		if (!c->period_ns)
			continue;
		if (c->phase_aligned)
			phase = -h->skew_ns;
		else
			phase = (int64_t)fsim_rng_range(&h->rng, 0, (double)c->period_ns);
		hc->job = (int)h->n_jobs;
		if (add_job(h, def, (int)ci, hc->spiking, c->period_ns, c->jitter_ns,
			    c->lifetime_ns, phase, pid, f->from_ns) != 0)
			return -ENOMEM;
	}
	f->cause_hosts[ci] = c->type == FSIM_PERIODIC ? spiking : chosen;
	return 0;
}

/* select_hosts marks the hosts a burst, rate or regression cause applies
 * to (a rate cause: fraction of the matching ones). */
static void select_hosts(struct fsim_fleet *f, size_t ci, uint32_t *scratch)
{
	const struct fsim_cause *c = &f->sc->causes[ci];
	struct fsim_rng r;
	uint32_t n = 0, want;

	fsim_rng_seed(&r, f->seed, STREAM_CAUSE + ci);
	for (uint32_t i = 0; i < f->n_hosts; i++)
		if (fsim_host_matches(f, &f->hosts[i], c))
			scratch[n++] = i;
	shuffle(&r, scratch, n);
	want = c->type == FSIM_RATE ? (uint32_t)(c->fraction * n + 0.5) : n;
	for (uint32_t k = 0; k < want; k++) {
		struct fsim_host *h = &f->hosts[scratch[k]];
		struct fsim_hcause *hc = &h->hc[ci];
		double rate = c->type == FSIM_RATE ? c->rate
			      : c->type == FSIM_REGRESSION
				      ? (c->rate_factor - 1) * f->noise_weight[c->kind]
				      : 0;

		hc->member = true;
		hc->spiking = c->type != FSIM_REGRESSION || rate > 0;
		hc->job = -1;
		hc->next_ns = rate > 0 ? f->from_ns + (int64_t)fsim_rng_exp(&h->rng, 3600e9 / rate)
				       : INT64_MAX;
	}
	f->cause_hosts[ci] = want;
}

int fsim_fleet_firings_until(struct fsim_fleet *f, size_t ci, int64_t until_ns)
{
	struct fsim_burst_firings *b = &f->bursts[ci];
	double mean = 3600e9 / f->sc->causes[ci].rate;

	while (b->until_ns < until_ns) {
		int64_t t = b->until_ns + (int64_t)fsim_rng_exp(&b->rng, mean);

		if (t >= until_ns) {
			/* memoryless: drawing again from until_ns is the same process */
			b->until_ns = until_ns;
			break;
		}
		if (b->n == b->cap) {
			size_t cap = b->cap ? 2 * b->cap : 64;
			int64_t *v = realloc(b->t, cap * sizeof(*v));

			if (!v)
				return -ENOMEM;
			b->t = v;
			b->cap = cap;
		}
		b->t[b->n++] = t;
		b->until_ns = t;
	}
	return 0;
}

int fsim_fleet_new(struct fsim_fleet **out, const struct fsim_scenario *sc, uint32_t n_hosts,
		   uint64_t seed, int64_t from_ns)
{
	struct fsim_fleet *f = calloc(1, sizeof(*f));
	uint32_t *scratch = NULL;
	size_t nc = sc->n_causes;
	int err = -ENOMEM;

	*out = NULL;
	if (!f)
		return -ENOMEM;
	f->sc = sc;
	f->seed = seed;
	f->from_ns = from_ns;
	f->n_hosts = n_hosts;
	f->hosts = calloc(n_hosts, sizeof(*f->hosts));
	f->role_defs = calloc(sc->roles.n, sizeof(*f->role_defs));
	f->cause_defs = calloc(nc + 1, sizeof(*f->cause_defs));
	f->cause_hosts = calloc(nc + 1, sizeof(*f->cause_hosts));
	f->bursts = calloc(nc + 1, sizeof(*f->bursts));
	scratch = calloc((size_t)n_hosts * 2 + 1, sizeof(*scratch));
	if (!f->hosts || !f->role_defs || !f->cause_defs || !f->cause_hosts || !f->bursts ||
	    !scratch)
		goto cleanup;
	for (uint32_t i = 0; i < sc->noise_kinds.n; i++) {
		int k = fsim_kind_parse(sc->noise_kinds.names[i]);

		if (k >= 0)
			f->noise_weight[k] +=
				sc->noise_rate * sc->noise_kinds.weights[i] / sc->noise_kinds.total;
	}
	/* roles without a built-in process set get one process named after them */
	for (uint32_t i = 0; i < sc->roles.n; i++) {
		struct fsim_pdef *d = &f->role_defs[i];
		const char *name = sc->roles.names[i];
		size_t len = strlen(name) * 4 + 64;
		char *buf = malloc(len);
		int n;

		if (!buf)
			goto cleanup;
		snprintf(d->comm, sizeof(d->comm), "%s", name);
		/* one allocation: the exe, then the cmdline */
		n = snprintf(buf, len, "/usr/local/bin/%s", name);
		snprintf(buf + n + 1, len - (size_t)n - 1,
			 "/usr/local/bin/%s --config /etc/%s/%s.yaml", name, name, name);
		d->exe = buf;
		d->cmdline = buf + n + 1;
		d->cgroup = "/system.slice/app.service";
		d->uid = 1001;
		d->threads = 16;
	}
	for (size_t i = 0; i < nc; i++) {
		const struct fsim_cause *c = &sc->causes[i];
		struct fsim_pdef *d = &f->cause_defs[i];

		if (!c->comm)
			continue;
		snprintf(d->comm, sizeof(d->comm), "%s", c->comm);
		d->cmdline = c->cmdline ? c->cmdline : c->comm;
		d->exe = c->exe ? c->exe : "";
		d->cgroup = c->lifetime_ns ? "/system.slice/cron.service"
					   : "/system.slice/tools.service";
		d->uid = 0;
		d->threads = 1;
	}
	for (uint32_t i = 0; i < n_hosts; i++) {
		struct fsim_host *h = &f->hosts[i];

		h->hc = calloc(nc + 1, sizeof(*h->hc));
		if (!h->hc)
			goto cleanup;
		for (size_t k = 0; k < nc; k++)
			h->hc[k].job = -1;
		if ((err = init_host(f, h, i)) != 0)
			goto cleanup;
	}
	/* in four passes: periodic causes place their processes; bursts,
	 * regressions and rate causes by kernel or label pick their hosts;
	 * decoys follow the spiking hosts of those; rate causes by process
	 * pick the hosts that run it (decoys' processes included) */
	for (int pass = 0; pass < 4; pass++) {
		for (size_t i = 0; i < nc; i++) {
			const struct fsim_cause *c = &sc->causes[i];
			bool by_proc = c->type == FSIM_RATE && c->sel_process;

			if (pass == 0 && c->type == FSIM_PERIODIC)
				err = place_process(f, i, scratch);
			else if (pass == 1 && c->type != FSIM_PERIODIC && c->type != FSIM_DECOY &&
				 !by_proc)
				select_hosts(f, i, scratch);
			else if (pass == 2 && c->type == FSIM_DECOY)
				err = place_process(f, i, scratch);
			else if (pass == 3 && by_proc)
				select_hosts(f, i, scratch);
			if (err)
				goto cleanup;
			if (pass == 1 && c->type == FSIM_BURST) {
				fsim_rng_seed(&f->bursts[i].rng, seed, STREAM_BURST + i);
				f->bursts[i].until_ns = from_ns;
			}
		}
	}
	free(scratch);
	*out = f;
	return 0;
cleanup:
	free(scratch);
	fsim_fleet_free(f);
	return err ? err : -ENOMEM;
}

void fsim_fleet_free(struct fsim_fleet *f)
{
	if (!f)
		return;
	for (uint32_t i = 0; f->hosts && i < f->n_hosts; i++) {
		struct fsim_host *h = &f->hosts[i];

		for (size_t k = 0; k < h->n_procs; k++)
			free(h->procs[k].cmdline);
		free(h->procs);
		free(h->jobs);
		free(h->hc);
		for (size_t k = 0; k < h->out_n; k++)
			free(h->out[h->out_head + k].buf);
		free(h->out);
		fsim_recorder_fini(&h->rec);
	}
	for (uint32_t i = 0; f->role_defs && i < f->sc->roles.n; i++)
		free((char *)f->role_defs[i].exe);
	for (size_t i = 0; f->bursts && i < f->sc->n_causes; i++)
		free(f->bursts[i].t);
	free(f->hosts);
	free(f->role_defs);
	free(f->cause_defs);
	free(f->cause_hosts);
	free(f->bursts);
	free(f);
}

void fsim_host_hello(const struct fsim_fleet *f, const struct fsim_host *h, int64_t true_now_ns,
		     struct fsim_hello *out)
{
	const struct fsim_scenario *sc = f->sc;
	Spikehound__Hello *m = &out->hello;
	static const char *const keys[3] = {"rack", "cluster", "role"};
	const char *vals[3] = {sc->racks.names[h->rack], sc->clusters.names[h->cluster],
			       sc->roles.names[h->role]};

	spikehound__hello__init(m);
	for (int i = 0; i < 3; i++) {
		spikehound__hello__labels_entry__init(&out->labels[i]);
		out->labels[i].key = (char *)keys[i];
		out->labels[i].value = (char *)vals[i];
		out->label_ptrs[i] = &out->labels[i];
	}
	snprintf(out->kernel_version, sizeof(out->kernel_version),
		 "#1 SMP PREEMPT_DYNAMIC %s (fleet-sim)", sc->kernels.names[h->kernel]);
	m->host_id = (char *)h->host_id;
	m->hostname = (char *)h->hostname;
	m->boot_id = (char *)h->boot_id;
	m->kernel_release = sc->kernels.names[h->kernel];
	m->kernel_version = out->kernel_version;
	m->cpu_count = h->cpus;
	m->cpu_model = (char *)h->cpu_model;
	m->memory_bytes = h->memory_bytes;
	m->labels = out->label_ptrs;
	m->n_labels = 3;
	m->agent_version = (char *)"0.1.0-fleet-sim";
	m->boot_time_ns = h->boot_ns + h->skew_ns;
	m->clock_offset_ns = h->boot_ns + h->skew_ns;
	m->sent_at_ns = true_now_ns + h->skew_ns;
}
