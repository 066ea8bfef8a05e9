/* gen.c: what a simulated agent sends for one summary interval.
 *
 * Times: the simulator works in true time; a host stamps everything with
 * its own clock, true time plus its skew. An interval [t0, t1) is made in
 * this order: the host's jobs run (cron processes start and exit, a
 * daemon's periodic work happens, and spiking jobs inject spikes), then
 * the other spikes of the interval are drawn (baseline noise per kind,
 * rate and regression causes, burst firings), then every spike becomes a
 * SpikeEvent, sorted by time, and last comes the Summary, as the real
 * agent sends its summary after the events it detected meanwhile.
 *
 * Evidence follows the real detectors (node-agent/det_*.c): roles
 * "holder" (mmap_lock_wait), "ran_instead" and "waker" (runq, syscall),
 * "shrinker" (reclaim), "softirq_handler" (softirq), "stall_stack"
 * (cpu_stall); accounting events name the process as the victim. */
#include "gen.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timeutil.h"

#define NS_H (3600 * SH_NS_PER_SEC)
#define SNAPSHOT_EVERY 30 /* as the real agent's default */
#define HIST_SLOTS 32	  /* log2 microsecond buckets, as det_runq.h */
#define MAX_INTERVAL_NS NS_H
#define SALT_BURST 0xb0b5ULL

struct spike {
	int kind;
	int64_t ts; /* true time */
	int64_t dur;
	int cause;	 /* -1: noise */
	int32_t culprit; /* the cause's process, 0: none */
	bool named;	 /* the evidence names it */
	uint32_t firing; /* burst: firing number (1-based) */
};

struct fsim_gen {
	struct fsim_fleet *f;
	struct fsim_truth *truth;
	struct fsim_gen_opts o;
	struct fsim_gen_stats st;
	struct spike *spikes;
	size_t n_spikes, cap_spikes;
	int32_t *started, *exited; /* pids changed within the interval */
	size_t n_started, n_exited, cap_started, cap_exited;
};

/* Role profiles: metric baselines and what the CPU samples look like. */
struct role_prof {
	const char *role;
	double user, sys, iowait, softirq; /* % of all CPUs */
	double ctxt_cpu;		   /* context switches per CPU-second */
	double netrx;			   /* NET_RX softirqs per second */
	double mem_used, cached;	   /* shares of memory */
	const char *stacks[4];		   /* folded: comm;outer;...;inner */
	double stack_w[4];
};

static const struct role_prof profs[] = {
	{"web",
	 32,
	 9,
	 0.4,
	 3.5,
	 9000,
	 60000,
	 0.35,
	 0.35,
	 {"nginx;__libc_start_main;main;ngx_master_process_cycle;ngx_start_worker_processes;"
	  "ngx_spawn_process;ngx_worker_process_cycle;ngx_process_events_and_timers;"
	  "ngx_epoll_process_events;ngx_http_wait_request_handler;ngx_http_process_request_line;"
	  "ngx_http_process_request;ngx_http_handler;ngx_http_core_run_phases;"
	  "ngx_http_proxy_handler;ngx_http_upstream_init",
	  "nginx;__libc_start_main;main;ngx_master_process_cycle;ngx_start_worker_processes;"
	  "ngx_spawn_process;ngx_worker_process_cycle;ngx_process_events_and_timers;"
	  "ngx_epoll_process_events;__GI_epoll_wait;entry_SYSCALL_64_after_hwframe;do_syscall_64;"
	  "__x64_sys_epoll_wait;do_epoll_wait;ep_poll;schedule_hrtimeout_range",
	  "php-fpm8.2;__libc_start_main;main;php_execute_script;zend_execute_scripts;"
	  "zend_execute;execute_ex;ZEND_DO_FCALL_SPEC_RETVAL_USED_HANDLER;zif_mysqli_query;"
	  "mysqlnd_query",
	  "nginx;__libc_start_main;main;ngx_master_process_cycle;ngx_worker_process_cycle;"
	  "ngx_process_events_and_timers;ngx_event_process_posted;ngx_ssl_handshake_handler;"
	  "SSL_do_handshake;ossl_statem_accept;tls_process_client_key_exchange;"
	  "EVP_PKEY_derive;ecx_derive;x25519"},
	 {40, 25, 25, 10}},
	{"db",
	 24,
	 11,
	 4.0,
	 1.5,
	 7000,
	 15000,
	 0.30,
	 0.60,
	 {"postgres;__libc_start_main;main;PostmasterMain;ServerLoop;BackendStartup;"
	  "PostgresMain;exec_simple_query;PortalRun;standard_ExecutorRun;ExecSeqScan;"
	  "heapgettup_pagemode;heapgetpage",
	  "postgres;__libc_start_main;main;PostmasterMain;ServerLoop;BackendStartup;"
	  "PostgresMain;exec_execute_message;PortalRun;ExecModifyTable;ExecInsert;"
	  "heap_insert;XLogInsert;XLogInsertRecord",
	  "postgres;__libc_start_main;main;PostmasterMain;ServerLoop;BackendStartup;"
	  "PostgresMain;ReadCommand;SocketBackend;pq_getbyte;secure_read;WaitEventSetWait;"
	  "epoll_wait;entry_SYSCALL_64_after_hwframe;do_syscall_64;__x64_sys_epoll_wait",
	  "postgres;__libc_start_main;main;PostmasterMain;StartChildProcess;AuxiliaryProcessMain;"
	  "CheckpointerMain;CheckPointGuts;CheckPointBuffers;BufferSync;FlushBuffer;"
	  "smgrwrite;mdwrite;FileWrite;pwrite64"},
	 {45, 25, 20, 10}},
	{"cache",
	 14,
	 12,
	 0.1,
	 5.0,
	 12000,
	 120000,
	 0.55,
	 0.10,
	 {"redis-server;__libc_start_main;main;aeMain;aeProcessEvents;readQueryFromClient;"
	  "processCommand;call;getCommand;lookupKeyReadOrReply;dictFind",
	  "redis-server;__libc_start_main;main;aeMain;aeProcessEvents;beforeSleep;"
	  "handleClientsWithPendingWritesUsingThreads;writeToClient;connSocketWrite;__write;"
	  "entry_SYSCALL_64_after_hwframe;do_syscall_64;ksys_write;sock_write_iter;tcp_sendmsg",
	  "memcached;start_thread;worker_libevent;event_base_loop;event_process_active;"
	  "event_handler;drive_machine;process_command_ascii;process_get_command;item_get",
	  "redis-server;__libc_start_main;main;aeMain;aeProcessEvents;serverCron;"
	  "databasesCron;activeExpireCycle;activeExpireCycleTryExpire"},
	 {45, 25, 20, 10}},
	{"batch",
	 68,
	 5,
	 1.0,
	 0.5,
	 3000,
	 5000,
	 0.70,
	 0.15,
	 {"java;start_thread;thread_native_entry;JavaThread::thread_main_inner;"
	  "JavaCalls::call_helper;Interpreter;com/acme/batch/Worker.run;"
	  "com/acme/batch/Job.execute;com/acme/batch/Transform.apply;java/util/HashMap.putVal",
	  "java;start_thread;thread_native_entry;GangWorker::loop;G1ParTask::work;"
	  "G1ParEvacuateFollowersClosure::do_void;G1ParScanThreadState::trim_queue",
	  "java;start_thread;thread_native_entry;JavaThread::thread_main_inner;"
	  "JavaCalls::call_helper;Interpreter;com/acme/batch/Worker.run;"
	  "com/fasterxml/jackson/databind/ObjectMapper.readValue",
	  "python3;__libc_start_main;Py_BytesMain;Py_RunMain;_PyEval_EvalFrameDefault;"
	  "time_sleep;clock_nanosleep;entry_SYSCALL_64_after_hwframe;do_syscall_64"},
	 {50, 25, 20, 5}},
};

static const struct role_prof generic_prof = {
	NULL, 25, 8, 1.0, 2.0, 6000, 20000, 0.45, 0.30, {NULL, NULL, NULL, NULL}, {0, 0, 0, 0},
};

/* Latency histograms sent with each summary: kind, waits per CPU-second,
 * median (us), sigma of the log. */
static const struct {
	int kind;
	double per_cpu_s, median_us, sigma;
} hist_profs[] = {
	{FSIM_K_RUNQ, 600, 14, 1.3},   {FSIM_K_SYSCALL, 40, 5, 1.6},
	{FSIM_K_MMAP_LOCK, 3, 9, 1.8}, {FSIM_K_RECLAIM, 0.02, 300, 1.2},
	{FSIM_K_SOFTIRQ, 120, 7, 1.1},
};
#define N_HIST (sizeof(hist_profs) / sizeof(hist_profs[0]))

/* Baseline spike durations: median (ms), sigma. */
static const struct {
	double median_ms, sigma;
} noise_dur[FSIM_NKINDS] = {
	[FSIM_K_MMAP_LOCK] = {45, 0.7},	    [FSIM_K_SYSCALL] = {30, 0.7},
	[FSIM_K_RUNQ] = {18, 0.6},	    [FSIM_K_RECLAIM] = {40, 0.8},
	[FSIM_K_SOFTIRQ] = {6, 0.5},	    [FSIM_K_CPU_STALL] = {12, 0.6},
	[FSIM_K_ACCOUNTING] = {20000, 0.4}, [FSIM_K_PROBE] = {10, 0.5},
};

/* Kernel stacks, innermost first (as Task.kernel_stack). */
#define KS(a) (char **)(a), (sizeof(a) / sizeof(a[0]))
static const char *const ks_mmap_victim[] = {
	"rwsem_down_read_slowpath", "down_read",      "lock_mm_and_find_vma",
	"do_user_addr_fault",	    "exc_page_fault", "asm_exc_page_fault",
};
static const char *const ks_smaps_holder[] = {
	"smaps_pte_range", "walk_pgd_range",	"__walk_page_range",
	"walk_page_vma",   "smap_gather_stats", "show_smap",
	"seq_read_iter",   "seq_read",		"vfs_read",
	"ksys_read",	   "do_syscall_64",	"entry_SYSCALL_64_after_hwframe",
};
static const char *const ks_munmap_holder[] = {
	"unmap_page_range", "unmap_vmas",	"unmap_region",	 "do_vmi_align_munmap",
	"__vm_munmap",	    "__x64_sys_munmap", "do_syscall_64", "entry_SYSCALL_64_after_hwframe",
};
static const char *const ks_waker[] = {
	"try_to_wake_up",
	"wake_up_q",
	"futex_wake",
	"do_futex",
	"__x64_sys_futex",
	"do_syscall_64",
	"entry_SYSCALL_64_after_hwframe",
};
static const char *const ks_syscall_mmap[] = {
	"__schedule",
	"schedule",
	"rwsem_down_write_slowpath",
	"down_write_killable",
	"vm_mmap_pgoff",
	"ksys_mmap_pgoff",
	"do_syscall_64",
	"entry_SYSCALL_64_after_hwframe",
};
static const char *const ks_syscall_open[] = {
	"__schedule",	      "schedule",
	"io_schedule",	      "folio_wait_bit_common",
	"filemap_read_folio", "do_read_cache_folio",
	"ext4_find_entry",    "ext4_lookup",
	"__lookup_slow",      "walk_component",
	"path_openat",	      "do_filp_open",
	"do_sys_openat2",     "__x64_sys_openat",
	"do_syscall_64",
};
static const char *const ks_reclaim_victim[] = {
	"shrink_node",	   "do_try_to_free_pages", "try_to_free_pages", "__alloc_pages_slowpath",
	"__alloc_pages",   "alloc_pages_mpol",	   "vma_alloc_folio",	"do_anonymous_page",
	"handle_mm_fault", "do_user_addr_fault",   "exc_page_fault",
};
static const char *const ks_shrinker[] = {
	"super_cache_scan",
	"do_shrink_slab",
	"shrink_slab",
	"shrink_node",
};
static const char *const ks_net_rx[] = {
	"net_rx_action", "__do_softirq", "irq_exit_rcu", "common_interrupt", "asm_common_interrupt",
};
static const char *const ks_stall[] = {
	"native_queued_spin_lock_slowpath",
	"_raw_spin_lock_irqsave",
	"free_pcppages_bulk",
	"drain_pages_zone",
	"drain_pages",
	"drain_local_pages",
	"__flush_smp_call_function_queue",
	"__sysvec_call_function",
	"sysvec_call_function",
};
static const char *const ks_ss[] = {
	"inet_diag_dump_icsk",
	"inet_diag_dump",
	"__inet_diag_dump",
	"netlink_dump",
	"netlink_recvmsg",
	"sock_recvmsg",
	"____sys_recvmsg",
	"___sys_recvmsg",
	"__sys_recvmsg",
	"do_syscall_64",
	"entry_SYSCALL_64_after_hwframe",
};

static const char *const syscall_names[] = {"mmap",	  "munmap",  "openat",
					    "newfstatat", "madvise", "brk"};

static const struct role_prof *prof_of(const struct fsim_fleet *f, const struct fsim_host *h)
{
	const char *role = f->sc->roles.names[h->role];

	for (size_t i = 0; i < sizeof(profs) / sizeof(profs[0]); i++)
		if (strcmp(profs[i].role, role) == 0)
			return &profs[i];
	return &generic_prof;
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static double clampd(double v, double lo, double hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

int fsim_gen_new(struct fsim_gen **out, struct fsim_fleet *f, const struct fsim_gen_opts *o,
		 struct fsim_truth *truth)
{
	struct fsim_gen *g = calloc(1, sizeof(*g));

	*out = NULL;
	if (!g)
		return -ENOMEM;
	g->f = f;
	g->truth = truth;
	g->o = *o;
	*out = g;
	return 0;
}

void fsim_gen_free(struct fsim_gen *g)
{
	if (!g)
		return;
	free(g->spikes);
	free(g->started);
	free(g->exited);
	free(g);
}

const struct fsim_gen_stats *fsim_gen_stats(const struct fsim_gen *g)
{
	return &g->st;
}

void fsim_gen_set_end(struct fsim_gen *g, int64_t end_ns)
{
	if (end_ns < g->o.end_ns)
		g->o.end_ns = end_ns;
	if (g->o.backfill_end_ns > g->o.end_ns)
		g->o.backfill_end_ns = g->o.end_ns;
}

int64_t fsim_gen_end(const struct fsim_gen *g)
{
	return g->o.end_ns;
}

bool fsim_gen_done(const struct fsim_gen *g, const struct fsim_host *h)
{
	return h->cursor_ns >= g->o.end_ns;
}

bool fsim_gen_due(const struct fsim_gen *g, const struct fsim_host *h, int64_t now_ns)
{
	return h->cursor_ns < g->o.end_ns && h->cursor_ns <= now_ns;
}

/* interval_end returns where h's next interval ends: on the host's own
 * grid of the interval length, no shorter than a quarter interval, cut at
 * the end of the backfill or of the run. */
static int64_t interval_end(const struct fsim_gen *g, const struct fsim_host *h, int64_t *len)
{
	bool bf = h->cursor_ns < g->o.backfill_end_ns;
	int64_t iv = bf ? g->o.backfill_interval_ns : g->o.interval_ns;
	int64_t limit = bf ? g->o.backfill_end_ns : g->o.end_ns;
	int64_t phase = (int64_t)((double)h->phase_ns / 1e9 * (double)iv);
	int64_t b = phase + (floor_div(h->cursor_ns - phase, iv) + 1) * iv;

	if (b - h->cursor_ns < iv / 4)
		b += iv;
	if (b - h->cursor_ns > MAX_INTERVAL_NS)
		b = h->cursor_ns + MAX_INTERVAL_NS;
	if (b > limit)
		b = limit;
	*len = iv;
	return b;
}

static int add_spike(struct fsim_gen *g, int kind, int64_t ts, int64_t dur, int cause,
		     int32_t culprit, bool named, uint32_t firing)
{
	struct spike *s;

	if (g->n_spikes == g->cap_spikes) {
		size_t cap = g->cap_spikes ? 2 * g->cap_spikes : 64;
		struct spike *v = realloc(g->spikes, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		g->spikes = v;
		g->cap_spikes = cap;
	}
	if (dur < 1000)
		dur = 1000;
	if (dur > MAX_INTERVAL_NS)
		dur = MAX_INTERVAL_NS;
	s = &g->spikes[g->n_spikes++];
	s->kind = kind;
	s->ts = ts;
	s->dur = dur;
	s->cause = cause;
	s->culprit = culprit;
	s->named = named;
	s->firing = firing;
	return 0;
}

static int64_t cause_duration(struct fsim_host *h, const struct fsim_cause *c)
{
	return (int64_t)fsim_rng_lognormal(&h->rng, (double)c->duration_ns, c->duration_sigma);
}

static int push_pid(int32_t **v, size_t *n, size_t *cap, int32_t pid)
{
	if (*n == *cap) {
		size_t nc = *cap ? 2 * *cap : 16;
		int32_t *nv = realloc(*v, nc * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = pid;
	return 0;
}

static void exit_proc(struct fsim_gen *g, struct fsim_host *h, int32_t pid, int64_t t)
{
	struct fsim_proc *p = fsim_host_proc(h, pid);

	if (!p || p->exit_ns)
		return;
	p->exit_ns = t + h->skew_ns;
	if (p->exit_ns <= p->start_ns)
		p->exit_ns = p->start_ns + 1000;
	if (push_pid(&g->exited, &g->n_exited, &g->cap_exited, pid) != 0)
		p->exit_ns = 0; /* could not report it: keep it alive */
}

/* run_jobs runs h's jobs over [t0, t1): cron processes start and exit,
 * spiking occurrences inject spikes. */
static int run_jobs(struct fsim_gen *g, struct fsim_host *h, int64_t t1)
{
	const struct fsim_scenario *sc = g->f->sc;
	struct fsim_proc *cron = fsim_host_find_comm(h, "cron");
	int32_t cron_pid = cron ? cron->pid : 1;

	for (size_t i = 0; i < h->n_jobs; i++) {
		struct fsim_job *j = &h->jobs[i];

		for (;;) {
			int64_t exit_at = (j->lifetime_ns && j->pid) ? j->exit_ns : INT64_MAX;

			if (exit_at < t1 && exit_at <= j->next_ns) {
				exit_proc(g, h, j->pid, exit_at);
				j->pid = 0;
				continue;
			}
			if (j->next_ns >= t1)
				break;
			int64_t t = j->next_ns;
			int32_t pid = j->pid;

			if (j->lifetime_ns) {
				struct fsim_proc *p;

				if (j->pid) /* still running (jitter): it ends now */
					exit_proc(g, h, j->pid, t);
				p = fsim_host_add_proc(h, j->def, cron_pid, t);
				if (!p ||
				    push_pid(&g->started, &g->n_started, &g->cap_started, p->pid))
					return -ENOMEM;
				pid = j->pid = p->pid;
				j->exit_ns = t + (int64_t)((double)j->lifetime_ns *
							   fsim_rng_range(&h->rng, 0.7, 1.3));
			}
			j->k++;
			j->next_ns = j->phase_ns + j->k * j->period_ns;
			if (j->jitter_ns)
				j->next_ns += (int64_t)fsim_rng_range(
					&h->rng, -(double)j->jitter_ns, (double)j->jitter_ns);
			if (j->lifetime_ns && j->exit_ns >= j->next_ns)
				j->exit_ns = j->next_ns - SH_NS_PER_MS;
			if (j->spiking && j->cause >= 0) {
				const struct fsim_cause *c = &sc->causes[j->cause];
				int64_t off =
					c->offset_ns ? (int64_t)fsim_rng_range(&h->rng, 0,
									       (double)c->offset_ns)
						     : 0;
				bool named = fsim_rng_unit(&h->rng) < c->evidence;

				if (j->lifetime_ns && t + off >= j->exit_ns)
					off = (j->exit_ns - t) / 2;
				if (add_spike(g, c->kind, t + off, cause_duration(h, c), j->cause,
					      pid, named, 0) != 0)
					return -ENOMEM;
			}
		}
	}
	return 0;
}

/* draw_spikes draws the interval's other spikes: noise, rate and
 * regression causes, burst firings. */
static int draw_spikes(struct fsim_gen *g, struct fsim_host *h, int64_t t1)
{
	struct fsim_fleet *f = g->f;
	const struct fsim_scenario *sc = f->sc;
	int rv = 0;

	for (int k = 0; k < FSIM_NKINDS && rv == 0; k++) {
		while (h->noise_next[k] < t1 && rv == 0) {
			int64_t dur = (int64_t)(fsim_rng_lognormal(&h->rng, noise_dur[k].median_ms,
								   noise_dur[k].sigma) *
						1e6);

			rv = add_spike(g, k, h->noise_next[k], dur, -1, 0, false, 0);
			h->noise_next[k] +=
				1 + (int64_t)fsim_rng_exp(&h->rng, 3600e9 / f->noise_weight[k]);
		}
	}
	for (size_t ci = 0; ci < sc->n_causes && rv == 0; ci++) {
		const struct fsim_cause *c = &sc->causes[ci];
		struct fsim_hcause *hc = &h->hc[ci];

		if (!hc->member)
			continue;
		if (c->type == FSIM_RATE || c->type == FSIM_REGRESSION) {
			double rate = c->type == FSIM_RATE
					      ? c->rate
					      : (c->rate_factor - 1) * f->noise_weight[c->kind];

			while (hc->next_ns < t1 && rv == 0) {
				struct fsim_proc *p =
					c->sel_process ? fsim_host_find_comm(h, c->sel_process)
						       : NULL;

				rv = add_spike(g, c->kind, hc->next_ns, cause_duration(h, c),
					       (int)ci, p ? p->pid : 0, p != NULL, 0);
				hc->next_ns += 1 + (int64_t)fsim_rng_exp(&h->rng, 3600e9 / rate);
			}
		} else if (c->type == FSIM_BURST) {
			struct fsim_burst_firings *b = &f->bursts[ci];

			if ((rv = fsim_fleet_firings_until(f, ci, t1)) != 0)
				break;
			for (; hc->firing < b->n && b->t[hc->firing] < t1 && rv == 0;
			     hc->firing++) {
				uint64_t hh = fsim_hash(f->seed ^ (SALT_BURST + ci),
							((uint64_t)hc->firing << 32) | h->idx);
				double off;

				if (fsim_hash_unit(hh) >= c->fraction)
					continue;
				off = (2 * fsim_hash_unit(fsim_hash(hh, 1)) - 1) *
				      (double)c->spread_ns;
				rv = add_spike(g, c->kind, b->t[hc->firing] + (int64_t)off,
					       cause_duration(h, c), (int)ci, 0, false,
					       (uint32_t)hc->firing + 1);
			}
		}
	}
	return rv;
}

static int spike_cmp(const void *a, const void *b)
{
	const struct spike *x = a, *y = b;

	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	return x->kind - y->kind;
}

/* ---- events ---- */

/* struct evb holds one SpikeEvent and the storage it points into. */
struct evb {
	Spikehound__SpikeEvent ev;
	Spikehound__Task victim, culprits[4];
	Spikehound__Task *culprit_ptrs[4];
	Spikehound__SpikeEvent__AttrsEntry attrs[12];
	Spikehound__SpikeEvent__AttrsEntry *attr_ptrs[12];
	Spikehound__FoldedStack ws[2];
	Spikehound__FoldedStack *ws_ptrs[2];
	char text[8192];
	size_t used;
};

static char *evb_str(struct evb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static char *evb_str(struct evb *b, const char *fmt, ...)
{
	char *s = b->text + b->used;
	size_t room = sizeof(b->text) - b->used;
	va_list ap;
	int n;

	if (room < 2)
		return (char *)"";
	va_start(ap, fmt);
	n = vsnprintf(s, room, fmt, ap);
	va_end(ap);
	if (n < 0)
		return (char *)"";
	b->used += (size_t)n + 1 < room ? (size_t)n + 1 : room;
	return s;
}

static void evb_attr(struct evb *b, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void evb_attr(struct evb *b, const char *key, const char *fmt, ...)
{
	Spikehound__SpikeEvent__AttrsEntry *a;
	char val[512];
	va_list ap;

	if (b->ev.n_attrs >= 12)
		return;
	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	a = &b->attrs[b->ev.n_attrs];
	spikehound__spike_event__attrs_entry__init(a);
	a->key = (char *)key;
	a->value = evb_str(b, "%s", val);
	b->attr_ptrs[b->ev.n_attrs++] = a;
}

static void task_of(Spikehound__Task *t, const struct fsim_proc *p, struct fsim_host *h,
		    const char *role)
{
	spikehound__task__init(t);
	t->pid = p->pid;
	t->tid = p->def->threads > 1
			 ? p->pid + 1 + (int32_t)fsim_rng_below(&h->rng, p->def->threads)
			 : p->pid;
	t->comm = (char *)p->def->comm;
	t->cgroup = (char *)p->def->cgroup;
	t->role = (char *)role;
}

static Spikehound__Task *evb_culprit(struct evb *b, const struct fsim_proc *p, struct fsim_host *h,
				     const char *role, char **ks, size_t nks, int64_t on_cpu)
{
	Spikehound__Task *t;

	if (b->ev.n_culprits >= 4)
		return NULL;
	t = &b->culprits[b->ev.n_culprits];
	task_of(t, p, h, role);
	t->kernel_stack = ks;
	t->n_kernel_stack = nks;
	t->on_cpu_ns = (uint64_t)(on_cpu > 0 ? on_cpu : 0);
	b->culprit_ptrs[b->ev.n_culprits++] = t;
	return t;
}

/* pseudo_culprit adds a culprit that is not a process (a shrinker, a
 * softirq vector) running in pid's context. */
static void pseudo_culprit(struct evb *b, const char *comm, int32_t pid, const char *role,
			   char **ks, size_t nks, int64_t on_cpu)
{
	Spikehound__Task *t;

	if (b->ev.n_culprits >= 4)
		return;
	t = &b->culprits[b->ev.n_culprits];
	spikehound__task__init(t);
	t->pid = pid;
	t->tid = pid;
	t->comm = (char *)comm;
	t->cgroup = (char *)"";
	t->role = (char *)role;
	t->kernel_stack = ks;
	t->n_kernel_stack = nks;
	t->on_cpu_ns = (uint64_t)(on_cpu > 0 ? on_cpu : 0);
	b->culprit_ptrs[b->ev.n_culprits++] = t;
}

/* pick_proc returns a random live user-space process other than not_pid,
 * the main one more often than others; NULL when there is none. */
static struct fsim_proc *pick_proc(struct fsim_host *h, int32_t not_pid)
{
	struct fsim_proc *p;

	if (h->main_pid && h->main_pid != not_pid && fsim_rng_unit(&h->rng) < 0.4) {
		p = fsim_host_proc(h, h->main_pid);
		if (p && !p->exit_ns)
			return p;
	}
	for (int tries = 0; tries < 16 && h->n_procs; tries++) {
		p = &h->procs[fsim_rng_below(&h->rng, h->n_procs)];
		if (!p->exit_ns && p->pid != not_pid && p->def->exe[0])
			return p;
	}
	for (size_t i = 0; i < h->n_procs; i++)
		if (!h->procs[i].exit_ns && h->procs[i].pid != not_pid && h->procs[i].def->exe[0])
			return &h->procs[i];
	return NULL;
}

static struct fsim_proc *victim_for(struct fsim_host *h, const struct fsim_cause *c,
				    int32_t not_pid)
{
	struct fsim_proc *p = NULL;

	if (c && c->victim)
		p = fsim_host_find_comm(h, c->victim);
	if (!p && c && h->main_pid != not_pid)
		p = fsim_host_proc(h, h->main_pid);
	if (p && (p->exit_ns || p->pid == not_pid))
		p = NULL;
	return p ? p : pick_proc(h, not_pid);
}

/* fill_event builds the SpikeEvent of spike s into b. */
static void fill_event(struct fsim_gen *g, struct fsim_host *h, const struct spike *s,
		       struct evb *b)
{
	const struct fsim_scenario *sc = g->f->sc;
	const struct fsim_cause *c = s->cause >= 0 ? &sc->causes[s->cause] : NULL;
	struct fsim_proc *cp = s->culprit ? fsim_host_proc(h, s->culprit) : NULL;
	struct fsim_proc *named = s->named ? cp : NULL, *victim, *other;
	Spikehound__SpikeEvent *ev = &b->ev;
	double ms = (double)s->dur / 1e6;
	const char *detail = c && c->detail ? c->detail : NULL;

	spikehound__spike_event__init(ev);
	ev->kind = (char *)fsim_kind_names[s->kind];
	ev->start_ns = s->ts + h->skew_ns;
	ev->duration_ns = s->dur;
	ev->cpu = (int32_t)fsim_rng_below(&h->rng, h->cpus);
	ev->culprits = b->culprit_ptrs;
	ev->attrs = b->attr_ptrs;
	victim = victim_for(h, c, cp ? cp->pid : 0);
	if (s->kind == FSIM_K_ACCOUNTING || s->kind == FSIM_K_RECLAIM ||
	    s->kind == FSIM_K_SOFTIRQ) {
		/* no process culprit in these detectors: the process is the victim */
		if (named)
			victim = named;
	}
	if (!victim)
		victim = cp;
	if (victim) {
		task_of(&b->victim, victim, h, s->kind == FSIM_K_RUNQ ? "" : "victim");
		ev->victim = &b->victim;
	}
	/* other: evidence that does not name the cause's process (noise, or
	 * the cause's process missed) */
	other = pick_proc(h, victim ? victim->pid : 0);
	if (other && cp && other->pid == cp->pid)
		other = pick_proc(h, cp->pid);

	switch (s->kind) {
	case FSIM_K_MMAP_LOCK: {
		/* mmap_lock is per process: the holder is another thread of the
		 * victim's process, or a reader of its /proc files (atop) */
		struct fsim_proc *holder = named;
		bool smaps;

		if (!holder && victim && victim->def->threads > 1 && fsim_rng_unit(&h->rng) < 0.7)
			holder = victim;
		/* another process holding it reads the victim's smaps */
		smaps = holder && victim && holder->pid != victim->pid;

		/* a reader (smaps) holds it shared: the victim is a writer
		 * (mmap) queued behind it; a writer (munmap) blocks faults */
		if (ev->victim && smaps) {
			b->victim.kernel_stack = (char **)ks_syscall_mmap;
			b->victim.n_kernel_stack =
				sizeof(ks_syscall_mmap) / sizeof(ks_syscall_mmap[0]);
		} else if (ev->victim) {
			b->victim.kernel_stack = (char **)ks_mmap_victim;
			b->victim.n_kernel_stack =
				sizeof(ks_mmap_victim) / sizeof(ks_mmap_victim[0]);
		}
		if (holder) {
			Spikehound__Task *t =
				smaps ? evb_culprit(b, holder, h, "holder", KS(ks_smaps_holder), 0)
				      : evb_culprit(b, holder, h, "holder", KS(ks_munmap_holder),
						    0);

			ev->detail = evb_str(b, "%s",
					     detail  ? detail
					     : smaps ? "write wait behind read holder"
						     : "read wait behind write holder");
			evb_attr(b, "mm", "0x%" PRIx64,
				 (uint64_t)(fsim_rng_next(&h->rng) & 0xffff8880fffff000ULL));
			evb_attr(b, "waiter_side", smaps ? "write" : "read");
			evb_attr(b, "holders_at_start", "1");
			evb_attr(b, "holder_side", smaps ? "read" : "write");
			evb_attr(b, "holder_tid", "%d", t ? t->tid : 0);
			evb_attr(b, "holder_held_ns", "%" PRId64, s->dur + s->dur / 10);
			evb_attr(b, "holder_still_holding", "false");
		} else {
			ev->detail =
				evb_str(b, "%s", detail ? detail : "read wait, holder unknown");
			evb_attr(b, "waiter_side", "read");
			evb_attr(b, "holders_at_start", "1");
		}
		break;
	}
	case FSIM_K_RUNQ: {
		struct fsim_proc *ran = named ? named : other;
		bool preempted = fsim_rng_unit(&h->rng) < 0.4;

		ev->detail = evb_str(b, "%s", detail ? detail : preempted ? "preempted" : "wakeup");
		if (ran) {
			Spikehound__Task *t = evb_culprit(
				b, ran, h, "ran_instead",
				named && strcmp(named->def->comm, "ss") == 0 ? (char **)ks_ss
									     : NULL,
				named && strcmp(named->def->comm, "ss") == 0
					? sizeof(ks_ss) / sizeof(ks_ss[0])
					: 0,
				(int64_t)((double)s->dur * fsim_rng_range(&h->rng, 0.6, 0.95)));

			evb_attr(b, "running_at_enqueue", "%s[%d]", ran->def->comm,
				 t ? t->tid : ran->pid);
			evb_attr(b, "switched_out", "%s[%d]", ran->def->comm,
				 t ? t->tid : ran->pid);
		}
		if (!preempted) {
			struct fsim_proc *w = pick_proc(h, victim ? victim->pid : 0);

			if (w)
				evb_culprit(b, w, h, "waker", KS(ks_waker), 0);
			evb_attr(b, "waker_context", "task");
			evb_attr(b, "waker_cpu", "%u", (unsigned)fsim_rng_below(&h->rng, h->cpus));
		}
		evb_attr(b, "log_coverage", "full");
		evb_attr(b, "prio", "120");
		break;
	}
	case FSIM_K_SYSCALL: {
		const char *name = detail ? detail
				   : named && strcmp(named->def->comm, "ss") == 0
					   ? "openat"
					   : syscall_names[fsim_rng_below(
						     &h->rng, sizeof(syscall_names) /
								      sizeof(syscall_names[0]))];
		bool mm = strcmp(name, "mmap") == 0 || strcmp(name, "munmap") == 0 ||
			  strcmp(name, "madvise") == 0 || strcmp(name, "brk") == 0;

		ev->detail = evb_str(b, "%s", name);
		if (ev->victim) {
			b->victim.kernel_stack =
				mm ? (char **)ks_syscall_mmap : (char **)ks_syscall_open;
			b->victim.n_kernel_stack =
				mm ? sizeof(ks_syscall_mmap) / sizeof(ks_syscall_mmap[0])
				   : sizeof(ks_syscall_open) / sizeof(ks_syscall_open[0]);
		}
		if (named || fsim_rng_unit(&h->rng) < 0.5) {
			struct fsim_proc *ran = named ? named : other;

			if (ran)
				evb_culprit(b, ran, h, "ran_instead", NULL, 0,
					    (int64_t)((double)s->dur *
						      fsim_rng_range(&h->rng, 0.3, 0.9)));
		}
		break;
	}
	case FSIM_K_RECLAIM:
		ev->detail = evb_str(b, "%s", detail ? detail : "direct");
		if (ev->victim) {
			b->victim.kernel_stack = (char **)ks_reclaim_victim;
			b->victim.n_kernel_stack =
				sizeof(ks_reclaim_victim) / sizeof(ks_reclaim_victim[0]);
		}
		pseudo_culprit(b, "super_cache_scan", victim ? victim->pid : 0, "shrinker",
			       KS(ks_shrinker), (int64_t)((double)s->dur * 0.7));
		evb_attr(b, "nr_reclaimed", "%u", 32 + (unsigned)fsim_rng_below(&h->rng, 4000));
		evb_attr(b, "order", "0");
		evb_attr(b, "gfp", "0x140cca");
		evb_attr(b, "shrinker", "super_cache_scan");
		evb_attr(b, "cpu_begin", "%d", ev->cpu);
		break;
	case FSIM_K_SOFTIRQ:
		ev->detail = evb_str(b, "%s", detail ? detail : "");
		if (!detail)
			ev->detail = evb_str(b, "NET_RX waited %.1f ms", ms);
		pseudo_culprit(b, "NET_RX", victim ? victim->pid : 0, "softirq_handler",
			       KS(ks_net_rx), s->dur);
		break;
	case FSIM_K_CPU_STALL: {
		struct fsim_proc *st = named ? named : victim;

		ev->detail = evb_str(b, "%s", detail ? detail : "");
		if (!detail)
			ev->detail = evb_str(b, "irqs off %.1f ms", ms);
		if (st) {
			evb_culprit(b, st, h, "stall_stack", KS(ks_stall), s->dur);
			if (named) {
				task_of(&b->victim, named, h, "victim");
				ev->victim = &b->victim;
			}
		}
		evb_attr(b, "gap_ms", "%.3f", ms);
		evb_attr(b, "sentinel_period_ms", "1.000");
		evb_attr(b, "ended_in", "kernel");
		evb_attr(b, "same_task", "yes");
		break;
	}
	case FSIM_K_ACCOUNTING: {
		double sched = fsim_rng_range(&h->rng, 5, 60);
		double ratio = fsim_rng_range(&h->rng, 0.05, 0.5);

		ev->cpu = -1;
		ev->detail = evb_str(b, "%s", detail ? detail : "stat_behind_sched");
		evb_attr(b, "stat_cpu_s", "%.3f", sched * ratio);
		evb_attr(b, "sched_cpu_s", "%.3f", sched);
		evb_attr(b, "ratio", "%.3f", ratio);
		evb_attr(b, "checks", "%u", 3 + (unsigned)fsim_rng_below(&h->rng, 6));
		evb_attr(b, "interval_s", "5.0");
		evb_attr(b, "threads", "%u", victim ? victim->def->threads : 1);
		evb_attr(b, "kernel_release", "%s", sc->kernels.names[h->kernel]);
		break;
	}
	default:
		ev->detail = evb_str(b, "%s", detail ? detail : "");
		break;
	}
	/* recorder samples on the CPU during the window */
	if (ev->victim) {
		spikehound__folded_stack__init(&b->ws[0]);
		b->ws[0].stack =
			evb_str(b, "%s;[unknown];%s", b->victim.comm,
				s->kind == FSIM_K_RUNQ ? "finish_task_switch" : "schedule");
		b->ws[0].count = 1 + (uint32_t)(ms / 10.1);
		b->ws_ptrs[ev->n_window_samples++] = &b->ws[0];
	}
	if (ev->n_culprits && b->culprits[0].kernel_stack && b->culprits[0].n_kernel_stack) {
		spikehound__folded_stack__init(&b->ws[1]);
		b->ws[1].stack =
			evb_str(b, "%s;%s", b->culprits[0].comm, b->culprits[0].kernel_stack[0]);
		b->ws[1].count = 1 + (uint32_t)(ms / 10.1);
		b->ws_ptrs[ev->n_window_samples++] = &b->ws[1];
	}
	ev->window_samples = b->ws_ptrs;
}

static int pack_push(struct fsim_gen *g, struct fsim_host *h, Spikehound__AgentMessage *m,
		     int64_t release, enum fsim_out_kind kind)
{
	size_t len = spikehound__agent_message__get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);

	if (!buf)
		return -ENOMEM;
	spikehound__agent_message__pack(m, buf);
	g->st.bytes += len;
	return fsim_host_push(h, buf, len, m->seq, release, kind);
}

static void init_msg(Spikehound__AgentMessage *m, struct fsim_host *h, int64_t created_host_ns)
{
	spikehound__agent_message__init(m);
	m->host_id = h->host_id;
	m->boot_id = h->boot_id;
	m->seq = ++h->seq;
	m->created_ns = created_host_ns;
}

static int emit_events(struct fsim_gen *g, struct fsim_host *h, bool live)
{
	const struct fsim_scenario *sc = g->f->sc;
	struct evb *b = malloc(sizeof(*b));
	int rv = 0;

	if (!b)
		return -ENOMEM;
	if (g->n_spikes > 1)
		qsort(g->spikes, g->n_spikes, sizeof(*g->spikes), spike_cmp);
	for (size_t i = 0; i < g->n_spikes && rv == 0; i++) {
		const struct spike *s = &g->spikes[i];
		Spikehound__AgentMessage m;
		int64_t detect = s->ts + s->dur + SH_NS_PER_MS;

		memset(b, 0, offsetof(struct evb, text));
		b->used = 0;
		fill_event(g, h, s, b);
		if (live && g->o.record &&
		    (rv = fsim_recorder_add(&h->rec, FSIM_REC_EVENT, b->ev.start_ns,
					    &b->ev.base)) != 0)
			break;
		init_msg(&m, h, detect + h->skew_ns);
		m.body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_EVENT;
		m.event = &b->ev;
		rv = pack_push(g, h, &m, live ? detect : 0, FSIM_OUT_EVENT);
		if (rv)
			break;
		g->st.events++;
		if (s->cause >= 0) {
			const struct fsim_cause *c = &sc->causes[s->cause];
			char incident[128];

			if (s->firing)
				snprintf(incident, sizeof(incident), "%s#%u", c->name, s->firing);
			else
				snprintf(incident, sizeof(incident), "%s", c->name);
			fsim_truth_spike(g->truth, incident, c->name, h->host_id,
					 fsim_kind_names[s->kind], s->ts, s->ts + h->skew_ns,
					 s->dur);
			g->st.spikes++;
		} else {
			fsim_truth_noise(g->truth, h->host_id, fsim_kind_names[s->kind], s->ts);
			g->st.noise++;
		}
	}
	free(b);
	return rv;
}

/* ---- the summary ---- */

static void proc_msg(Spikehound__Process *m, const struct fsim_proc *p, bool with_exit)
{
	spikehound__process__init(m);
	m->pid = p->pid;
	m->ppid = p->ppid;
	m->comm = (char *)p->def->comm;
	m->exe = (char *)p->def->exe;
	m->cmdline = (char *)fsim_proc_cmdline(p);
	m->cgroup = (char *)p->def->cgroup;
	m->start_time_ns = p->start_ns;
	m->exit_time_ns = with_exit ? p->exit_ns : 0;
	m->uid = p->def->uid;
}

/* struct sumb holds one Summary and the storage it points into. */
struct sumb {
	Spikehound__Summary s;
	Spikehound__MetricSecond *secs, **sec_ptrs;
	Spikehound__Process *procs, **started, **exited, **snap;
	Spikehound__ProcessSamples ps[6], *ps_ptrs[6];
	Spikehound__FoldedStack st[7], *st_ptrs[7];
	char generic_stack[2][160];
	Spikehound__Histogram hist[N_HIST], *hist_ptrs[N_HIST];
	uint64_t buckets[N_HIST][HIST_SLOTS];
	Spikehound__AgentHealth health;
};

static void sumb_free(struct sumb *b)
{
	free(b->secs);
	free(b->sec_ptrs);
	free(b->procs);
	free(b->started);
	free(b->exited);
	free(b->snap);
}

/* host_factor is a host's fixed deviation from its role's levels. */
static double host_factor(const struct fsim_gen *g, const struct fsim_host *h, uint64_t what)
{
	return 0.7 + 0.6 * fsim_hash_unit(fsim_hash(g->f->seed ^ what, h->idx));
}

static void fill_metrics(struct fsim_gen *g, struct fsim_host *h, const struct role_prof *rp,
			 int64_t t0h, int64_t t1h, int64_t step, struct sumb *b)
{
	struct fsim_metric_state *ms = &h->ms;
	struct fsim_rng *r = &h->rng;
	double hf = host_factor(g, h, 1), cpus = h->cpus;
	uint64_t total_kb = h->memory_bytes / 1024;
	int64_t t = (t0h + SH_NS_PER_SEC - 1) / SH_NS_PER_SEC * SH_NS_PER_SEC;
	double k = clampd(0.1 * (double)step / SH_NS_PER_SEC, 0.1, 0.8);

	if (ms->user < 0) {
		ms->user = rp->user * hf;
		ms->sys = rp->sys * hf;
		ms->iowait = rp->iowait * hf;
		ms->softirq = rp->softirq * hf;
		ms->mem_used_frac = rp->mem_used * host_factor(g, h, 2);
		ms->cached_frac = rp->cached;
		ms->dentries = 150000 + 50000 * cpus * host_factor(g, h, 3);
	}
	b->s.n_metrics = 0;
	for (; t < t1h; t += step) {
		Spikehound__MetricSecond *m = &b->secs[b->s.n_metrics];
		double user, sys, irq, soft, iow, steal, busy, load, netrx;
		double psi_cpu, psi_mem = 0.05 * fabs(fsim_rng_normal(r)), psi_io;
		uint64_t pgscan = 0, allocstall = 0, blocked_extra = 0, running_extra = 0;

		ms->user += k * (rp->user * hf - ms->user) + 0.04 * rp->user * fsim_rng_normal(r);
		ms->sys += k * (rp->sys * hf - ms->sys) + 0.04 * rp->sys * fsim_rng_normal(r);
		ms->iowait +=
			k * (rp->iowait * hf - ms->iowait) + 0.05 * rp->iowait * fsim_rng_normal(r);
		ms->softirq += k * (rp->softirq * hf - ms->softirq) +
			       0.05 * rp->softirq * fsim_rng_normal(r);
		ms->user = clampd(ms->user, 0.5, 95);
		ms->sys = clampd(ms->sys, 0.2, 40);
		ms->iowait = clampd(ms->iowait, 0, 30);
		ms->softirq = clampd(ms->softirq, 0, 20);
		ms->mem_used_frac =
			clampd(ms->mem_used_frac + 0.002 * fsim_rng_normal(r), 0.1, 0.9);
		ms->dentries *= 1.0 + 0.0002 * fsim_rng_normal(r) + 0.00005;

		user = clampd(ms->user * (1 + 0.05 * fsim_rng_normal(r)), 0, 100);
		sys = clampd(ms->sys * (1 + 0.05 * fsim_rng_normal(r)), 0, 100);
		irq = 0.2 + 0.05 * fabs(fsim_rng_normal(r));
		soft = clampd(ms->softirq * (1 + 0.1 * fsim_rng_normal(r)), 0, 100);
		iow = clampd(ms->iowait * (1 + 0.2 * fsim_rng_normal(r)), 0, 100);
		steal = 0.1 * fabs(fsim_rng_normal(r));
		netrx = rp->netrx * cpus / 16 * (1 + 0.15 * fsim_rng_normal(r));

		/* the spikes of this second leave traces */
		for (size_t i = 0; i < g->n_spikes; i++) {
			const struct spike *s = &g->spikes[i];
			int64_t sh = s->ts + h->skew_ns;

			if (sh < t || sh >= t + SH_NS_PER_SEC)
				continue;
			switch (s->kind) {
			case FSIM_K_RUNQ:
			case FSIM_K_CPU_STALL:
				running_extra += h->cpus / 2 + 1;
				sys += 3;
				break;
			case FSIM_K_RECLAIM:
				pgscan += 2000 + fsim_rng_below(r, 20000);
				allocstall += 1 + fsim_rng_below(r, 8);
				psi_mem += 5 + 10 * fsim_rng_unit(r);
				break;
			case FSIM_K_SOFTIRQ:
				soft += 4;
				netrx *= 3;
				break;
			default:
				blocked_extra += 1 + fsim_rng_below(r, 3);
				break;
			}
		}
		busy = user + sys + irq + soft + iow + steal;
		if (busy > 100) {
			user *= 100 / busy;
			sys *= 100 / busy;
			busy = 100;
		}
		load = cpus * (user + sys + iow) / 100 * 1.15 * (1 + 0.05 * fsim_rng_normal(r));
		psi_cpu = (user + sys > 55 ? (user + sys - 55) * 0.4 : 0) +
			  0.3 * fabs(fsim_rng_normal(r)) + (running_extra ? 15 : 0);
		psi_io = iow * 0.6;

		spikehound__metric_second__init(m);
		m->time_ns = t;
		m->cpu_user_pct = (float)user;
		m->cpu_sys_pct = (float)sys;
		m->cpu_irq_pct = (float)irq;
		m->cpu_softirq_pct = (float)soft;
		m->cpu_iowait_pct = (float)iow;
		m->cpu_steal_pct = (float)steal;
		m->cpu_idle_pct = (float)clampd(100 - busy, 0, 100);
		m->load1 = (float)clampd(load, 0, 10000);
		m->procs_running = (uint32_t)clampd(load * fsim_rng_range(r, 0.5, 1.0), 1, 1e6) +
				   (uint32_t)running_extra;
		m->procs_blocked =
			(uint32_t)(iow / 100 * cpus * fsim_rng_unit(r)) + (uint32_t)blocked_extra;
		m->psi_cpu_some_avg10 = (float)clampd(psi_cpu, 0, 100);
		m->psi_mem_some_avg10 = (float)clampd(psi_mem, 0, 100);
		m->psi_mem_full_avg10 = (float)clampd(psi_mem * 0.3, 0, 100);
		m->psi_io_some_avg10 = (float)clampd(psi_io, 0, 100);
		m->psi_io_full_avg10 = (float)clampd(psi_io * 0.3, 0, 100);
		m->psi_cpu_some_us = (uint64_t)(m->psi_cpu_some_avg10 * 1e4);
		m->psi_mem_some_us = (uint64_t)(m->psi_mem_some_avg10 * 1e4);
		m->psi_io_some_us = (uint64_t)(m->psi_io_some_avg10 * 1e4);
		m->mem_total_kb = total_kb;
		m->mem_cached_kb = (uint64_t)((double)total_kb * ms->cached_frac);
		m->mem_free_kb =
			(uint64_t)((double)total_kb *
				   clampd(1 - ms->mem_used_frac - ms->cached_frac, 0.02, 1));
		m->mem_available_kb = m->mem_free_kb + (uint64_t)((double)m->mem_cached_kb * 0.85);
		m->slab_reclaimable_kb = (uint64_t)((double)total_kb * 0.025);
		m->slab_unreclaimable_kb = (uint64_t)((double)total_kb * 0.008);
		m->pgscan_direct = pgscan;
		m->pgsteal_direct = pgscan * 9 / 10;
		if (m->mem_free_kb < total_kb / 20) {
			m->pgscan_kswapd = fsim_rng_below(r, 5000);
			m->pgsteal_kswapd = m->pgscan_kswapd * 9 / 10;
		}
		m->allocstall = allocstall;
		m->compact_stall = allocstall ? fsim_rng_below(r, 2) : 0;
		m->dentry_nr = (uint64_t)ms->dentries;
		m->dentry_unused = (uint64_t)(ms->dentries * 0.8);
		m->dentry_negative = (uint64_t)(ms->dentries * 0.3);
		m->ctxt = (uint64_t)clampd(cpus * rp->ctxt_cpu * (user + sys) / 40 *
						   (1 + 0.1 * fsim_rng_normal(r)),
					   100, 1e12);
		m->forks = 2 + fsim_rng_below(r, 12);
		m->intr = (uint64_t)(cpus * 800 + clampd(netrx, 0, 1e12) * 0.3);
		m->softirq_net_rx = (uint64_t)clampd(netrx, 0, 1e12);
		b->sec_ptrs[b->s.n_metrics++] = m;
	}
}

/* bucket_share is the share of a lognormal(mu, sigma) (of microseconds)
 * in log2 bucket i: [2^i, 2^(i+1)) us, bucket 0 from 0, the last to inf. */
static double bucket_share(int i, double mu, double sigma)
{
	double lo = i == 0 ? 0 : 0.5 * erfc(-(log(ldexp(1, i)) - mu) / (sigma * M_SQRT2));
	double hi = i == HIST_SLOTS - 1
			    ? 1
			    : 0.5 * erfc(-(log(ldexp(1, i + 1)) - mu) / (sigma * M_SQRT2));

	return hi > lo ? hi - lo : 0;
}

static void fill_histograms(struct fsim_gen *g, struct fsim_host *h, double seconds, double busy,
			    struct sumb *b)
{
	const struct fsim_scenario *sc = g->f->sc;

	for (size_t i = 0; i < N_HIST; i++) {
		Spikehound__Histogram *hg = &b->hist[i];
		int kind = hist_profs[i].kind;
		double median = hist_profs[i].median_us * host_factor(g, h, 10 + i);
		double sigma = hist_profs[i].sigma, expect, mu;
		uint64_t count = 0;
		size_t n = 0;

		for (size_t c = 0; c < sc->n_causes; c++)
			if (sc->causes[c].type == FSIM_REGRESSION && h->hc[c].member &&
			    sc->causes[c].hist_kind[kind])
				median *= sc->causes[c].factor;
		mu = log(median);
		expect = hist_profs[i].per_cpu_s * h->cpus * seconds * (0.5 + busy / 100);
		spikehound__histogram__init(hg);
		hg->kind = (char *)fsim_kind_names[kind];
		for (int s = 0; s < HIST_SLOTS; s++) {
			double e = expect * bucket_share(s, mu, sigma);
			double v = e + sqrt(e) * fsim_rng_normal(&h->rng);

			b->buckets[i][s] = v > 0.5 ? (uint64_t)llround(v) : 0;
			count += b->buckets[i][s];
			if (b->buckets[i][s])
				n = (size_t)s + 1;
		}
		hg->buckets = b->buckets[i];
		hg->n_buckets = n;
		hg->count = count;
		hg->sum_ns = (uint64_t)((double)count * median * exp(sigma * sigma / 2) * 1000);
		b->hist_ptrs[b->s.n_histograms++] = hg;
	}
}

static void fill_samples(struct fsim_gen *g, struct fsim_host *h, const struct role_prof *rp,
			 double seconds, double busy, struct sumb *b)
{
	uint64_t total = (uint64_t)(99.0 * h->cpus * seconds * busy / 100);
	struct fsim_proc *main_p = h->main_pid ? fsim_host_proc(h, h->main_pid) : NULL;
	struct fsim_proc *ne = fsim_host_find_comm(h, "node_exporter");
	struct fsim_proc *ag = fsim_host_find_comm(h, "spikehound-agen");
	struct fsim_proc *other = pick_proc(h, main_p ? main_p->pid : 0);
	const struct {
		struct fsim_proc *p;
		double share;
	} who[] = {{main_p, 0.72}, {ne, 0.05}, {ag, 0.02}, {other, 0.04}};
	double wsum = 0;

	for (size_t i = 0; i < sizeof(who) / sizeof(who[0]); i++) {
		Spikehound__ProcessSamples *ps = &b->ps[b->s.n_proc_samples];

		if (!who[i].p || who[i].p->exit_ns)
			continue;
		spikehound__process_samples__init(ps);
		ps->pid = who[i].p->pid;
		ps->comm = (char *)who[i].p->def->comm;
		ps->samples = (uint32_t)((double)total * who[i].share *
					 fsim_rng_range(&h->rng, 0.8, 1.2));
		b->ps_ptrs[b->s.n_proc_samples++] = ps;
	}
	for (int i = 0; i < 4; i++)
		wsum += rp->stack_w[i];
	for (int i = 0; i < 4; i++) {
		Spikehound__FoldedStack *fs = &b->st[b->s.n_stacks];
		const char *stack = rp->stacks[i];

		if (!rp->role) {
			if (i >= 2 || !main_p)
				break;
			snprintf(b->generic_stack[i], sizeof(b->generic_stack[i]), "%s;%s",
				 main_p->def->comm,
				 i == 0 ? "__libc_start_main;main;run_loop;handle_request;process"
					: "__libc_start_main;main;run_loop;poll_events;epoll_wait");
			stack = b->generic_stack[i];
		}
		spikehound__folded_stack__init(fs);
		fs->stack = (char *)stack;
		fs->count =
			(uint32_t)((double)total * 0.8 * (rp->role ? rp->stack_w[i] / wsum : 0.5) *
				   fsim_rng_range(&h->rng, 0.85, 1.15));
		if (fs->count)
			b->st_ptrs[b->s.n_stacks++] = fs;
	}
	if (ne) {
		Spikehound__FoldedStack *fs = &b->st[b->s.n_stacks];

		spikehound__folded_stack__init(fs);
		fs->stack =
			(char *)"node_exporter;runtime.goexit.abi0;net/http.(*conn).serve;"
				"github.com/prometheus/node_exporter/collector.(*meminfoCollector).Update;"
				"os.ReadFile;syscall.read";
		fs->count = (uint32_t)((double)total * 0.04) + 1;
		b->st_ptrs[b->s.n_stacks++] = fs;
	}
	b->s.proc_samples = b->ps_ptrs;
	b->s.stacks = b->st_ptrs;
	h->ms.samples_total += total;
}

/* record_proc keeps one process lifecycle record of p. */
static int record_proc(struct fsim_host *h, const struct fsim_proc *p, const char *kind,
		       int64_t t_ns)
{
	Spikehound__CaptureProcEvent e = SPIKEHOUND__CAPTURE_PROC_EVENT__INIT;
	const struct fsim_proc *parent = fsim_host_proc(h, p->ppid);

	e.time_ns = t_ns;
	e.kind = (char *)kind;
	e.pid = p->pid;
	e.ppid = p->ppid;
	e.tid = p->pid;
	/* a child runs its parent's program until it calls exec */
	e.comm = (char *)(strcmp(kind, "fork") == 0 && parent ? parent->def->comm : p->def->comm);
	if (strcmp(kind, "exec") == 0)
		e.filename = (char *)p->def->exe;
	return fsim_recorder_add(&h->rec, FSIM_REC_PROC, t_ns, &e.base);
}

/* record_summary keeps what the recorder holds of a live interval: its
 * metric seconds and the processes that started (fork, exec) and exited. */
static int record_summary(struct fsim_host *h, const struct sumb *b)
{
	int rv = 0;

	for (size_t i = 0; i < b->s.n_metrics && rv == 0; i++)
		rv = fsim_recorder_add(&h->rec, FSIM_REC_METRICS, b->sec_ptrs[i]->time_ns,
				       &b->sec_ptrs[i]->base);
	for (size_t i = 0; i < b->s.n_started && rv == 0; i++) {
		const struct fsim_proc *p = fsim_host_proc(h, b->s.started[i]->pid);

		if (!p)
			continue;
		if ((rv = record_proc(h, p, "fork", p->start_ns - 200000)) == 0)
			rv = record_proc(h, p, "exec", p->start_ns);
	}
	for (size_t i = 0; i < b->s.n_exited && rv == 0; i++) {
		const struct fsim_proc *p = fsim_host_proc(h, b->s.exited[i]->pid);

		if (p)
			rv = record_proc(h, p, "exit", p->exit_ns);
	}
	return rv;
}

static int emit_summary(struct fsim_gen *g, struct fsim_host *h, int64_t t0, int64_t t1,
			int64_t step, bool live)
{
	const struct role_prof *rp = prof_of(g->f, h);
	int64_t t0h = t0 + h->skew_ns, t1h = t1 + h->skew_ns;
	size_t max_secs = (size_t)((t1 - t0) / step) + 2, n_alive = 0, np = 0;
	bool snapshot = h->intervals % SNAPSHOT_EVERY == 0;
	double seconds = (double)(t1 - t0) / 1e9, busy = 0;
	Spikehound__AgentMessage m;
	struct sumb *b = calloc(1, sizeof(*b));
	int rv = -ENOMEM;

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < h->n_procs; i++)
		n_alive += !h->procs[i].exit_ns;
	b->secs = calloc(max_secs, sizeof(*b->secs));
	b->sec_ptrs = calloc(max_secs, sizeof(*b->sec_ptrs));
	b->procs = calloc(g->n_started + g->n_exited + (snapshot ? n_alive : 0) + 1,
			  sizeof(*b->procs));
	b->started = calloc(g->n_started + 1, sizeof(*b->started));
	b->exited = calloc(g->n_exited + 1, sizeof(*b->exited));
	b->snap = calloc(n_alive + 1, sizeof(*b->snap));
	if (!b->secs || !b->sec_ptrs || !b->procs || !b->started || !b->exited || !b->snap)
		goto cleanup;
	spikehound__summary__init(&b->s);
	b->s.start_ns = t0h;
	b->s.end_ns = t1h;
	fill_metrics(g, h, rp, t0h, t1h, step, b);
	b->s.metrics = b->sec_ptrs;
	for (size_t i = 0; i < b->s.n_metrics; i++)
		busy += b->secs[i].cpu_user_pct + b->secs[i].cpu_sys_pct;
	busy = b->s.n_metrics ? busy / (double)b->s.n_metrics : h->ms.user + h->ms.sys;

	for (size_t i = 0; i < g->n_started; i++) {
		struct fsim_proc *p = fsim_host_proc(h, g->started[i]);

		if (!p)
			continue;
		proc_msg(&b->procs[np], p, false);
		b->started[b->s.n_started++] = &b->procs[np++];
	}
	for (size_t i = 0; i < g->n_exited; i++) {
		struct fsim_proc *p = fsim_host_proc(h, g->exited[i]);

		if (!p)
			continue;
		proc_msg(&b->procs[np], p, true);
		b->exited[b->s.n_exited++] = &b->procs[np++];
	}
	b->s.started = b->started;
	b->s.exited = b->exited;
	if (snapshot) {
		for (size_t i = 0; i < h->n_procs; i++) {
			if (h->procs[i].exit_ns)
				continue;
			proc_msg(&b->procs[np], &h->procs[i], false);
			b->snap[b->s.n_snapshot++] = &b->procs[np++];
		}
		b->s.snapshot = b->snap;
		b->s.has_snapshot = true;
	}
	fill_samples(g, h, rp, seconds, busy, b);
	fill_histograms(g, h, seconds, busy, b);
	b->s.histograms = b->hist_ptrs;

	spikehound__agent_health__init(&b->health);
	b->health.samples = h->ms.samples_total;
	b->health.samples_lost = fsim_rng_unit(&h->rng) < 0.02 ? fsim_rng_below(&h->rng, 50) : 0;
	b->health.stack_errors = fsim_rng_below(&h->rng, 3);
	b->health.user_stacks_depth1 = h->ms.samples_total / 50;
	b->health.recorder_seconds = 600;
	b->health.recorder_bytes = 48ULL << 20;
	b->health.agent_cpu_pct = (float)fsim_rng_range(&h->rng, 0.3, 1.5);
	b->health.agent_rss_kb = 45000 + fsim_rng_below(&h->rng, 20000);
	b->s.health = &b->health;

	if (live && g->o.record && (rv = record_summary(h, b)) != 0)
		goto cleanup;
	init_msg(&m, h, t1h + 5 * SH_NS_PER_MS);
	m.body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_SUMMARY;
	m.summary = &b->s;
	rv = pack_push(g, h, &m, live ? t1 + 5 * SH_NS_PER_MS : 0, FSIM_OUT_SUMMARY);
	if (rv == 0)
		g->st.summaries++;
cleanup:
	sumb_free(b);
	free(b);
	return rv;
}

size_t fsim_gen_stacks(const struct fsim_gen *g, struct fsim_host *h, struct fsim_stack_share *out)
{
	const struct role_prof *rp = prof_of(g->f, h);
	struct fsim_proc *main_p = h->main_pid ? fsim_host_proc(h, h->main_pid) : NULL;
	double total = 0;
	size_t n = 0;

	/* as fill_samples: 80% the role's stacks, 4% the node exporter's;
	 * the agent itself about 2% */
	for (int i = 0; i < 4; i++) {
		if (rp->role) {
			snprintf(out[n].folded, sizeof(out[n].folded), "%s", rp->stacks[i]);
			out[n++].share = 0.8 * rp->stack_w[i];
		} else if (i < 2 && main_p) {
			snprintf(out[n].folded, sizeof(out[n].folded), "%s;%s", main_p->def->comm,
				 i == 0 ? "__libc_start_main;main;run_loop;handle_request;process"
					: "__libc_start_main;main;run_loop;poll_events;epoll_wait");
			out[n++].share = 0.4;
		}
	}
	if (rp->role) {
		double w = 0;

		for (int i = 0; i < 4; i++)
			w += rp->stack_w[i];
		for (size_t i = 0; i < n; i++)
			out[i].share /= w;
	}
	if (fsim_host_find_comm(h, "node_exporter")) {
		snprintf(out[n].folded, sizeof(out[n].folded), "%s",
			 "node_exporter;runtime.goexit.abi0;net/http.(*conn).serve;"
			 "github.com/prometheus/node_exporter/collector.(*meminfoCollector).Update;"
			 "os.ReadFile;syscall.read");
		out[n++].share = 0.04;
	}
	if (fsim_host_find_comm(h, "spikehound-agen")) {
		snprintf(out[n].folded, sizeof(out[n].folded), "%s",
			 "spikehound-agen;start_thread;agent_sampler_main;ring_buffer__poll;"
			 "epoll_wait;entry_SYSCALL_64_after_hwframe;do_syscall_64;"
			 "__x64_sys_epoll_wait;do_epoll_wait;ep_poll");
		out[n++].share = 0.02;
	}
	for (size_t i = 0; i < n; i++)
		total += out[i].share;
	for (size_t i = 0; i < n && total > 0; i++)
		out[i].share /= total;
	return n;
}

int fsim_gen_step(struct fsim_gen *g, struct fsim_host *h)
{
	int64_t t0 = h->cursor_ns, iv, t1;
	bool live = t0 >= g->o.backfill_end_ns;
	int rv;

	if (t0 >= g->o.end_ns)
		return 0;
	t1 = interval_end(g, h, &iv);
	g->n_spikes = g->n_started = g->n_exited = 0;
	if (live && g->o.record)
		fsim_recorder_prune(&h->rec, t0 + h->skew_ns - g->o.record_keep_ns);
	if ((rv = run_jobs(g, h, t1)) != 0 || (rv = draw_spikes(g, h, t1)) != 0 ||
	    (rv = emit_events(g, h, live)) != 0 ||
	    (rv = emit_summary(g, h, t0, t1, live ? SH_NS_PER_SEC : g->o.backfill_step_ns, live)) !=
		    0)
		return rv;
	for (size_t i = 0; i < g->n_exited; i++)
		fsim_host_remove_proc(h, g->exited[i]);
	h->cursor_ns = t1;
	h->intervals++;
	return 0;
}
