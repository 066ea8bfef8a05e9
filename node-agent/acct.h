/* acct.h: the logic of the "acct" detector (incident E): per process, the
 * CPU time /proc/PID/stat reports (utime + stime) against the scheduler's
 * own runtime (sum_exec_runtime, /proc/PID/schedstat, summed over the
 * process's threads). On a healthy kernel both advance together (stat is
 * the scheduler's runtime split into user and system, in clock ticks); the
 * bug in incident E froze utime + stime for minutes while the runtime grew,
 * then let them jump.
 *
 * A check (every interval, 5 s) looks at the processes that used the most
 * CPU since the previous check (top_n by the cheap counters: stat and the
 * main thread's schedstat) plus those already under suspicion, and
 * compares Δstat with Δsched over the interval. A check diverges when
 * |Δstat - Δsched| > min_ratio * Δsched and > min_diff_ns (stat stuck at 0
 * while sched advances by more than min_diff_ns is the extreme case). A
 * process is flagged when `checks` consecutive checks diverge the same
 * way, once per streak; the check that ends a flagged "behind" streak with
 * stat leaping ahead is flagged as the jump. Short blips, idle processes
 * and processes that exit are never flagged; a pid reused by a new process
 * starts over; a check whose set of threads changed (a thread's runtime
 * leaves the sum when it exits) neither extends nor ends a streak.
 *
 * Pure logic and parsers: no BPF, no clock (callers pass times), so
 * tests/unit/test_agent_acct.c drives it with synthetic timelines and fake
 * /proc trees. det_acct.c is the thin detector around it.
 *
 * Threads: one thread at a time per struct agent_acct. */
#ifndef AGENT_ACCT_H
#define AGENT_ACCT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_ACCT_COMM_LEN 16

/* agent_acct_opts: zero fields take the defaults in brackets. */
struct agent_acct_opts {
	int64_t interval_ns; /* least time between two checks [5 s] */
	unsigned checks;     /* consecutive diverging checks that flag [3] */
	double min_ratio;    /* |Δstat - Δsched| must exceed this × Δsched [0.5] */
	int64_t min_diff_ns; /* ... and this much CPU time [500 ms] */
	unsigned top_n;	     /* busiest processes examined per check [50] */
};

/* agent_acct_sample is one process's counters at one moment. */
struct agent_acct_sample {
	int32_t pid;
	uint32_t threads;     /* stat field 20 */
	uint64_t start_ticks; /* stat field 22: tells a reused pid */
	int64_t stat_ns;      /* (utime + stime) of stat, in ns */
	int64_t sched_ns;     /* sum_exec_runtime: the main thread's (cheap
				 sample) or every thread's (full sample) */
	uint64_t threads_sig; /* full samples: identifies the set of threads
				 summed; equal sigs = same threads */
	char comm[AGENT_ACCT_COMM_LEN];
};

/* agent_acct_pattern: what a finding saw. */
enum agent_acct_pattern {
	AGENT_ACCT_FROZEN = 1, /* stat did not move at all while sched grew */
	AGENT_ACCT_BEHIND,     /* stat grew much less than sched */
	AGENT_ACCT_AHEAD,      /* stat grew much more than sched */
	AGENT_ACCT_JUMP,       /* stat leapt ahead right after a flagged freeze */
};

/* agent_acct_finding is one flagged process (borrowed by the callback). */
struct agent_acct_finding {
	int32_t pid;
	uint32_t threads;
	char comm[AGENT_ACCT_COMM_LEN];
	enum agent_acct_pattern pattern;
	int64_t from_ns, to_ns; /* the span of the diverging checks (callers' clock) */
	int64_t stat_ns;	/* Δ(utime + stime) over the span */
	int64_t sched_ns;	/* Δsum_exec_runtime over the span */
	unsigned checks;	/* diverging checks in the span */
};

/* agent_acct_found_cb receives each finding as a check makes it. */
typedef void (*agent_acct_found_cb)(void *arg, const struct agent_acct_finding *f);

struct agent_acct;

/* agent_acct_new creates the per-process state. opts may be NULL.
 * Returns 0 and *out (free with agent_acct_free) or -ENOMEM. */
int agent_acct_new(const struct agent_acct_opts *opts, struct agent_acct **out);

/* agent_acct_free frees a; NULL is a no-op. */
void agent_acct_free(struct agent_acct *a);

/* agent_acct_due tells whether a check is due at now_ns (the interval has
 * passed since the last one, or there was none). */
bool agent_acct_due(const struct agent_acct *a, int64_t now_ns);

/* agent_acct_rank takes cheap samples of every live process (all, n;
 * sched_ns of the main thread is fine) and writes into pids (up to max)
 * the processes to examine now: the top_n by CPU used since the previous
 * rank (at least min_diff_ns / 10 of it: processes using CPU), then those
 * with a diverging streak or that used more than min_diff_ns of CPU in
 * the last check. Processes missing from all have exited and are
 * forgotten. Returns how many pids were written. */
size_t agent_acct_rank(struct agent_acct *a, const struct agent_acct_sample *all, size_t n,
		       int32_t *pids, size_t max);

/* agent_acct_check compares full samples (every thread's runtime summed,
 * threads_sig set) of the examined processes, taken at now_ns, with their
 * previous ones and calls cb for each new finding. Returns how many
 * findings were made. */
size_t agent_acct_check(struct agent_acct *a, int64_t now_ns, const struct agent_acct_sample *s,
			size_t n, agent_acct_found_cb cb, void *arg);

/* agent_acct_tracked returns how many processes have state (tests). */
size_t agent_acct_tracked(const struct agent_acct *a);

/* agent_acct_pattern_name returns "stat_frozen", "stat_behind_sched",
 * "stat_ahead_of_sched" or "stat_jump". */
const char *agent_acct_pattern_name(enum agent_acct_pattern p);

/* agent_acct_parse_stat parses the text of /proc/PID/stat (comm may hold
 * spaces and parentheses) into s->pid, comm, threads, start_ticks and
 * stat_ns (clk_tck ticks per second). Returns 0 or -EINVAL. */
int agent_acct_parse_stat(const char *text, long clk_tck, struct agent_acct_sample *s);

/* agent_acct_parse_schedstat parses the text of /proc/PID/schedstat
 * ("runtime_ns wait_ns timeslices") into *run_ns. Returns 0 or -EINVAL. */
int agent_acct_parse_schedstat(const char *text, int64_t *run_ns);

/* agent_acct_read_cheap reads proc_root/PID/stat and proc_root/PID/schedstat
 * into *s (sched_ns: the main thread's). Returns 0, -ENOENT (gone) or
 * another negative errno. */
int agent_acct_read_cheap(const char *proc_root, int32_t pid, long clk_tck,
			  struct agent_acct_sample *s);

/* agent_acct_read_full reads proc_root/PID/stat and sums
 * proc_root/PID/task/TID/schedstat over the threads into *s, with
 * threads_sig. Returns 0, -ENOENT (gone) or another negative errno. */
int agent_acct_read_full(const char *proc_root, int32_t pid, long clk_tck,
			 struct agent_acct_sample *s);

/* agent_acct_scan reads cheap samples of every numeric entry of proc_root
 * into a malloc'd array (*out, caller frees; *n entries). Entries that
 * vanish or do not parse are skipped. Returns 0 or a negative errno
 * (proc_root unreadable, -ENOMEM). */
int agent_acct_scan(const char *proc_root, long clk_tck, struct agent_acct_sample **out,
		    size_t *n);

#endif
