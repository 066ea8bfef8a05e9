/* procs.h: the process inventory. Rescans /proc, keeps every live process
 * keyed by (pid, start time), and reports which started and which exited
 * since the previous scan. */
#ifndef AGENT_PROCS_H
#define AGENT_PROCS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uthash.h>

#include "spikehound.pb-c.h"

/* AGENT_PROC_CMDLINE_MAX is the longest cmdline kept, in bytes. */
#define AGENT_PROC_CMDLINE_MAX 4096

/* agent_proc is one process. All strings are NUL-terminated, valid UTF-8
 * (invalid bytes become '?'), possibly empty, and live in the same
 * allocation as the record. Read-only for users of this module. */
struct agent_proc {
	int32_t pid;
	uint32_t pad_;            /* zero: (pid, pad_, start_ticks) is the hash key */
	uint64_t start_ticks;     /* field 22 of /proc/PID/stat: clock ticks since boot */
	int32_t ppid;             /* updated on every scan (reparenting) */
	uint32_t uid;             /* real uid ("Uid:" in /proc/PID/status); UINT32_MAX if unreadable */
	bool kthread;             /* PF_KTHREAD set in /proc/PID/stat flags */
	int64_t start_time_ns;    /* btime + start_ticks, wall clock */
	int64_t exit_time_ns;     /* 0 while alive; scan time once gone */
	char comm[64];            /* from /proc/PID/stat; kernel threads may exceed 15 */
	const char *exe;          /* readlink /proc/PID/exe; "" for kernel threads or if unreadable */
	const char *cmdline;      /* argv joined by single spaces, <= AGENT_PROC_CMDLINE_MAX bytes */
	const char *cgroup;       /* cgroup v2 path ("0::" line), else the first line's path */
	uint64_t gen_;            /* private: scan generation that last saw it */
	UT_hash_handle hh;        /* private */
};

/* agent_proc_delta is what one scan found. The arrays are owned by the
 * struct agent_procs and so are the records they point to; both stay valid
 * until the next agent_procs_scan or agent_procs_fini. */
struct agent_proc_delta {
	bool initial;                    /* first scan: every live process is in started */
	const struct agent_proc **started;
	size_t n_started;
	const struct agent_proc **exited; /* no longer in the inventory; exit_time_ns set */
	size_t n_exited;
	const struct agent_proc **changed; /* same (pid, start) but comm changed: exec'd
					    * after an earlier scan saw it; exe, cmdline,
					    * cgroup and uid re-read. Send as an update. */
	size_t n_changed;
};

/* agent_procs_stats are counters since init, for the agent's health. */
struct agent_procs_stats {
	uint64_t scans;
	uint64_t started, exited, changed;
	uint64_t alloc_failures; /* new processes skipped for lack of memory (retried next scan) */
};

/* agent_procs is the inventory, embedded by its owner; fields are private.
 * Memory is proportional to the live processes (plus the largest delta
 * seen), so fork churn does not grow it. Not thread-safe. */
struct agent_procs {
	char *root;                /* proc_root, owned */
	int64_t btime_ns;          /* read at init: start times stay stable */
	long clk_tck;
	uint64_t gen;
	struct agent_proc *table;  /* uthash head */
	const struct agent_proc **started, **changed, **exited, **all;
	size_t cap_started, cap_changed, cap_exited, cap_all;
	size_t n_exited;           /* records in exited: freed at the next scan */
	char *buf;                 /* scratch for /proc/PID files, owned */
	struct agent_procs_stats stats;
};

/* agent_procs_init prepares *p to scan proc_root (normally "/proc";
 * copied), reading btime from proc_root/stat once. Returns 0, -ENOMEM, or
 * the error of agent_read_btime_ns. */
int agent_procs_init(struct agent_procs *p, const char *proc_root);

/* agent_procs_scan rescans proc_root and fills *delta (see struct
 * agent_proc_delta: the first scan reports every process as started, with
 * delta->initial set). Only /proc/PID/stat is read for processes already
 * known; status, cmdline, exe and cgroup only for new (or exec'd) ones.
 * Entries other than /proc/[0-9]+ are ignored (threads do not appear
 * there). Processes gone since the last scan are removed, reported in
 * exited with exit_time_ns = now_wall_ns, and freed at the next scan.
 * Kernel threads whose comm changes (kworker names carry their current
 * work queue) are renamed in place and not reported. Returns 0, or a
 * negative errno if proc_root cannot be listed (then nothing changed and
 * *delta is empty). A process that vanishes mid-read is skipped; allocation
 * failures are counted in stats.alloc_failures and the work is retried by
 * the next scan (a skipped new process is reported then; an exit that
 * could not be recorded is reported then, with that scan's time). */
int agent_procs_scan(struct agent_procs *p, int64_t now_wall_ns, struct agent_proc_delta *delta);

/* agent_procs_snapshot sets *procs to an array of every live process as of
 * the last scan, sorted by pid, and *n to its length. The array and the
 * records are owned by *p and valid until the next scan or fini. Returns 0
 * or -ENOMEM. */
int agent_procs_snapshot(struct agent_procs *p, const struct agent_proc *const **procs, size_t *n);

/* agent_procs_count returns the number of live processes as of the last scan. */
size_t agent_procs_count(const struct agent_procs *p);

/* agent_proc_to_process calls spikehound__process__init(out) and copies
 * r's fields into it. The strings are borrowed from r: *out must not
 * outlive r's validity and must never be freed with
 * spikehound__process__free_unpacked. */
void agent_proc_to_process(const struct agent_proc *r, Spikehound__Process *out);

/* agent_proc_cgroup returns pid's cgroup path (from /proc, for
 * detectors) for the v1 controller ctrl, or the v2 path when ctrl has no
 * v1 hierarchy; malloc'd (caller frees), or NULL. */
char *agent_proc_cgroup(uint32_t pid, const char *ctrl);

/* agent_procs_fini frees every record and array; safe on a zeroed or
 * failed-init struct and idempotent. */
void agent_procs_fini(struct agent_procs *p);

#endif
