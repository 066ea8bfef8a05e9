/* metrics.h: one MetricSecond of host metrics per call, read from /proc
 * (stat, loadavg, pressure/{cpu,memory,io}, meminfo, vmstat, sys/fs/dentry-state,
 * softirqs). Counters are turned into deltas against the previous call. */
#ifndef AGENT_METRICS_H
#define AGENT_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spikehound.pb-c.h"

/* agent_metrics_cpu holds the aggregate "cpu " line of /proc/stat, in
 * clock ticks (guest time is already inside user and nice). */
struct agent_metrics_cpu {
	uint64_t user, nice, system, idle, iowait, irq, softirq, steal;
};

/* agent_metrics_counters holds the monotonic counters one sample needs
 * for its deltas; each group has its own ok flag because each comes from
 * its own file, which may be missing (old kernel) or unreadable. */
struct agent_metrics_counters {
	bool stat_ok, vmstat_ok, softirq_ok;
	bool psi_ok[3]; /* cpu, memory, io */
	struct agent_metrics_cpu cpu;
	uint64_t ctxt, forks, intr;
	uint64_t pgscan_direct, pgscan_kswapd, pgsteal_direct, pgsteal_kswapd;
	uint64_t allocstall, compact_stall;
	uint64_t psi_some_us[3]; /* "some" total, us: cpu, memory, io */
	uint64_t net_rx;
};

/* agent_metrics is the sampler's state, embedded by its owner; the fields
 * are private. One read buffer is allocated by agent_metrics_init and only
 * regrown when a file outgrows it, so steady-state sampling does not
 * allocate. Not thread-safe: one sampler per thread. */
struct agent_metrics {
	char *root;  /* proc_root, owned */
	char *buf;   /* read buffer, owned */
	size_t cap;
	char *path;  /* path scratch, owned, PATH_MAX bytes */
	struct agent_metrics_counters prev; /* previous sample; all !ok after init */
	uint64_t read_errors; /* files that could not be read or parsed, since init */
};

/* agent_metrics_init prepares *m to sample proc_root (normally "/proc";
 * copied). Returns 0 or -ENOMEM; on failure *m needs no fini (but fini is
 * harmless). Nothing is read until the first sample. */
int agent_metrics_init(struct agent_metrics *m, const char *proc_root);

/* agent_metrics_sample calls spikehound__metric_second__init(out) and fills
 * every field of *out: time_ns = wall_ns (the start of the second, passed by
 * the caller), gauges as read now, counters as deltas since the previous
 * call. The first call after init only primes: its deltas and CPU
 * percentages are zero (gauges are filled). A counter that went backwards
 * counts as zero. Missing PSI files give -1 for avg10 and 0 for totals;
 * other missing or malformed optional files give zeros and are counted in
 * m->read_errors. Returns 0, or a negative errno when proc_root/stat
 * cannot be read or parsed (then *out is still initialized and holds what
 * could be read, and the CPU and stat deltas of the next call are zero). No
 * strings or heap memory are put into *out. */
int agent_metrics_sample(struct agent_metrics *m, int64_t wall_ns, Spikehound__MetricSecond *out);

/* agent_metrics_fini frees what agent_metrics_init allocated; safe on a
 * zeroed or failed-init struct and idempotent. */
void agent_metrics_fini(struct agent_metrics *m);

#endif
