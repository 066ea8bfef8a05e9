/* fleet.h: the simulated fleet: each host's identity (ids, labels,
 * kernel, clock skew), its processes and periodic jobs (cron jobs, a
 * daemon's periodic work), which scenario causes apply to it, and its
 * outbox of packed AgentMessages waiting for an Ack. gen.c advances a host
 * through time; run.c sends its outbox. */
#ifndef FSIM_FLEET_H
#define FSIM_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "recorder.h"
#include "rng.h"
#include "scenario.h"
#include "spikehound.pb-c.h"

/* struct fsim_pdef is a kind of process (shared by every host running it). */
struct fsim_pdef {
	char comm[16];
	const char *exe;     /* "" for kernel threads */
	const char *cmdline; /* may hold strftime conversions: expanded with the start time */
	const char *cgroup;
	uint32_t uid;
	uint32_t threads;
};

/* struct fsim_proc is a process alive on a host. */
struct fsim_proc {
	const struct fsim_pdef *def;
	char *cmdline; /* owned when def->cmdline was expanded, else NULL */
	int32_t pid, ppid;
	int64_t start_ns; /* host clock */
	int64_t exit_ns;  /* host clock; 0 while alive (gen.c removes the
			   * exited once their summary is made) */
};

/* struct fsim_job is a periodic activity on one host: a cron job (each
 * occurrence starts a process living lifetime_ns) or a daemon's periodic
 * work (lifetime_ns 0: the daemon is pid). */
struct fsim_job {
	const struct fsim_pdef *def;
	int cause;    /* the scenario cause it belongs to, -1: background */
	bool spiking; /* its occurrences cause spikes on this host */
	int64_t period_ns, jitter_ns, lifetime_ns, phase_ns;
	int64_t k;	 /* index of the next occurrence */
	int64_t next_ns; /* its true time */
	int32_t pid;	 /* the daemon, or the running instance (0: none) */
	int64_t exit_ns; /* true time the running instance exits */
};

/* struct fsim_hcause is what one scenario cause means for one host. */
struct fsim_hcause {
	bool member;	 /* the cause applies here (runs its process, is selected) */
	bool spiking;	 /* and makes this host spike */
	int job;	 /* periodic/decoy: the host's job, or -1 */
	int64_t next_ns; /* rate/regression: true time of the next spike */
	size_t firing;	 /* burst: index of the next firing to consider */
};

/* enum fsim_out_kind is what an outbox message carries. */
enum fsim_out_kind { FSIM_OUT_EVENT, FSIM_OUT_SUMMARY, FSIM_OUT_CHUNK };

/* struct fsim_out is one packed AgentMessage in a host's outbox. */
struct fsim_out {
	uint8_t *buf;
	size_t len;
	uint64_t seq;
	int64_t release_ns; /* true time the agent would send it (0: now) */
	enum fsim_out_kind kind;
};

/* struct fsim_metric_state is a host's slowly moving metric levels. */
struct fsim_metric_state {
	double user, sys, iowait, softirq;
	double mem_used_frac, cached_frac;
	double dentries;
	uint64_t samples_total;
};

struct fsim_host {
	uint32_t idx;
	char host_id[33];
	char hostname[16];
	char boot_id[37];
	uint32_t kernel, cluster, rack, role; /* indices into the scenario's lists */
	uint32_t cpus;
	uint64_t memory_bytes;
	const char *cpu_model;
	int64_t skew_ns;  /* host clock minus true time */
	int64_t boot_ns;  /* true time of boot */
	int64_t phase_ns; /* summary interval phase, in [0, interval) */
	struct fsim_rng rng;

	struct fsim_proc *procs;
	size_t n_procs, cap_procs;
	int32_t next_pid;
	int32_t main_pid; /* the role's main process (victims) */
	struct fsim_job *jobs;
	size_t n_jobs;
	struct fsim_hcause *hc; /* per scenario cause */
	int64_t noise_next[FSIM_NKINDS];
	struct fsim_metric_state ms;
	struct fsim_recorder rec; /* live records, for captures (when recording) */

	int64_t cursor_ns;  /* true time generated up to */
	uint64_t intervals; /* summaries generated */
	uint64_t seq;	    /* last seq handed out */

	struct fsim_out *out; /* outbox: out[out_head .. out_head + out_n) */
	size_t out_head, out_n, out_cap;
	bool busy;	     /* a request of this host is in flight */
	size_t inflight;     /* with this many outbox entries (from the head) */
	int64_t retry_at_ns; /* monotonic: no resend before */
	int backoff_ms;
};

/* struct fsim_burst_firings is when a burst cause fires (true times). */
struct fsim_burst_firings {
	int64_t *t;
	size_t n, cap;
	int64_t until_ns; /* firings are known up to here */
	struct fsim_rng rng;
};

struct fsim_fleet {
	const struct fsim_scenario *sc; /* borrowed */
	uint64_t seed;
	int64_t from_ns;
	struct fsim_host *hosts;
	uint32_t n_hosts;
	struct fsim_pdef *role_defs;	   /* per scenario role: its main process */
	struct fsim_pdef *cause_defs;	   /* per scenario cause: its process (comm[0] 0: none) */
	uint32_t *cause_hosts;		   /* per cause: hosts it affects (for the truth) */
	struct fsim_burst_firings *bursts; /* per cause (used by bursts) */
	double noise_weight[FSIM_NKINDS];  /* per-host-hour baseline rate by kind */
};

/* fsim_fleet_new builds n_hosts hosts of scenario sc (borrowed; must
 * outlive the fleet) for a run starting at true time from_ns. Returns 0 and
 * *out (free with fsim_fleet_free) or -ENOMEM. */
int fsim_fleet_new(struct fsim_fleet **out, const struct fsim_scenario *sc, uint32_t n_hosts,
		   uint64_t seed, int64_t from_ns);

/* fsim_fleet_free frees the fleet, its hosts and their outboxes. */
void fsim_fleet_free(struct fsim_fleet *f);

/* fsim_fleet_firings_until makes sure burst cause c's firings are known up
 * to true time until_ns. Returns 0 or -ENOMEM. */
int fsim_fleet_firings_until(struct fsim_fleet *f, size_t c, int64_t until_ns);

/* struct fsim_hello is a Hello with the storage it points into. */
struct fsim_hello {
	Spikehound__Hello hello;
	Spikehound__Hello__LabelsEntry labels[3];
	Spikehound__Hello__LabelsEntry *label_ptrs[3];
	char kernel_version[160];
};

/* fsim_host_hello fills out with host h's Hello as sent at true time
 * true_now_ns (sent_at_ns is the host's clock). Points into h and the
 * scenario: valid while they are. */
void fsim_host_hello(const struct fsim_fleet *f, const struct fsim_host *h, int64_t true_now_ns,
		     struct fsim_hello *out);

/* fsim_host_proc returns host h's live process pid, or NULL. */
struct fsim_proc *fsim_host_proc(struct fsim_host *h, int32_t pid);

/* fsim_host_find_comm returns a live (not exited) process of h with that
 * comm, or NULL. */
struct fsim_proc *fsim_host_find_comm(struct fsim_host *h, const char *comm);

/* fsim_host_add_proc starts a process of def on h at true time t_ns (pid
 * from the host's counter, cmdline expanded). Returns it (valid until the
 * next add or remove) or NULL on ENOMEM. */
struct fsim_proc *fsim_host_add_proc(struct fsim_host *h, const struct fsim_pdef *def, int32_t ppid,
				     int64_t t_ns);

/* fsim_host_remove_proc forgets process pid of h (once its exit has been
 * put into a summary). */
void fsim_host_remove_proc(struct fsim_host *h, int32_t pid);

/* fsim_proc_cmdline returns p's command line. */
const char *fsim_proc_cmdline(const struct fsim_proc *p);

/* fsim_host_push appends a packed message to h's outbox (takes ownership
 * of buf). Returns 0 or -ENOMEM (then buf is freed). */
int fsim_host_push(struct fsim_host *h, uint8_t *buf, size_t len, uint64_t seq, int64_t release_ns,
		   enum fsim_out_kind kind);

/* fsim_host_first_unreleased returns the outbox position (relative to the
 * head) of the first message not due at true time now_ns, or h->out_n.
 * Nothing from there on has been sent. */
size_t fsim_host_first_unreleased(const struct fsim_host *h, int64_t now_ns);

/* fsim_host_insert puts the n packed messages of items at outbox position
 * pos (relative to the head; pos <= h->out_n) and moves the messages from
 * pos on, which must not have been sent, n sequence numbers later
 * (repacked), so that the inserted ones, which must carry the seqs the
 * message at pos had and the following ones (or h->seq + 1 ... when pos is
 * h->out_n), keep the outbox in seq order. Takes ownership of the items'
 * buffers on success; on failure (-ENOMEM) nothing changed and the caller
 * still owns them. */
int fsim_host_insert(struct fsim_host *h, size_t pos, struct fsim_out *items, size_t n);

/* fsim_host_drop removes outbox entry i (relative to the head) and frees it. */
void fsim_host_drop(struct fsim_host *h, size_t i);

/* fsim_host_matches tells whether h is selected by cause c's kernel/label/
 * process selector (true when it has none). */
bool fsim_host_matches(const struct fsim_fleet *f, struct fsim_host *h, const struct fsim_cause *c);

#endif
