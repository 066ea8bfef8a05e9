/* bench_ingest.c: ingest benchmark: simulates a fleet of agents sending
 * realistic summaries to a running spikehound-aggregator as fast as its
 * acks allow, and reports what it sustained (summaries/s, rows/s, ack
 * latency) and where the CPU went (aggregator, its PostgreSQL, this
 * program, the rest of the machine).
 *
 * Each thread owns one nng req0 socket and a slice of the simulated hosts;
 * it sends one request (--batch summaries of one host), waits for the Ack,
 * and moves on to its next host. Hosts keep their host id, boot id and a
 * per-boot sequence number that grows by one per summary, so every summary
 * is new to the aggregator. Only acks received inside the measured window
 * (after --warmup) count. It never fails on time: exit 1 only when
 * something broke (cannot dial, requests or messages rejected, no acks).
 *
 * With --observe it sends nothing and only samples CPU for --seconds (the
 * runner uses it while the peer benchmark runs). */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spikehound.pb-c.h"

#define NS 1000000000LL
#define NMETRICS 10
#define NSTACKS 20
#define STACK_FRAMES 15
#define STACK_POOL 512
#define MAX_PROCS 8
#define NPSAMPLES 5
#define RECENT 8
#define LAT_SUB 16
#define LAT_BUCKETS (32 + 40 * LAT_SUB)
#define MAX_TRACKED 8192

/* ---- options and shared state ----------------------------------------- */

struct opts {
	const char *url;
	const char *label;
	int hosts, threads, seconds, warmup, batch;
	uint64_t seed;
	pid_t agg_pid, pg_pid;
	bool observe, verbose;
};

static struct opts opt = {
	.url = "tcp://127.0.0.1:7470",
	.label = "",
	.hosts = 2000,
	.threads = 64,
	.seconds = 20,
	.warmup = 3,
	.batch = 1,
};

enum phase { PH_WARMUP, PH_MEASURE, PH_DONE };
static atomic_int phase;

/* struct recent is a process a host started, to be reported exiting later. */
struct recent {
	int32_t pid;
	int64_t start_ns;
	int cmd;
};

/* struct host is one simulated agent; owned by exactly one thread. */
struct host {
	char host_id[33];
	char boot_id[37];
	char hostname[24];
	char rack[8];
	const char *role;
	const struct kernel *kernel;
	uint32_t cpus;
	uint64_t mem_kb;
	int64_t boot_ns;
	uint64_t seq;
	int32_t next_pid;
	struct recent recent[RECENT];
	int n_recent;
	Spikehound__Hello__LabelsEntry lab[2], *labp[2];
	Spikehound__Hello hello;
};

/* struct tally is what one thread counted inside the measured window. */
struct tally {
	uint64_t requests, acks_ok, stored, not_stored, rejected_msgs, rejected_reqs, retries;
	uint64_t rows, send_errors, recv_errors, bytes;
	uint64_t lat[LAT_BUCKETS];
	uint64_t lat_max_us;
};

struct worker {
	pthread_t tid;
	int index;
	uint64_t rng;
	nng_socket sock;
	struct host **hosts;
	int n_hosts;
	struct tally t;
	/* request storage, reused: batch-sized arrays */
	Spikehound__AgentRequest req;
	Spikehound__AgentMessage *msg, **msgp;
	Spikehound__Summary *sum;
	Spikehound__AgentHealth *health;
	Spikehound__MetricSecond *ms, **msp;
	Spikehound__Process *proc, **procp;
	Spikehound__FoldedStack *st, **stp;
	Spikehound__ProcessSamples *ps, **psp;
	char (*comms)[NPSAMPLES][16];
	int fatal;
};

/* ---- realistic content ------------------------------------------------- */

struct kernel {
	const char *release, *version;
};

static const struct kernel kernels[] = {
	{ "6.1.0-18-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)" },
	{ "5.15.0-105-generic", "#115-Ubuntu SMP Mon Apr 15 09:52:04 UTC 2024" },
	{ "6.8.0-40-generic", "#40~22.04.3-Ubuntu SMP PREEMPT_DYNAMIC Tue Jul 30 17:30:19 UTC 2" },
	{ "5.10.0-28-amd64", "#1 SMP Debian 5.10.209-2 (2024-01-31)" },
	{ "5.14.0-427.13.1.el9_4.x86_64", "#1 SMP PREEMPT_DYNAMIC Wed Apr 10 10:29:16 EDT 2024" },
};

static const char *const roles[] = { "web", "db", "cache", "batch", "kafka", "ci" };

static const char *const cpu_models[] = {
	"Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
	"AMD EPYC 7R13 Processor",
	"Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz",
};

struct cmd {
	const char *comm, *exe, *cmdline, *cgroup;
	uint32_t uid;
};

/* what comes and goes on a server; atop's hourly restart is the classic
 * culprit, so it shows up now and then (index 0) */
static const struct cmd cmds[] = {
	{ "atop", "/usr/bin/atop", "atop -R -w /var/log/atop/x 600", "/system.slice/atop.service", 0 },
	{ "sh", "/usr/bin/dash", "/bin/sh -c run-parts --report /etc/cron.hourly",
	  "/system.slice/cron.service", 0 },
	{ "python3", "/usr/bin/python3.11",
	  "/usr/bin/python3 /opt/app/worker.py --queue default --concurrency 4 --log-level info",
	  "/system.slice/app-worker.service", 1001 },
	{ "java", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
	  "/usr/lib/jvm/java-17-openjdk-amd64/bin/java -Xms2g -Xmx2g -XX:+UseG1GC"
	  " -Dlog4j2.formatMsgNoLookups=true -jar /opt/svc/orders-service.jar --spring.profiles.active=prod",
	  "/system.slice/orders.service", 1002 },
	{ "curl", "/usr/bin/curl",
	  "curl -sf --max-time 2 http://169.254.169.254/latest/meta-data/instance-id",
	  "/system.slice/node-exporter.service", 65534 },
	{ "git", "/usr/bin/git", "git -C /srv/repo fetch --prune origin",
	  "/user.slice/user-1000.slice/session-4.scope", 1000 },
	{ "postgres", "/usr/lib/postgresql/15/bin/postgres",
	  "postgres: 15/main: app orders 10.0.3.17(51234) idle", "/system.slice/postgresql@15-main.service",
	  113 },
	{ "nginx", "/usr/sbin/nginx", "nginx: worker process", "/system.slice/nginx.service", 33 },
	{ "logrotate", "/usr/sbin/logrotate", "/usr/sbin/logrotate /etc/logrotate.conf",
	  "/system.slice/logrotate.service", 0 },
	{ "du", "/usr/bin/du", "du -sk /var/lib/docker/overlay2", "/system.slice/cron.service", 0 },
	{ "kubelet", "/usr/bin/kubelet",
	  "/usr/bin/kubelet --config=/var/lib/kubelet/config.yaml --container-runtime-endpoint="
	  "unix:///run/containerd/containerd.sock --node-ip=10.0.3.17",
	  "/system.slice/kubelet.service", 0 },
	{ "ssh", "/usr/bin/ssh", "ssh -o BatchMode=yes backup@10.0.9.4 /usr/local/bin/pull-backup",
	  "/system.slice/backup.service", 0 },
	{ "gzip", "/usr/bin/gzip", "gzip -9 /var/log/app/app.log.1", "/system.slice/logrotate.service", 0 },
	{ "node", "/usr/bin/node", "node /srv/web/server.js --port 3000 --workers 2",
	  "/system.slice/web.service", 1003 },
	{ "containerd-shim", "/usr/bin/containerd-shim-runc-v2",
	  "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id 4f2a9c0e1b7d3e5f8a6c2b9d0e1f3a5c7b9d1e3f -address /run/containerd/containerd.sock",
	  "/system.slice/containerd.service", 0 },
	{ "psql", "/usr/lib/postgresql/15/bin/psql", "psql -XAtc select 1", "/system.slice/healthcheck.service",
	  113 },
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static const char *const kframes[] = {
	"entry_SYSCALL_64_after_hwframe", "do_syscall_64", "__x64_sys_read", "ksys_read", "vfs_read",
	"new_sync_read", "ext4_file_read_iter", "filemap_read", "filemap_get_pages",
	"page_cache_ra_unbounded", "__x64_sys_mmap", "vm_mmap_pgoff", "down_write_killable",
	"rwsem_down_write_slowpath", "schedule", "__schedule", "finish_task_switch.isra.0",
	"asm_exc_page_fault", "exc_page_fault", "do_user_addr_fault", "handle_mm_fault",
	"__handle_mm_fault", "do_anonymous_page", "alloc_pages_mpol", "__alloc_pages",
	"__alloc_pages_slowpath.constprop.0", "try_to_free_pages", "shrink_node", "shrink_lruvec",
	"tcp_sendmsg", "tcp_sendmsg_locked", "tcp_push", "__tcp_transmit_skb", "ip_output",
	"__dev_queue_xmit", "net_rx_action", "__napi_poll", "__x64_sys_futex", "futex_wait",
	"__x64_sys_epoll_wait", "do_epoll_wait", "ep_poll", "copy_user_enhanced_fast_string",
};

static const char *const uframes[] = {
	"__libc_start_main", "main", "PostmasterMain", "ServerLoop", "PostgresMain",
	"exec_simple_query", "PortalRun", "ExecutorRun", "ExecScan", "heap_getnextslot",
	"__GI___libc_read", "__GI___libc_write", "__memmove_avx_unaligned_erms", "malloc",
	"_int_malloc", "pthread_cond_wait@@GLIBC_2.3.2", "start_thread", "clone3",
	"JavaCalls::call_helper", "Interpreter", "G1ParScanThreadState::trim_queue",
	"_PyEval_EvalFrameDefault", "PyObject_Call", "uv_run", "uv__io_poll",
	"ngx_worker_process_cycle", "ngx_process_events_and_timers", "ngx_epoll_process_events",
	"deflate_slow", "longest_match", "[unknown]",
};

static const char *stack_pool[STACK_POOL];

/* ---- small helpers ----------------------------------------------------- */

static uint64_t rnd(uint64_t *s)
{
	/* xorshift64* */
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 2685821657736338717ULL;
}

static uint32_t rndn(uint64_t *s, uint32_t n)
{
	return (uint32_t)((rnd(s) >> 32) % n);
}

static float rndf(uint64_t *s, float lo, float hi)
{
	return lo + (hi - lo) * (float)(rnd(s) >> 40) / (float)(1 << 24);
}

static int64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static void sleep_until(int64_t mono)
{
	struct timespec ts = { mono / NS, mono % NS };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void hex(uint64_t *s, char *out, int n)
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < n; i++)
		out[i] = digits[rnd(s) >> 60];
	out[n] = '\0';
}

static void uuid(uint64_t *s, char *out)
{
	hex(s, out, 32);
	memmove(out + 24, out + 20, 13);
	memmove(out + 19, out + 16, 4);
	memmove(out + 14, out + 12, 4);
	memmove(out + 9, out + 8, 4);
	out[8] = out[13] = out[18] = out[23] = '-';
	out[14] = '4';
	out[36] = '\0';
}

/* ---- latency histogram (log-linear, microseconds, ~6% resolution) ------ */

static int lat_index(uint64_t us)
{
	int e, i;

	if (us < 32)
		return (int)us;
	e = 63 - __builtin_clzll(us);
	i = 32 + (e - 5) * LAT_SUB + (int)((us >> (e - 4)) - LAT_SUB);
	return i < LAT_BUCKETS ? i : LAT_BUCKETS - 1;
}

/* lat_value returns the middle of bucket i, in microseconds. */
static double lat_value(int i)
{
	int e, m;

	if (i < 32)
		return i;
	e = (i - 32) / LAT_SUB + 5;
	m = (i - 32) % LAT_SUB;
	return ((double)(LAT_SUB + m) + 0.5) * (double)(1ULL << (e - 4));
}

static double lat_quantile_ms(const uint64_t *h, double q)
{
	uint64_t total = 0, acc = 0;

	for (int i = 0; i < LAT_BUCKETS; i++)
		total += h[i];
	if (!total)
		return 0;
	for (int i = 0; i < LAT_BUCKETS; i++) {
		acc += h[i];
		if ((double)acc >= q * (double)total)
			return lat_value(i) / 1000.0;
	}
	return 0;
}

/* ---- the simulated fleet ----------------------------------------------- */

static void make_stack_pool(uint64_t *s)
{
	char buf[1024];

	for (int i = 0; i < STACK_POOL; i++) {
		const struct cmd *c = &cmds[rndn(s, NCMDS)];
		int nk = 4 + (int)rndn(s, 8), n;

		n = snprintf(buf, sizeof(buf), "%s", c->comm);
		/* outermost first: user frames, then kernel frames */
		for (int f = 0; f < STACK_FRAMES - nk; f++)
			n += snprintf(buf + n, sizeof(buf) - (size_t)n, ";%s",
				      uframes[rndn(s, sizeof(uframes) / sizeof(uframes[0]))]);
		for (int f = 0; f < nk; f++)
			n += snprintf(buf + n, sizeof(buf) - (size_t)n, ";%s_[k]",
				      kframes[rndn(s, sizeof(kframes) / sizeof(kframes[0]))]);
		stack_pool[i] = strdup(buf);
	}
}

static struct host *host_new(uint64_t *s, int i, int64_t now, uint64_t seq0)
{
	struct host *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	hex(s, h->host_id, 32);
	uuid(s, h->boot_id);
	snprintf(h->hostname, sizeof(h->hostname), "node-%05d", i);
	snprintf(h->rack, sizeof(h->rack), "r%02u", rndn(s, 40));
	h->role = roles[rndn(s, sizeof(roles) / sizeof(roles[0]))];
	h->kernel = &kernels[rndn(s, sizeof(kernels) / sizeof(kernels[0]))];
	h->cpus = 4u << rndn(s, 5);
	h->mem_kb = (uint64_t)h->cpus * 4 * 1024 * 1024;
	h->boot_ns = now - (int64_t)(3600 + rndn(s, 30 * 86400)) * NS;
	h->seq = seq0;
	h->next_pid = 2000 + (int32_t)rndn(s, 200000);

	spikehound__hello__labels_entry__init(&h->lab[0]);
	spikehound__hello__labels_entry__init(&h->lab[1]);
	h->lab[0].key = "rack";
	h->lab[0].value = h->rack;
	h->lab[1].key = "role";
	h->lab[1].value = (char *)h->role;
	h->labp[0] = &h->lab[0];
	h->labp[1] = &h->lab[1];

	spikehound__hello__init(&h->hello);
	h->hello.host_id = h->host_id;
	h->hello.hostname = h->hostname;
	h->hello.boot_id = h->boot_id;
	h->hello.kernel_release = (char *)h->kernel->release;
	h->hello.kernel_version = (char *)h->kernel->version;
	h->hello.cpu_count = h->cpus;
	h->hello.cpu_model = (char *)cpu_models[rndn(s, 3)];
	h->hello.memory_bytes = h->mem_kb * 1024;
	h->hello.labels = h->labp;
	h->hello.n_labels = 2;
	h->hello.agent_version = "0.1.0";
	h->hello.boot_time_ns = h->boot_ns;
	h->hello.clock_offset_ns = h->boot_ns;
	return h;
}

static void fill_metric(uint64_t *s, const struct host *h, Spikehound__MetricSecond *m, int64_t t)
{
	float user = rndf(s, 5, 60), sys = rndf(s, 2, 15), irq = rndf(s, 0, 0.5f);
	float soft = rndf(s, 0, 3), iow = rndf(s, 0, 5), steal = rndf(s, 0, 1);
	uint64_t avail = h->mem_kb / 4 + rndn(s, (uint32_t)(h->mem_kb / 2));

	spikehound__metric_second__init(m);
	m->time_ns = t;
	m->cpu_user_pct = user;
	m->cpu_sys_pct = sys;
	m->cpu_irq_pct = irq;
	m->cpu_softirq_pct = soft;
	m->cpu_iowait_pct = iow;
	m->cpu_steal_pct = steal;
	m->cpu_idle_pct = 100 - user - sys - irq - soft - iow - steal;
	m->load1 = rndf(s, 0.1f, (float)h->cpus * 1.2f);
	m->procs_running = 1 + rndn(s, h->cpus * 2);
	m->procs_blocked = rndn(s, 3);
	m->psi_cpu_some_avg10 = rndf(s, 0, 20);
	m->psi_mem_some_avg10 = rndf(s, 0, 2);
	m->psi_mem_full_avg10 = rndf(s, 0, 1);
	m->psi_io_some_avg10 = rndf(s, 0, 8);
	m->psi_io_full_avg10 = rndf(s, 0, 4);
	m->psi_cpu_some_us = rndn(s, 200000);
	m->psi_mem_some_us = rndn(s, 20000);
	m->psi_io_some_us = rndn(s, 80000);
	m->mem_total_kb = h->mem_kb;
	m->mem_free_kb = avail / 3;
	m->mem_available_kb = avail;
	m->mem_cached_kb = avail / 2;
	m->slab_reclaimable_kb = 200000 + rndn(s, 400000);
	m->slab_unreclaimable_kb = 80000 + rndn(s, 100000);
	m->pgscan_direct = rndn(s, 8) == 0 ? rndn(s, 5000) : 0;
	m->pgscan_kswapd = rndn(s, 30000);
	m->pgsteal_direct = m->pgscan_direct / 2;
	m->pgsteal_kswapd = m->pgscan_kswapd / 2;
	m->allocstall = m->pgscan_direct ? rndn(s, 20) : 0;
	m->compact_stall = rndn(s, 50) == 0;
	m->dentry_nr = 400000 + rndn(s, 2000000);
	m->dentry_unused = m->dentry_nr / 2;
	m->dentry_negative = m->dentry_nr / 5;
	m->ctxt = 20000 + rndn(s, 400000);
	m->forks = rndn(s, 200);
	m->intr = 10000 + rndn(s, 300000);
	m->softirq_net_rx = rndn(s, 60000);
}

static void fill_proc(Spikehound__Process *p, int32_t pid, int cmd, int64_t start, int64_t exit)
{
	const struct cmd *c = &cmds[cmd];

	spikehound__process__init(p);
	p->pid = pid;
	p->ppid = cmd == 0 ? 1 : 1 + (pid % 977);
	p->comm = (char *)c->comm;
	p->exe = (char *)c->exe;
	p->cmdline = (char *)c->cmdline;
	p->cgroup = (char *)c->cgroup;
	p->start_time_ns = start;
	p->exit_time_ns = exit;
	p->uid = c->uid;
}

/* pick_cmd: mostly ordinary processes, atop now and then. */
static int pick_cmd(uint64_t *s)
{
	return rndn(s, 40) == 0 ? 0 : 1 + (int)rndn(s, NCMDS - 1);
}

/* fill_summary builds summary k of the request: interval [start, start+10s),
 * next seq of host h; returns its row count (1 + process rows). */
static int fill_summary(struct worker *w, struct host *h, int k, int64_t start)
{
	uint64_t *s = &w->rng;
	Spikehound__AgentMessage *m = &w->msg[k];
	Spikehound__Summary *sum = &w->sum[k];
	Spikehound__AgentHealth *hl = &w->health[k];
	Spikehound__MetricSecond *ms = &w->ms[k * NMETRICS], **msp = &w->msp[k * NMETRICS];
	Spikehound__Process *pr = &w->proc[k * MAX_PROCS], **prp = &w->procp[k * MAX_PROCS];
	Spikehound__FoldedStack *st = &w->st[k * NSTACKS], **stp = &w->stp[k * NSTACKS];
	Spikehound__ProcessSamples *ps = &w->ps[k * NPSAMPLES], **psp = &w->psp[k * NPSAMPLES];
	int64_t end = start + NMETRICS * NS;
	int n_start = 2 + (int)rndn(s, 3), n_exit = 2 + (int)rndn(s, 3), np = 0;

	spikehound__agent_message__init(m);
	m->host_id = h->host_id;
	m->boot_id = h->boot_id;
	m->seq = ++h->seq;
	m->created_ns = end;
	m->body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_SUMMARY;
	m->summary = sum;

	spikehound__summary__init(sum);
	sum->start_ns = start;
	sum->end_ns = end;
	for (int i = 0; i < NMETRICS; i++) {
		fill_metric(s, h, &ms[i], start + i * NS);
		msp[i] = &ms[i];
	}
	sum->metrics = msp;
	sum->n_metrics = NMETRICS;

	/* exits first (of processes this host started earlier), then starts */
	for (int i = 0; i < n_exit; i++) {
		int64_t exit = start + (int64_t)rndn(s, 10000) * 1000000;

		if (h->n_recent > 0) {
			struct recent *r = &h->recent[--h->n_recent];

			fill_proc(&pr[np], r->pid, r->cmd, r->start_ns,
				  exit > r->start_ns ? exit : r->start_ns + 1000000);
		} else {
			int64_t st0 = h->boot_ns + (int64_t)rndn(s, 3600) * NS;

			fill_proc(&pr[np], 300 + (int32_t)rndn(s, 1700), pick_cmd(s), st0, exit);
		}
		prp[np] = &pr[np];
		np++;
	}
	sum->exited = prp;
	sum->n_exited = (size_t)np;
	for (int i = 0; i < n_start; i++) {
		int cmd = pick_cmd(s);
		int64_t st0 = start + (int64_t)rndn(s, 10000) * 1000000;
		int32_t pid = h->next_pid;

		h->next_pid += 1 + (int32_t)rndn(s, 40);
		if (h->next_pid > 4000000)
			h->next_pid = 2000;
		fill_proc(&pr[np], pid, cmd, st0, 0);
		prp[np] = &pr[np];
		if (h->n_recent < RECENT)
			h->recent[h->n_recent++] = (struct recent){ pid, st0, cmd };
		np++;
	}
	sum->started = prp + n_exit;
	sum->n_started = (size_t)n_start;

	for (int i = 0; i < NPSAMPLES; i++) {
		const struct cmd *c = &cmds[rndn(s, NCMDS)];

		spikehound__process_samples__init(&ps[i]);
		ps[i].pid = 300 + (int32_t)rndn(s, 100000);
		snprintf(w->comms[k][i], sizeof(w->comms[k][i]), "%s", c->comm);
		ps[i].comm = w->comms[k][i];
		ps[i].samples = 1 + rndn(s, 990);
		psp[i] = &ps[i];
	}
	sum->proc_samples = psp;
	sum->n_proc_samples = NPSAMPLES;

	for (int i = 0; i < NSTACKS; i++) {
		spikehound__folded_stack__init(&st[i]);
		st[i].stack = (char *)stack_pool[rndn(s, STACK_POOL)];
		st[i].count = 1 + rndn(s, 400);
		stp[i] = &st[i];
	}
	sum->stacks = stp;
	sum->n_stacks = NSTACKS;

	spikehound__agent_health__init(hl);
	hl->samples = 9900 + rndn(s, 200);
	hl->samples_lost = rndn(s, 30) == 0 ? rndn(s, 50) : 0;
	hl->stack_errors = rndn(s, 20);
	hl->user_stacks_depth1 = rndn(s, 300);
	hl->recorder_seconds = rndf(s, 25, 30);
	hl->recorder_bytes = 48u << 20;
	hl->spool_dropped = 0;
	hl->spool_bytes = rndn(s, 65536);
	hl->events_suppressed = rndn(s, 4);
	hl->agent_cpu_pct = rndf(s, 0.3f, 1.5f);
	hl->agent_rss_kb = 60000 + rndn(s, 20000);
	sum->health = hl;
	return 1 + np;
}

static int worker_alloc(struct worker *w)
{
	size_t b = (size_t)opt.batch;

	w->msg = calloc(b, sizeof(*w->msg));
	w->msgp = calloc(b, sizeof(*w->msgp));
	w->sum = calloc(b, sizeof(*w->sum));
	w->health = calloc(b, sizeof(*w->health));
	w->ms = calloc(b * NMETRICS, sizeof(*w->ms));
	w->msp = calloc(b * NMETRICS, sizeof(*w->msp));
	w->proc = calloc(b * MAX_PROCS, sizeof(*w->proc));
	w->procp = calloc(b * MAX_PROCS, sizeof(*w->procp));
	w->st = calloc(b * NSTACKS, sizeof(*w->st));
	w->stp = calloc(b * NSTACKS, sizeof(*w->stp));
	w->ps = calloc(b * NPSAMPLES, sizeof(*w->ps));
	w->psp = calloc(b * NPSAMPLES, sizeof(*w->psp));
	w->comms = calloc(b, sizeof(*w->comms));
	if (!w->msg || !w->msgp || !w->sum || !w->health || !w->ms || !w->msp || !w->proc ||
	    !w->procp || !w->st || !w->stp || !w->ps || !w->psp || !w->comms)
		return -ENOMEM;
	return 0;
}

static void worker_fini(struct worker *w)
{
	free(w->msg);
	free(w->msgp);
	free(w->sum);
	free(w->health);
	free(w->ms);
	free(w->msp);
	free(w->proc);
	free(w->procp);
	free(w->st);
	free(w->stp);
	free(w->ps);
	free(w->psp);
	free(w->comms);
	free(w->hosts);
}

/* build_request packs the next request of host h into a new message
 * (caller owns it); *rows gets its row count. Returns 0 or -ENOMEM. */
static int build_request(struct worker *w, struct host *h, nng_msg **out, int *rows)
{
	int64_t now = wall_ns();
	size_t len;
	nng_msg *msg;

	*rows = 0;
	for (int k = 0; k < opt.batch; k++) {
		/* the oldest summary first, each ten seconds after the last */
		int64_t start = now - (int64_t)(opt.batch - k) * NMETRICS * NS;

		*rows += fill_summary(w, h, k, start);
		w->msgp[k] = &w->msg[k];
	}
	h->hello.sent_at_ns = now;
	spikehound__agent_request__init(&w->req);
	w->req.hello = &h->hello;
	w->req.messages = w->msgp;
	w->req.n_messages = (size_t)opt.batch;
	len = spikehound__agent_request__get_packed_size(&w->req);
	if (nng_msg_alloc(&msg, len) != 0)
		return -ENOMEM;
	spikehound__agent_request__pack(&w->req, nng_msg_body(msg));
	*out = msg;
	return 0;
}

static void tally_ack(struct tally *t, const Spikehound__Ack *ack, int rows)
{
	size_t stored = 0;

	if (ack->status == SPIKEHOUND__ACK__STATUS__RETRY) {
		t->retries++;
		return;
	}
	if (ack->status == SPIKEHOUND__ACK__STATUS__REJECTED) {
		t->rejected_reqs++;
		return;
	}
	t->acks_ok++;
	for (size_t i = 0; i < ack->n_items; i++) {
		if (ack->items[i]->rejected && ack->items[i]->rejected[0])
			t->rejected_msgs++;
		else if (ack->items[i]->stored)
			stored++;
		else
			t->not_stored++;
	}
	t->stored += stored;
	if (ack->n_items)
		t->rows += (uint64_t)rows * stored / ack->n_items;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	int k = 0;

	while (atomic_load(&phase) != PH_DONE) {
		struct host *h = w->hosts[k++ % w->n_hosts];
		uint64_t seq_before = h->seq;
		int recent_before = h->n_recent, rows, rv;
		size_t len;
		nng_msg *msg;
		Spikehound__Ack *ack;
		int64_t t0, t1;
		bool in_window;

		if (build_request(w, h, &msg, &rows) != 0) {
			w->fatal = -ENOMEM;
			break;
		}
		len = nng_msg_len(msg);
		t0 = mono_ns();
		if ((rv = nng_sendmsg(w->sock, msg, 0)) != 0) {
			nng_msg_free(msg);
			w->t.send_errors++;
			h->seq = seq_before;
			h->n_recent = recent_before;
			if (rv == NNG_ECLOSED)
				break;
			continue;
		}
		if ((rv = nng_recvmsg(w->sock, &msg, 0)) != 0) {
			w->t.recv_errors++;
			if (rv == NNG_ECLOSED)
				break;
			continue;
		}
		t1 = mono_ns();
		in_window = atomic_load(&phase) == PH_MEASURE;
		ack = spikehound__ack__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
		nng_msg_free(msg);
		if (!ack) {
			w->t.recv_errors++;
			continue;
		}
		if (ack->status == SPIKEHOUND__ACK__STATUS__RETRY) {
			/* nothing was committed: the agent would resend these seqs */
			h->seq = seq_before;
		}
		if (in_window) {
			uint64_t us = (uint64_t)(t1 - t0) / 1000;

			w->t.requests++;
			w->t.bytes += len;
			tally_ack(&w->t, ack, rows);
			w->t.lat[lat_index(us)]++;
			if (us > w->t.lat_max_us)
				w->t.lat_max_us = us;
		} else if (ack->status == SPIKEHOUND__ACK__STATUS__REJECTED ||
			   (ack->n_items && ack->items[0]->rejected && ack->items[0]->rejected[0])) {
			/* rejections break the run even outside the window */
			tally_ack(&w->t, ack, rows);
		}
		spikehound__ack__free_unpacked(ack, NULL);
	}
	return NULL;
}

/* ---- CPU accounting from /proc ----------------------------------------- */

struct tracked {
	int pid;
	unsigned long long start, ticks;
};

/* struct cpu_sampler follows the aggregator, the PostgreSQL processes,
 * this process and the whole machine, in clock ticks. */
struct cpu_sampler {
	long hz;
	uid_t pg_uid;
	bool have_pg_uid;
	struct tracked *prev, *cur;
	int n_prev, n_cur;
	unsigned long long agg_prev, self_prev, pg_acc, agg_acc, self_acc;
	unsigned long long mach_busy_prev, mach_total_prev, mach_busy_acc, mach_total_acc;
	int agg_dead;
};

/* read_stat parses /proc/<pid>/stat: comm, ppid, utime+stime, starttime.
 * Returns 0 or -1. */
static int read_stat(const char *pid, char *comm, size_t commlen, int *ppid,
		     unsigned long long *ticks, unsigned long long *start)
{
	char path[300], buf[1024], *l, *r;
	unsigned long long ut, st, sta;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	if (!(f = fopen(path, "r")))
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	l = strchr(buf, '(');
	r = strrchr(buf, ')');
	if (!l || !r || r < l)
		return -1;
	if (comm) {
		size_t cl = (size_t)(r - l - 1);

		if (cl >= commlen)
			cl = commlen - 1;
		memcpy(comm, l + 1, cl);
		comm[cl] = '\0';
	}
	/* after ')': state(3) ppid(4) ... utime(14) stime(15) ... starttime(22) */
	if (sscanf(r + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu",
		   ppid, &ut, &st, &sta) != 4)
		return -1;
	*ticks = ut + st;
	*start = sta;
	return 0;
}

static int read_machine(unsigned long long *busy, unsigned long long *total)
{
	unsigned long long v[10] = { 0 };
	FILE *f = fopen("/proc/stat", "r");
	int n;

	if (!f)
		return -1;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
	fclose(f);
	if (n < 8)
		return -1;
	*total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
	*busy = *total - v[3] - v[4];
	return 0;
}

static bool is_pg(struct cpu_sampler *c, const char *pid, const char *comm, int ppid)
{
	char path[300];
	struct stat sb;

	if (opt.pg_pid > 0)
		return atoi(pid) == opt.pg_pid || ppid == opt.pg_pid;
	/* no postmaster given: every "postgres*" process of the cluster user */
	if (strncmp(comm, "postgres", 8) != 0 || !c->have_pg_uid)
		return false;
	snprintf(path, sizeof(path), "/proc/%s", pid);
	return stat(path, &sb) == 0 && sb.st_uid == c->pg_uid;
}

/* cpu_sample takes one sample; with account, adds the ticks since the last
 * sample to the accumulators (the first call only sets the baseline). */
static void cpu_sample(struct cpu_sampler *c, bool account)
{
	unsigned long long ticks, start, busy, total;
	char comm[64], buf[32];
	struct dirent *d;
	struct tracked *t;
	DIR *dir;
	int ppid;

	c->n_cur = 0;
	if ((dir = opendir("/proc"))) {
		while ((d = readdir(dir)) && c->n_cur < MAX_TRACKED) {
			if (d->d_name[0] < '1' || d->d_name[0] > '9')
				continue;
			if (read_stat(d->d_name, comm, sizeof(comm), &ppid, &ticks, &start) != 0)
				continue;
			if (!is_pg(c, d->d_name, comm, ppid))
				continue;
			c->cur[c->n_cur++] = (struct tracked){ atoi(d->d_name), start, ticks };
		}
		closedir(dir);
	}
	for (int i = 0; account && i < c->n_cur; i++) {
		unsigned long long before = 0;

		for (int j = 0; j < c->n_prev; j++) {
			if (c->prev[j].pid == c->cur[i].pid && c->prev[j].start == c->cur[i].start) {
				before = c->prev[j].ticks;
				break;
			}
		}
		/* a process born since the last sample counts from zero */
		c->pg_acc += c->cur[i].ticks - before;
	}
	t = c->prev;
	c->prev = c->cur;
	c->cur = t;
	c->n_prev = c->n_cur;

	if (opt.agg_pid > 0) {
		snprintf(buf, sizeof(buf), "%d", (int)opt.agg_pid);
		if (read_stat(buf, NULL, 0, &ppid, &ticks, &start) == 0) {
			if (account)
				c->agg_acc += ticks - c->agg_prev;
			c->agg_prev = ticks;
		} else {
			c->agg_dead = 1;
		}
	}
	if (read_stat("self", NULL, 0, &ppid, &ticks, &start) == 0) {
		if (account)
			c->self_acc += ticks - c->self_prev;
		c->self_prev = ticks;
	}
	if (read_machine(&busy, &total) == 0) {
		if (account) {
			c->mach_busy_acc += busy - c->mach_busy_prev;
			c->mach_total_acc += total - c->mach_total_prev;
		}
		c->mach_busy_prev = busy;
		c->mach_total_prev = total;
	}
}

static int cpu_init(struct cpu_sampler *c)
{
	struct passwd *pw = getpwnam("spikehound");

	memset(c, 0, sizeof(*c));
	c->hz = sysconf(_SC_CLK_TCK);
	if (pw) {
		c->pg_uid = pw->pw_uid;
		c->have_pg_uid = true;
	}
	c->prev = calloc(MAX_TRACKED, sizeof(*c->prev));
	c->cur = calloc(MAX_TRACKED, sizeof(*c->cur));
	return c->prev && c->cur ? 0 : -ENOMEM;
}

static void cpu_fini(struct cpu_sampler *c)
{
	free(c->prev);
	free(c->cur);
}

/* pct converts accumulated ticks over secs to percent of one core. */
static double pct(const struct cpu_sampler *c, unsigned long long ticks, double secs)
{
	return secs > 0 ? 100.0 * (double)ticks / (double)c->hz / secs : 0;
}

/* ---- main -------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_ingest [options]\n"
		"\n"
		"Simulates --hosts agents sending realistic summaries to a running\n"
		"spikehound-aggregator as fast as its acks allow; prints summaries/s,\n"
		"rows/s, ack latency and the CPU use of the aggregator and PostgreSQL.\n"
		"\n"
		"  --url URL        aggregator data plane (default tcp://127.0.0.1:7470)\n"
		"  --hosts N        simulated hosts (default 2000)\n"
		"  --threads T      concurrent senders, one req0 socket each (default 64)\n"
		"  --batch B        summaries per request (default 1)\n"
		"  --seconds S      measured window (default 20)\n"
		"  --warmup S       seconds before measuring (default 3)\n"
		"  --seed N         fleet seed: the same seed gives the same hosts (default: random)\n"
		"  --agg-pid PID    aggregator process to account CPU for\n"
		"  --pg-pid PID     postmaster of its PostgreSQL (it and its children are\n"
		"                   accounted); default: all \"postgres*\" processes of user spikehound\n"
		"  --label NAME     name of this configuration in the RESULT line\n"
		"  --observe        send nothing: only sample CPU for --seconds\n"
		"  -v, --verbose    print a line per second\n"
		"  -h, --help\n"
		"\n"
		"The last line is machine-readable: RESULT key=value ...\n");
}

static int parse_args(int argc, char **argv)
{
	enum { O_URL = 256, O_HOSTS, O_THREADS, O_BATCH, O_SECONDS, O_WARMUP, O_SEED, O_AGG, O_PG,
	       O_LABEL, O_OBSERVE };
	static const struct option lo[] = {
		{ "url", required_argument, NULL, O_URL },
		{ "hosts", required_argument, NULL, O_HOSTS },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "batch", required_argument, NULL, O_BATCH },
		{ "seconds", required_argument, NULL, O_SECONDS },
		{ "warmup", required_argument, NULL, O_WARMUP },
		{ "seed", required_argument, NULL, O_SEED },
		{ "agg-pid", required_argument, NULL, O_AGG },
		{ "pg-pid", required_argument, NULL, O_PG },
		{ "label", required_argument, NULL, O_LABEL },
		{ "observe", no_argument, NULL, O_OBSERVE },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;

	opt.seed = (uint64_t)wall_ns() ^ ((uint64_t)getpid() << 32);
	while ((o = getopt_long(argc, argv, "vh", lo, NULL)) != -1) {
		switch (o) {
		case O_URL: opt.url = optarg; break;
		case O_HOSTS: opt.hosts = atoi(optarg); break;
		case O_THREADS: opt.threads = atoi(optarg); break;
		case O_BATCH: opt.batch = atoi(optarg); break;
		case O_SECONDS: opt.seconds = atoi(optarg); break;
		case O_WARMUP: opt.warmup = atoi(optarg); break;
		case O_SEED: opt.seed = strtoull(optarg, NULL, 0); break;
		case O_AGG: opt.agg_pid = (pid_t)atoi(optarg); break;
		case O_PG: opt.pg_pid = (pid_t)atoi(optarg); break;
		case O_LABEL: opt.label = optarg; break;
		case O_OBSERVE: opt.observe = true; break;
		case 'v': opt.verbose = true; break;
		case 'h': usage(stdout); exit(0);
		default: return -EINVAL;
		}
	}
	if (optind < argc || opt.hosts < 1 || opt.threads < 1 || opt.batch < 1 ||
	    opt.batch > 1000 || opt.seconds < 1 || opt.warmup < 0)
		return -EINVAL;
	if (opt.threads > opt.hosts)
		opt.threads = opt.hosts;
	if (!opt.seed)
		opt.seed = 1;
	return 0;
}

/* run_window samples CPU once a second for secs seconds; prints a line per
 * second when verbose (progress counted from the workers' tallies). */
static void run_window(struct cpu_sampler *c, int secs, struct worker *ws, int nw)
{
	int64_t t = mono_ns();
	uint64_t last = 0;

	for (int i = 0; i < secs; i++) {
		unsigned long long a0 = c->agg_acc, p0 = c->pg_acc;

		t += NS;
		sleep_until(t);
		cpu_sample(c, true);
		if (opt.verbose) {
			uint64_t stored = 0;

			for (int k = 0; k < nw; k++)
				stored += ws[k].t.stored; /* racy read, progress only */
			printf("  t=%2ds  %7" PRIu64 " summaries/s  aggregator %5.1f%%  postgres %5.1f%%\n",
			       i + 1, stored - last, pct(c, c->agg_acc - a0, 1),
			       pct(c, c->pg_acc - p0, 1));
			fflush(stdout);
			last = stored;
		}
	}
}

int main(int argc, char **argv)
{
	struct cpu_sampler cpu;
	struct worker *ws = NULL;
	struct host **hosts = NULL;
	struct tally sum = { 0 };
	uint64_t rng, seq0;
	int64_t now, t_start, t_end;
	double secs, agg_pct, pg_pct, self_pct, busy_pct, other_pct, agg_us = 0, pg_us = 0;
	int rv, status = 1, started = 0;

	if (parse_args(argc, argv) != 0) {
		usage(stderr);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (cpu_init(&cpu) != 0) {
		fprintf(stderr, "bench_ingest: out of memory\n");
		return 1;
	}

	if (opt.observe) {
		cpu_sample(&cpu, false);
		t_start = mono_ns();
		run_window(&cpu, opt.seconds, NULL, 0);
		secs = (double)(mono_ns() - t_start) / 1e9;
		goto report_cpu;
	}

	rng = opt.seed;
	make_stack_pool(&rng);
	now = wall_ns();
	/* seqs start at the current time in microseconds: a later run with the
	 * same --seed (same hosts and boots) continues above this one */
	seq0 = (uint64_t)(now / 1000);
	hosts = calloc((size_t)opt.hosts, sizeof(*hosts));
	ws = calloc((size_t)opt.threads, sizeof(*ws));
	if (!hosts || !ws)
		goto oom;
	for (int i = 0; i < opt.hosts; i++)
		if (!(hosts[i] = host_new(&rng, i, now, seq0)))
			goto oom;
	for (int i = 0; i < opt.threads; i++) {
		struct worker *w = &ws[i];

		w->index = i;
		w->rng = opt.seed * 0x9E3779B97F4A7C15ULL + (uint64_t)i + 1;
		w->hosts = calloc((size_t)opt.hosts / (size_t)opt.threads + 1, sizeof(*w->hosts));
		if (!w->hosts || worker_alloc(w) != 0)
			goto oom;
		for (int h = i; h < opt.hosts; h += opt.threads)
			w->hosts[w->n_hosts++] = hosts[h];
		if ((rv = nng_req0_open(&w->sock)) != 0) {
			fprintf(stderr, "bench_ingest: could not open socket: %s\n", nng_strerror(rv));
			goto cleanup;
		}
		nng_socket_set_ms(w->sock, NNG_OPT_RECVTIMEO, 30000);
		nng_socket_set_ms(w->sock, NNG_OPT_SENDTIMEO, 30000);
		nng_socket_set_ms(w->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
		nng_socket_set_size(w->sock, NNG_OPT_RECVMAXSZ, 4 << 20);
		if ((rv = nng_dial(w->sock, opt.url, NULL, 0)) != 0) {
			fprintf(stderr, "bench_ingest: could not dial \"%s\": %s\n", opt.url,
				nng_strerror(rv));
			goto cleanup;
		}
	}
	printf("bench_ingest %s: %d hosts, %d threads, batch %d, %d s (+%d s warm-up), %s\n",
	       opt.label, opt.hosts, opt.threads, opt.batch, opt.seconds, opt.warmup, opt.url);

	atomic_store(&phase, PH_WARMUP);
	for (; started < opt.threads; started++) {
		if (pthread_create(&ws[started].tid, NULL, worker_main, &ws[started]) != 0) {
			fprintf(stderr, "bench_ingest: could not start thread %d\n", started);
			atomic_store(&phase, PH_DONE);
			goto cleanup;
		}
	}
	sleep_until(mono_ns() + (int64_t)opt.warmup * NS);
	cpu_sample(&cpu, false);
	t_start = mono_ns();
	atomic_store(&phase, PH_MEASURE);
	run_window(&cpu, opt.seconds, ws, opt.threads);
	atomic_store(&phase, PH_DONE);
	t_end = mono_ns();
	secs = (double)(t_end - t_start) / 1e9;
	for (int i = 0; i < started; i++)
		pthread_join(ws[i].tid, NULL);
	started = 0;

	for (int i = 0; i < opt.threads; i++) {
		struct tally *t = &ws[i].t;

		sum.requests += t->requests;
		sum.acks_ok += t->acks_ok;
		sum.stored += t->stored;
		sum.not_stored += t->not_stored;
		sum.rejected_msgs += t->rejected_msgs;
		sum.rejected_reqs += t->rejected_reqs;
		sum.retries += t->retries;
		sum.rows += t->rows;
		sum.send_errors += t->send_errors;
		sum.recv_errors += t->recv_errors;
		sum.bytes += t->bytes;
		for (int b = 0; b < LAT_BUCKETS; b++)
			sum.lat[b] += t->lat[b];
		if (t->lat_max_us > sum.lat_max_us)
			sum.lat_max_us = t->lat_max_us;
		if (ws[i].fatal)
			goto oom;
	}
	printf("  requests %" PRIu64 " (%.0f/s, %.1f KiB each), acks OK %" PRIu64 ", RETRY %" PRIu64
	       ", REJECTED %" PRIu64 ", send/recv errors %" PRIu64 "/%" PRIu64 "\n",
	       sum.requests, (double)sum.requests / secs,
	       sum.requests ? (double)sum.bytes / (double)sum.requests / 1024 : 0, sum.acks_ok,
	       sum.retries, sum.rejected_reqs, sum.send_errors, sum.recv_errors);
	printf("  messages stored %" PRIu64 ", not stored %" PRIu64 ", rejected %" PRIu64 "\n",
	       sum.stored, sum.not_stored, sum.rejected_msgs);
	printf("  throughput: %.0f summaries/s, %.0f rows/s (summary + process rows)\n",
	       (double)sum.stored / secs, (double)sum.rows / secs);
	printf("  ack latency ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n",
	       lat_quantile_ms(sum.lat, 0.5), lat_quantile_ms(sum.lat, 0.9),
	       lat_quantile_ms(sum.lat, 0.99), (double)sum.lat_max_us / 1000);
	status = (sum.rejected_msgs || sum.rejected_reqs || !sum.acks_ok) ? 1 : 0;
	if (status)
		fprintf(stderr, "bench_ingest: %s\n",
			sum.acks_ok ? "the aggregator rejected requests or messages" : "no acks");

report_cpu:
	agg_pct = pct(&cpu, cpu.agg_acc, secs);
	pg_pct = pct(&cpu, cpu.pg_acc, secs);
	self_pct = pct(&cpu, cpu.self_acc, secs);
	busy_pct = cpu.mach_total_acc ? 100.0 * (double)cpu.mach_busy_acc /
						(double)cpu.mach_total_acc * (double)sysconf(_SC_NPROCESSORS_ONLN)
				      : 0;
	other_pct = busy_pct - agg_pct - pg_pct - self_pct;
	printf("  cpu (%% of one core, %ld cores): aggregator %.0f%%, postgres %.0f%%, bench %.0f%%,"
	       " other %.0f%%, machine busy %.0f%%\n",
	       sysconf(_SC_NPROCESSORS_ONLN), agg_pct, pg_pct, self_pct,
	       other_pct > 0 ? other_pct : 0, busy_pct);
	if (!opt.observe && sum.stored) {
		/* CPU per stored summary: holds up better than the rate when
		 * other work shares the machine */
		agg_us = agg_pct * 1e4 / ((double)sum.stored / secs);
		pg_us = pg_pct * 1e4 / ((double)sum.stored / secs);
		printf("  cpu per summary: aggregator %.0f us + postgres %.0f us = %.0f us"
		       " (2 cores' worth would carry %.0f summaries/s)\n",
		       agg_us, pg_us, agg_us + pg_us,
		       agg_us + pg_us > 0 ? 2e6 / (agg_us + pg_us) : 0);
	}
	if (cpu.agg_dead)
		fprintf(stderr, "bench_ingest: aggregator pid %d went away\n", (int)opt.agg_pid);
	if (opt.observe)
		status = 0;
	printf("RESULT label=%s summaries_s=%.0f rows_s=%.0f requests_s=%.0f p50_ms=%.1f p90_ms=%.1f"
	       " p99_ms=%.1f max_ms=%.1f agg_cpu=%.0f pg_cpu=%.0f bench_cpu=%.0f other_cpu=%.0f busy_cpu=%.0f"
	       " agg_us=%.0f pg_us=%.0f retries=%" PRIu64 " rejected=%" PRIu64 "\n",
	       opt.label[0] ? opt.label : "-", (double)sum.stored / secs, (double)sum.rows / secs,
	       (double)sum.requests / secs, lat_quantile_ms(sum.lat, 0.5),
	       lat_quantile_ms(sum.lat, 0.9), lat_quantile_ms(sum.lat, 0.99),
	       (double)sum.lat_max_us / 1000, agg_pct, pg_pct, self_pct,
	       other_pct > 0 ? other_pct : 0, busy_pct, agg_us, pg_us, sum.retries,
	       sum.rejected_msgs + sum.rejected_reqs);
	goto cleanup;
oom:
	fprintf(stderr, "bench_ingest: out of memory\n");
	status = 1;
cleanup:
	atomic_store(&phase, PH_DONE);
	for (int i = 0; ws && i < opt.threads; i++)
		nng_close(ws[i].sock);
	for (int i = 0; i < started; i++)
		pthread_join(ws[i].tid, NULL);
	for (int i = 0; ws && i < opt.threads; i++)
		worker_fini(&ws[i]);
	for (int i = 0; hosts && i < opt.hosts; i++)
		free(hosts[i]);
	free(hosts);
	free(ws);
	for (int i = 0; i < STACK_POOL; i++)
		free((void *)stack_pool[i]);
	cpu_fini(&cpu);
	return status;
}
